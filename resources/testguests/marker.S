/* marker: writes the peers' boot markers, then exits 0.
 * - Firecracker's boot timer: a 1-byte MMIO write of 123 to 0xC000_0000 (PVH entry: paging off,
 *   so the physical address is used as is);
 * - Cloud Hypervisor's debug port 0x80: 0x41 (a "kernel" marker), then 0x61 (a "user space" one). */
#include "common.h"
	.code32
	.text
	.globl _start
_start:
	cli
	cld
	mov $stack_top, %esp
	mov $msg_mmio, %esi
	call puts
	movb $123, 0xc0000000
	mov $msg_port, %esi
	call puts
	mov $0x41, %al
	out %al, $0x80
	mov $0x61, %al
	out %al, $0x80
	mov $msg_done, %esi
	call puts
	EXIT_WITH 0

	SERIAL_HELPERS_32
	PVH_NOTE _start

	.section .rodata
msg_mmio:	.asciz "marker: mmio 0xc0000000 = 123\n"
msg_port:	.asciz "marker: port 0x80 = 0x41, 0x61\n"
msg_done:	.asciz "marker: done, exit 0\n"

	.bss
	.balign 16
	.skip 4096
stack_top:
