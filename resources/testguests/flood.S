/* flood: what a hostile guest does to the legacy devices, forever and fast: 4 KiB of console text
 * and 64 kernel boot markers (0x41 to port 0x80) per loop, each with one `rep outsb` (a single
 * VM exit carrying every byte), never exiting. The VMM must split the string I/O into its bytes
 * and stay stoppable and bounded whoever reads its console (tests/tiny_guests.rs). */
#include "common.h"
	.code32
	.text
	.globl _start
_start:
	cli
	cld
1:	mov $text, %esi
	mov $(text_end - text), %ecx
	mov $COM1, %dx
	rep outsb
	mov $markers, %esi
	mov $64, %ecx
	mov $0x80, %dx
	rep outsb
	jmp 1b

	PVH_NOTE _start

	.section .rodata
text:
	.rept 64
	.ascii "flood: 64 bytes of console text, sent 4 KiB at a time .........\n"
	.endr
text_end:
markers:
	.fill 64, 1, 0x41
