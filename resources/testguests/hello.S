/* hello: a plain 64-bit ELF (no PVH note): the VMM enters it at e_entry in long mode with
 * identity-mapped page tables, as for vmlinux's 64-bit entry. Prints a line on COM1, exits 0. */
#include "common.h"
	.code64
	.text
	.globl _start
_start:
	cli
	cld
	lea stack_top(%rip), %rsp
	lea msg(%rip), %rsi
	call puts
	EXIT_WITH 0

	SERIAL_HELPERS_64

	.section .rodata
msg:	.asciz "hello from a 64-bit guest\n"

	.bss
	.balign 16
	.skip 4096
stack_top:
