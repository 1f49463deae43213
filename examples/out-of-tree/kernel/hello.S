// A bare-metal aarch64 guest for QEMU's `virt` machine: prints to the PL011 UART, then
// powers off through PSCI SYSTEM_OFF (QEMU exits with status 0).
	.global _start
_start:
	ldr	x1, =0x09000000		// PL011 data register
	adr	x2, message
1:	ldrb	w3, [x2], #1
	cbz	w3, 2f
	strb	w3, [x1]
	b	1b
2:	ldr	x0, =0x84000008		// PSCI SYSTEM_OFF
	hvc	#0
3:	wfi
	b	3b

message:
	.asciz	"hello from an out-of-tree guest\r\nhello: done\r\n"
