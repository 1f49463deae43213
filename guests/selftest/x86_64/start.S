/*
 * x86 entry: a Multiboot (v1) ELF32 kernel. QEMU's -kernel multiboot loader
 * enters _start in 32-bit protected mode, paging off, interrupts off.
 */
	.set MB_MAGIC, 0x1BADB002
	.set MB_FLAGS, 0
	.set STACK_SIZE, 16384

	.section .multiboot, "a"
	.balign 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.section .text.start, "ax"
	.code32
	.globl _start
_start:
	cli
	cld
	/* Zero .bss (the stack lives there too, unused so far). */
	mov $__bss_start, %edi
	mov $__bss_end, %ecx
	sub %edi, %ecx
	xor %eax, %eax
	rep stosb
	mov $stack_top, %esp
	call selftest_main
1:	cli
	hlt
	jmp 1b

	.section .bss
	.balign 16
stack_bottom:
	.space STACK_SIZE
stack_top:
