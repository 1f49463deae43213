/*
 * AArch64 QEMU virt platform: PL011 at 0x09000000, fw_cfg MMIO at
 * 0x09020000, exit through semihosting SYS_EXIT (needs -semihosting).
 */
#include "platform.h"

#define UART_BASE 0x09000000UL
#define UART_DR 0x00
#define UART_FR 0x18
#define UART_LCR_H 0x2c
#define UART_CR 0x30
#define UART_IMSC 0x38
#define FR_RXFE (1u << 4)
#define FR_TXFE (1u << 7)
#define UART_FIFO_LEN 16

#define FWCFG_BASE 0x09020000UL
#define FWCFG_DATA 0x0
#define FWCFG_SELECTOR 0x8

#define SEMIHOSTING_SYS_EXIT 0x18
#define ADP_STOPPED_APPLICATION_EXIT 0x20026
#define HLT_SEMIHOSTING 0xd45e0000u /* hlt #0xf000 */

const char plat_arch[] = "aarch64";

int plat_fpu_probe(void);

static inline volatile u32 *uart_reg(usize offset)
{
	return (volatile u32 *)(UART_BASE + offset);
}

void plat_init(void)
{
	*uart_reg(UART_IMSC) = 0;
	while (!(*uart_reg(UART_FR) & FR_RXFE))
		rx_save((u8)*uart_reg(UART_DR));
	*uart_reg(UART_LCR_H) = 0x70; /* 8 bits, FIFOs on */
	*uart_reg(UART_CR) = 0x301;   /* UART, TX and RX enabled */
}

/* Wait for an empty TX FIFO once per 16 bytes, then write the burst. */
void plat_write(const char *buf, usize len)
{
	volatile u32 *dr = uart_reg(UART_DR);
	while (len) {
		usize burst = len < UART_FIFO_LEN ? len : UART_FIFO_LEN;
		while (!(*uart_reg(UART_FR) & FR_TXFE))
			;
		len -= burst;
		while (burst--)
			*dr = (u8)*buf++;
	}
}

u8 plat_getc(void)
{
	while (*uart_reg(UART_FR) & FR_RXFE)
		;
	return (u8)*uart_reg(UART_DR);
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

/* The scenario comes through fw_cfg only. */
const void *plat_fdt(void)
{
	return 0;
}

int plat_probe(void)
{
	return plat_fpu_probe() == 0x1234;
}

/* AArch64 SYS_EXIT takes a parameter block; QEMU exits with its subcode. */
__attribute__((noreturn)) void plat_exit(u32 code)
{
	volatile u64 block[2] = { ADP_STOPPED_APPLICATION_EXIT, code };
	register u64 op __asm__("x0") = SEMIHOSTING_SYS_EXIT;
	register u64 arg __asm__("x1") = (u64)block;
	__asm__ volatile("hlt #0xf000" : "+r"(op) : "r"(arg) : "memory");
	plat_halt();
}

__attribute__((noreturn)) void plat_halt(void)
{
	for (;;)
		__asm__ volatile("msr daifset, #0xf\n\twfi");
}

/* Called from the vector table; spots a semihosting call QEMU refused. */
__attribute__((noreturn)) void aarch64_exception(usize kind, usize esr, usize elr, usize far)
{
	if (*(volatile u32 *)elr == HLT_SEMIHOSTING) {
		put_str("selftest: semihosting is off, cannot exit; run QEMU with -semihosting\r\n");
		plat_halt();
	}
	selftest_exception(kind, esr, elr, far);
}
