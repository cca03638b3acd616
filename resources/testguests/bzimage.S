/* bzimage: a minimal bzImage (Linux x86 boot protocol 2.15) that exercises the VMM's bzImage loader
 * and the 64-bit boot protocol without Linux: its protected-mode part has the 64-bit entry at offset
 * 0x200, which reads the command line from the zero page (boot_params at %rsi, cmd_line_ptr at 0x228,
 * ext_cmd_line_ptr at 0x0c8), prints it and exits 0.
 * It also boots the classic way (as QEMU boots it): the real-mode setup entry at 0x200 of the setup
 * switches to protected mode and jumps to code32_start with %esi = its own base (the setup sectors
 * are laid out as boot_params); the 32-bit entry at offset 0 of the protected-mode part builds
 * identity page tables (4 GiB, 2 MiB pages), enables long mode and goes to the 64-bit entry.
 * The protected-mode part is position independent (relocatable_kernel = 1). */
#include "common.h"
#define SETUP_SECTS	3		/* the setup is (3 + 1) * 512 bytes */
#define BOOT_CS		0x10
#define BOOT_DS		0x18

	.section .setup, "ax"
	.code16
	.org 0x1f1
setup_sects:	.byte SETUP_SECTS
root_flags:	.word 0
syssize:	.long syssize_val	/* protected-mode part, in 16-byte units */
ram_size:	.word 0
vid_mode:	.word 0xffff
root_dev:	.word 0
boot_flag:	.word 0xaa55
	.org 0x200
	.byte 0xeb, start_of_setup - 0x202	/* jmp start_of_setup */
header:		.ascii "HdrS"
version:	.word 0x020f
realmode_swtch:	.long 0
start_sys_seg:	.word 0x1000
kernel_version:	.word kernel_version_str - 0x200
type_of_loader:	.byte 0
loadflags:	.byte 0x01		/* LOADED_HIGH: protected-mode part at 1 MiB */
setup_move_size: .word 0x8000
code32_start:	.long 0x100000
ramdisk_image:	.long 0
ramdisk_size:	.long 0
bootsect_kludge: .long 0
heap_end_ptr:	.word 0
ext_loader_ver:	.byte 0
ext_loader_type: .byte 0
cmd_line_ptr:	.long 0
initrd_addr_max: .long 0x7fffffff
kernel_alignment: .long 0x100000
relocatable_kernel: .byte 1
min_alignment:	.byte 12		/* 4 KiB */
xloadflags:	.word 0x0001		/* XLF_KERNEL_64: 64-bit entry at 0x200 */
cmdline_size:	.long 2047
hardware_subarch: .long 0
hardware_subarch_data: .quad 0
payload_offset:	.long 0
payload_length:	.long 0
setup_data:	.quad 0
pref_address:	.quad 0x100000
init_size:	.long init_size_val
handover_offset: .long 0
kernel_info_offset: .long 0

/* Real-mode entry: CS = base + 0x20 paragraphs, IP = 0 (offset 0x200 here); DS = the setup's base. */
start_of_setup:
	cli
	cld
	mov %ds, %ax
	movzwl %ax, %ebx
	shl $4, %ebx			/* physical base of the setup = boot_params */
	leal gdt(%ebx), %eax
	movl %eax, gdt_desc + 2
	leal pm32_setup(%ebx), %eax
	movl %eax, jmp_vec
	lgdtl gdt_desc
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ljmpl *jmp_vec
	.code32
pm32_setup:
	mov $BOOT_DS, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov %ax, %fs
	mov %ax, %gs
	mov %ebx, %esi
	jmp *0x214(%esi)		/* code32_start */

	.balign 8
gdt:	.quad 0, 0
	.quad 0x00cf9a000000ffff	/* 0x10: 32-bit flat code */
	.quad 0x00cf92000000ffff	/* 0x18: flat data */
gdt_desc:
	.word 4 * 8 - 1
	.long 0				/* base, set at run time */
jmp_vec:
	.long 0				/* offset, set at run time */
	.word BOOT_CS
kernel_version_str:
	.asciz "vmctl bzimage test guest"
	.org (SETUP_SECTS + 1) * 512

/* The protected-mode part. */
	.section .text.head, "ax"
	.code32
startup_32:				/* the 32-bit boot protocol entry: %esi = boot_params */
	cli
	cld
	lea 0x1e8(%esi), %esp		/* boot_params.scratch as a 4-byte stack, as Linux does */
	call 1f
1:	pop %ebp
	sub $(1b - startup_32), %ebp	/* load address */
	lea (stack_top - startup_32)(%ebp), %esp
	lea (pgt - startup_32)(%ebp), %edi
	push %edi
	xor %eax, %eax
	mov $(6 * 4096 / 4), %ecx
	rep stosl
	pop %edi			/* PML4, then PDPT, then 4 PDs */
	lea 0x1003(%edi), %eax
	mov %eax, (%edi)
	lea 0x1000(%edi), %edx
	lea 0x2003(%edi), %eax
	mov $4, %ecx
1:	mov %eax, (%edx)
	add $0x1000, %eax
	add $8, %edx
	loop 1b
	lea 0x2000(%edi), %edx
	mov $0x83, %eax			/* present, writable, 2 MiB */
	mov $2048, %ecx
1:	mov %eax, (%edx)
	add $0x200000, %eax
	add $8, %edx
	loop 1b
	mov %cr4, %eax
	or $0x20, %eax			/* PAE */
	mov %eax, %cr4
	mov %edi, %cr3
	mov $0xc0000080, %ecx		/* EFER.LME */
	rdmsr
	or $0x100, %eax
	wrmsr
	lea (gdt64 - startup_32)(%ebp), %eax
	mov %eax, (gdt64_desc + 2 - startup_32)(%ebp)
	lgdt (gdt64_desc - startup_32)(%ebp)
	push $BOOT_CS
	lea (startup_64 - startup_32)(%ebp), %eax
	push %eax
	mov %cr0, %eax
	or $0x80000001, %eax		/* PG, PE */
	mov %eax, %cr0
	lret

	.balign 8
gdt64:	.quad 0, 0
	.quad 0x00af9a000000ffff	/* 0x10: 64-bit code */
	.quad 0x00cf92000000ffff	/* 0x18: data */
gdt64_desc:
	.word 4 * 8 - 1
	.long 0

	.org 0x200
	.code64
startup_64:				/* the 64-bit boot protocol entry: %rsi = boot_params */
	cli
	cld
	lea stack_top(%rip), %rsp
	mov %rsi, %rbx
	lea msg(%rip), %rsi
	call puts
	mov 0x228(%rbx), %eax		/* cmd_line_ptr */
	mov 0x0c8(%rbx), %edx		/* ext_cmd_line_ptr */
	shl $32, %rdx
	or %rdx, %rax
	jz 1f
	mov %rax, %rsi
	call puts
1:	mov $'\n', %al
	call putc
	lea msg_done(%rip), %rsi
	call puts
	EXIT_WITH 0

	SERIAL_HELPERS_64

	.section .rodata
msg:		.asciz "bzimage: cmdline: "
msg_done:	.asciz "bzimage: done, exit 0\n"

	.bss
	.balign 4096
pgt:	.skip 6 * 4096
	.skip 4096
stack_top:
