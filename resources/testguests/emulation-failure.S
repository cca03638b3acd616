/* emulation-failure: executes xrstor in ring 0, which kvm-pvm (this machine's KVM, which emulates
 * guest kernel code) cannot emulate: KVM_RUN ends with KVM_EXIT_INTERNAL_ERROR (suberror 1,
 * emulation failure), an exit the VMM must report (exit reason, RIP, instruction bytes) and not hang
 * on. It prints the address of the instruction first, so a test can check the reported RIP.
 * On a KVM with hardware virtualization xrstor runs (with CR4.OSXSAVE set and an empty
 * requested-feature mask it restores nothing), and the guest exits with status 0. */
#include "common.h"
	.code32
	.text
	.globl _start
_start:
	cli
	cld
	mov $stack_top, %esp
	/* CR4.OSXSAVE when the CPU has XSAVE (else xrstor would be #UD on real hardware) */
	mov $1, %eax
	cpuid
	bt $26, %ecx
	jnc 1f
	mov %cr4, %eax
	or $(1 << 18), %eax
	mov %eax, %cr4
1:	mov $msg, %esi
	call puts
	mov $insn, %eax
	call puthex
	mov $msg_bytes, %esi
	call puts
	xor %eax, %eax		/* requested-feature mask edx:eax = 0 */
	xor %edx, %edx
	mov $xsave_area, %edi
insn:	xrstor (%edi)		/* 0f ae 2f */
	mov $msg_alive, %esi
	call puts
	EXIT_WITH 0

	SERIAL_HELPERS_32
	PVH_NOTE _start

	.section .rodata
msg:		.asciz "emulation-failure: xrstor at "
msg_bytes:	.asciz ", bytes 0f ae 2f\n"
msg_alive:	.asciz "emulation-failure: xrstor ran (this KVM executes it), exit 0\n"

	.bss
	.balign 64
xsave_area:	.skip 4096	/* zeroed: a valid, empty XSAVE header */
	.skip 4096
stack_top:
