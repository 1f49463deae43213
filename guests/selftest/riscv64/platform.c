/*
 * RISC-V QEMU virt platform: 16550 at 0x10000000, fw_cfg MMIO at 0x10100000,
 * exit through the sifive_test finisher at 0x100000.
 */
#include "platform.h"

#define UART_BASE 0x10000000UL
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

#define FWCFG_BASE 0x10100000UL
#define FWCFG_DATA 0x0
#define FWCFG_SELECTOR 0x8

#define FINISHER_BASE 0x100000UL
#define FINISHER_FAIL 0x3333
#define FINISHER_PASS 0x5555

const char plat_arch[] = "riscv64";

long plat_fpu_probe(void);

/* Saved by start.S from a1: the DTB OpenSBI passes on. */
const void *riscv_boot_fdt;

static inline volatile u8 *uart_reg(usize offset)
{
	return (volatile u8 *)(UART_BASE + offset);
}

void plat_init(void)
{
	*uart_reg(UART_IER) = 0x00;
	*uart_reg(UART_LCR) = 0x03; /* 8N1 */
	while (*uart_reg(UART_LSR) & LSR_DATA_READY)
		rx_save(*uart_reg(UART_RBR));
	*uart_reg(UART_FCR) = 0x05; /* FIFOs on, TX cleared */
	*uart_reg(UART_MCR) = 0x03; /* DTR, RTS; no loopback */
}

/* Same rule as on x86: wait for an empty FIFO once per 16-byte burst. */
void plat_write(const char *buf, usize len)
{
	volatile u8 *thr = uart_reg(UART_THR);
	while (len) {
		usize burst = len < UART_FIFO_LEN ? len : UART_FIFO_LEN;
		while (!(*uart_reg(UART_LSR) & LSR_THR_EMPTY))
			;
		len -= burst;
		while (burst--)
			*thr = (u8)*buf++;
	}
}

u8 plat_getc(void)
{
	while (!(*uart_reg(UART_LSR) & LSR_DATA_READY))
		;
	return *uart_reg(UART_RBR);
}

void plat_fwcfg_select(u16 key)
{
	/* The MMIO selector is big-endian. */
	*(volatile u16 *)(FWCFG_BASE + FWCFG_SELECTOR) = __builtin_bswap16(key);
}

u8 plat_fwcfg_read8(void)
{
	return *(volatile u8 *)(FWCFG_BASE + FWCFG_DATA);
}

int plat_fwcfg_present(void)
{
	plat_fwcfg_select(0);
	return plat_fwcfg_read8() == 'Q' && plat_fwcfg_read8() == 'E' && plat_fwcfg_read8() == 'M' &&
	       plat_fwcfg_read8() == 'U';
}

/* QEMU 7.2 riscv virt rejects -fw_cfg on the command line, so -append counts. */
const void *plat_fdt(void)
{
	return riscv_boot_fdt;
}

int plat_probe(void)
{
	return plat_fpu_probe() == 0x1234;
}

/* Pass maps to QEMU status 0; fail with code C maps to status C. */
__attribute__((noreturn)) void plat_exit(u32 code)
{
	*(volatile u32 *)FINISHER_BASE = code ? (code << 16) | FINISHER_FAIL : FINISHER_PASS;
	put_str("selftest: sifive_test finisher did not stop QEMU\r\n");
	plat_halt();
}

__attribute__((noreturn)) void plat_halt(void)
{
	__asm__ volatile("csrci sstatus, 2");
	for (;;)
		__asm__ volatile("wfi");
}
