/*
 * NimbOS v0.7 for riscv64 is linked at physical 0x90200000 (AxVisor's guest layout), while
 * OpenSBI (QEMU's default -bios on virt) jumps to 0x80200000. This stub sits there and jumps
 * on, keeping a0 (hart id) and a1 (device tree) as OpenSBI set them.
 */
	.section .text.start, "ax"
	.globl _start
_start:
	li	t0, 0x90200000
	jr	t0
