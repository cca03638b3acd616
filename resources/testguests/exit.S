/* exit: a PVH guest that exits with the status given as `status=N` on the kernel command line
 * (0 when absent; N taken modulo 256). Entered in 32-bit protected mode, paging off,
 * %ebx = physical address of hvm_start_info (cmdline_paddr at offset 24). */
#include "common.h"
	.code32
	.text
	.globl _start
_start:
	cli
	cld
	mov $stack_top, %esp
	mov %ebx, %edi			/* hvm_start_info */
	mov $msg_cmdline, %esi
	call puts
	mov 24(%edi), %edi		/* cmdline_paddr (low 32 bits; below 4 GiB) */
	xor %ecx, %ecx			/* status */
	test %edi, %edi
	jz report
	mov %edi, %esi
	call puts
	/* find "status=" at the start or after a space */
	mov %edi, %esi
	mov $' ', %dl			/* previous character */
scan:	mov (%esi), %al
	test %al, %al
	jz report
	cmp $' ', %dl
	jne next
	cmpl $0x74617473, (%esi)	/* "stat" */
	jne next
	cmpw $0x7375, 4(%esi)		/* "us" */
	jne next
	cmpb $'=', 6(%esi)
	jne next
	add $7, %esi
digits:	movzbl (%esi), %eax
	sub $'0', %eax
	cmp $9, %eax
	ja report
	imul $10, %ecx, %ecx
	add %eax, %ecx
	inc %esi
	jmp digits
next:	mov %al, %dl
	inc %esi
	jmp scan
report:	mov $msg_status, %esi
	call puts
	movzbl %cl, %eax
	call putdec
	mov $'\n', %al
	call putc
	mov %cl, %al
	mov $EXIT_PORT, %dx
	out %al, %dx
1:	cli
	hlt
	jmp 1b

	SERIAL_HELPERS_32
	PVH_NOTE _start

	.section .rodata
msg_cmdline:	.asciz "exit: cmdline: "
msg_status:	.asciz "\nexit: status "

	.bss
	.balign 16
	.skip 4096
stack_top:
