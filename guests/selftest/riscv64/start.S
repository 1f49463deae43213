/*
 * RISC-V entry for QEMU virt under OpenSBI (fw_dynamic): entered in S-mode at
 * 0x80200000 with a0 = hart id, a1 = DTB. Only the boot hart gets here.
 */
	.set STACK_SIZE, 16384

	.section .text.start, "ax"
	.globl _start
_start:
	csrw	sie, zero
	csrci	sstatus, 2
	la	t0, trap_entry
	csrw	stvec, t0
	la	t0, __bss_start
	la	t1, __bss_end
1:	bgeu	t0, t1, 2f
	sd	zero, 0(t0)
	addi	t0, t0, 8
	j	1b
2:	la	t0, riscv_boot_fdt
	sd	a1, 0(t0)
	la	sp, stack_top
	call	selftest_main
3:	wfi
	j	3b

/* Enable the FPU (sstatus.FS) and move a value through f0; returns 0x1234. */
	.text
	.globl plat_fpu_probe
plat_fpu_probe:
	li	t0, (1 << 13)
	csrs	sstatus, t0
	li	a0, 0x1234
	fmv.d.x	ft0, a0
	fadd.d	ft1, ft0, ft0
	fsub.d	ft1, ft1, ft0
	fmv.x.d	a0, ft1
	ret

/* Every trap is unexpected: report scause, sepc, stval. */
	.balign 4
trap_entry:
	li	a0, 0
	csrr	a1, scause
	csrr	a2, sepc
	csrr	a3, stval
	j	selftest_exception

	.section .bss
	.balign 16
stack_bottom:
	.space STACK_SIZE
stack_top:
