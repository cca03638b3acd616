/* flood: what a hostile guest does to the legacy devices, forever: prints a line on COM1 and
 * writes a kernel boot marker (0x41) to port 0x80, in a loop, never exiting. The VMM must stay
 * stoppable and bounded whoever reads its console (tests/tiny_guests.rs). */
#include "common.h"
	.code32
	.text
	.globl _start
_start:
	cli
	cld
	mov $stack_top, %esp
1:	mov $msg, %esi
	call puts
	mov $0x41, %al
	out %al, $0x80
	jmp 1b

	SERIAL_HELPERS_32
	PVH_NOTE _start

	.section .rodata
msg:	.asciz "flood: the console and the marker port, without end\n"

	.bss
	.balign 16
	.skip 4096
stack_top:
