/*
 * AArch64 entry for QEMU virt: loaded as an ELF at 0x40080000, entered at
 * EL1 with the MMU off. Secondary CPUs (if any) park.
 */
	.set STACK_SIZE, 16384

	.section .text.start, "ax"
	.globl _start
_start:
	mrs	x0, mpidr_el1
	and	x0, x0, #0xffffff
	cbnz	x0, park
	msr	daifset, #0xf
	adr	x0, vectors
	msr	vbar_el1, x0
	isb
	ldr	x0, =__bss_start
	ldr	x1, =__bss_end
1:	cmp	x0, x1
	b.hs	2f
	str	xzr, [x0], #8
	b	1b
2:	ldr	x0, =stack_top
	mov	sp, x0
	bl	selftest_main
park:
	wfe
	b	park

/* Enable FP/SIMD at EL1 and move a value through d0; returns 0x1234. */
	.text
	.globl plat_fpu_probe
plat_fpu_probe:
	mrs	x1, cpacr_el1
	orr	x1, x1, #(3 << 20)
	msr	cpacr_el1, x1
	isb
	mov	x0, #0x1234
	fmov	d0, x0
	fadd	d1, d0, d0
	fsub	d1, d1, d0
	fmov	x0, d1
	ret

/* Every exception is unexpected: report kind (0..15), ESR, ELR, FAR. */
	.macro vector kind
	.balign 0x80
	mov	x0, #\kind
	b	exception_entry
	.endm

	.balign 0x800
vectors:
	.irp kind, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
	vector \kind
	.endr

exception_entry:
	mrs	x1, esr_el1
	mrs	x2, elr_el1
	mrs	x3, far_el1
	bl	aarch64_exception

	.section .bss
	.balign 16
stack_bottom:
	.space STACK_SIZE
stack_top:
