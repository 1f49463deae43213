/*
 * x86 (q35/pc) platform: COM1 16550 at 0x3f8, fw_cfg at I/O 0x510/0x511,
 * exit through isa-debug-exit at 0xf4 (QEMU status = (code << 1) | 1).
 */
#include "platform.h"

#define COM1 0x3f8
#define UART_THR 0
#define UART_RBR 0
#define UART_IER 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define LSR_DATA_READY 0x01
#define LSR_THR_EMPTY 0x20
#define UART_FIFO_LEN 16

#define FWCFG_SELECTOR 0x510
#define FWCFG_DATA 0x511
#define DEBUG_EXIT_PORT 0xf4

#define CR0_MP (1u << 1)
#define CR0_EM (1u << 2)
#define CR4_OSFXSR (1u << 9)
#define CR4_OSXMMEXCPT (1u << 10)

const char plat_arch[] = "x86_64";

static inline void outb(u16 port, u8 value)
{
	__asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

static inline void outw(u16 port, u16 value)
{
	__asm__ volatile("outw %0, %1" : : "a"(value), "Nd"(port));
}

static inline void outl(u16 port, u32 value)
{
	__asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port));
}

static inline u8 inb(u16 port)
{
	u8 value;
	__asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
	return value;
}

void plat_init(void)
{
	outb(COM1 + UART_IER, 0x00);
	outb(COM1 + UART_LCR, 0x80); /* DLAB: divisor 1 = 115200 baud */
	outb(COM1 + 0, 0x01);
	outb(COM1 + 1, 0x00);
	outb(COM1 + UART_LCR, 0x03); /* 8N1 */
	while (inb(COM1 + UART_LSR) & LSR_DATA_READY)
		rx_save(inb(COM1 + UART_RBR));
	outb(COM1 + UART_FCR, 0x05); /* FIFOs on, TX cleared */
	outb(COM1 + UART_MCR, 0x03); /* DTR, RTS; no loopback */
}

/*
 * QEMU transmits each THR write at once unless the host side is backed up;
 * then THRE stays clear and further writes would overwrite the FIFO. So wait
 * for an empty FIFO once per 16 bytes and push the burst with rep outsb.
 */
void plat_write(const char *buf, usize len)
{
	while (len) {
		usize burst = len < UART_FIFO_LEN ? len : UART_FIFO_LEN;
		while (!(inb(COM1 + UART_LSR) & LSR_THR_EMPTY))
			;
		len -= burst;
		__asm__ volatile("rep outsb" : "+S"(buf), "+c"(burst) : "d"(COM1 + UART_THR) : "memory");
	}
}

u8 plat_getc(void)
{
	while (!(inb(COM1 + UART_LSR) & LSR_DATA_READY))
		;
	return inb(COM1 + UART_RBR);
}

void plat_fwcfg_select(u16 key)
{
	outw(FWCFG_SELECTOR, key);
}

u8 plat_fwcfg_read8(void)
{
	return inb(FWCFG_DATA);
}

int plat_fwcfg_present(void)
{
	plat_fwcfg_select(0);
	return inb(FWCFG_DATA) == 'Q' && inb(FWCFG_DATA) == 'E' && inb(FWCFG_DATA) == 'M' &&
	       inb(FWCFG_DATA) == 'U';
}

/* x87 and SSE, the way an OS enables them: CR0.EM off, CR0.MP and CR4.OSFXSR on. */
/* The scenario comes through fw_cfg only. */
const void *plat_fdt(void)
{
	return 0;
}

int plat_probe(void)
{
	u32 cr0, cr4, x87 = 0xffffffff, sse = 0xffffffff;

	__asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
	cr0 = (cr0 & ~CR0_EM) | CR0_MP;
	__asm__ volatile("mov %0, %%cr0" : : "r"(cr0));
	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	cr4 |= CR4_OSFXSR | CR4_OSXMMEXCPT;
	__asm__ volatile("mov %0, %%cr4" : : "r"(cr4));

	__asm__ volatile("fninit\n\tfldz\n\tfstps %0" : "=m"(x87));
	__asm__ volatile("xorps %%xmm0, %%xmm0\n\tmovss %%xmm0, %0" : "=m"(sse));
	return x87 == 0 && sse == 0;
}

__attribute__((noreturn)) void plat_exit(u32 code)
{
	outl(DEBUG_EXIT_PORT, code);
	put_str("selftest: exit device missing; add "
		"-device isa-debug-exit,iobase=0xf4,iosize=0x04\r\n");
	plat_halt();
}

__attribute__((noreturn)) void plat_halt(void)
{
	for (;;)
		__asm__ volatile("cli\n\thlt");
}
