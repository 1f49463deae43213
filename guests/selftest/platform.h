/*
 * Interface between the architecture-neutral scenarios (selftest.c) and one
 * architecture's platform code (<arch>/platform.c, <arch>/start.S).
 */
#ifndef SELFTEST_PLATFORM_H
#define SELFTEST_PLATFORM_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned long usize;

/* Architecture name printed in the banner: "x86_64", "aarch64", "riscv64". */
extern const char plat_arch[];

/*
 * Bring the UART into a known state (8N1, FIFOs on, interrupts off). Bytes
 * already received are handed to rx_save, since enabling the FIFO drops them.
 */
void plat_init(void);

/* Write len bytes to the UART; blocks instead of dropping bytes. */
void plat_write(const char *buf, usize len);

/* Read one byte from the UART, blocking until one arrives. */
u8 plat_getc(void);

/* True when a QEMU fw_cfg device answers with the "QEMU" signature. */
int plat_fwcfg_present(void);

/* Select a fw_cfg item; following plat_fwcfg_read8 calls stream its bytes. */
void plat_fwcfg_select(u16 key);

/* Read the next byte of the selected fw_cfg item. */
u8 plat_fwcfg_read8(void);

/*
 * Device tree handed over by the firmware, or 0. Its /chosen/bootargs (QEMU
 * -append) select the scenario where fw_cfg files cannot be added.
 */
const void *plat_fdt(void);

/* Run a floating-point/SIMD probe; returns 1 on success, 0 if unsupported. */
int plat_probe(void);

/* Make QEMU exit with the status that maps to code (see README.md). */
__attribute__((noreturn)) void plat_exit(u32 code);

/* Stop forever without exiting, using as little host CPU as possible. */
__attribute__((noreturn)) void plat_halt(void);

/* Called by start.S on an unexpected trap; prints what happened and halts. */
__attribute__((noreturn)) void selftest_exception(usize kind, usize cause, usize pc, usize addr);

/* Entry point called by start.S with a stack and a zeroed .bss. */
__attribute__((noreturn)) void selftest_main(void);

/* Helpers from selftest.c usable by platform code. */
void put_str(const char *s);
/* Keep a byte that arrived before plat_init had to reset the RX FIFO. */
void rx_save(u8 c);
void put_hex(u64 value);

#endif
