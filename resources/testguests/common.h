/* Shared pieces of the tiny test guests: COM1 output, the exit-status port, the PVH note, SMP
 * start-up.
 * Conventions (docs/design.md): COM1 at 0x3F8 (poll LSR bit 5 at 0x3FD before each byte),
 * a 1-byte OUT of S to port 0x501 ends the VM with status S. */
#define COM1      0x3f8
#define COM1_LSR  0x3fd
#define EXIT_PORT 0x501

/* XEN_ELFNOTE_PHYS32_ENTRY: the PVH 32-bit entry point, in a PT_NOTE segment. The descriptor is
 * 8 bytes like Linux's (QEMU reads a 64-bit value for an ELF64 kernel). */
.macro PVH_NOTE entry
	.pushsection .note.Xen, "a", @note
	.balign 4
	.long 4f - 3f		/* namesz */
	.long 6f - 5f		/* descsz */
	.long 18		/* type: XEN_ELFNOTE_PHYS32_ENTRY */
3:	.asciz "Xen"
4:	.balign 4
5:	.quad \entry
6:	.balign 4
	.popsection
.endm

/* Report status \status (an immediate) on the exit port; halt should the VM go on. */
.macro EXIT_WITH status
	mov $\status, %al
	mov $EXIT_PORT, %dx
	out %al, %dx
1:	cli
	hlt
	jmp 1b
.endm

/* Serial helpers, instantiated once per guest with SERIAL_HELPERS_32 or SERIAL_HELPERS_64.
 * putc: byte in %al. puts: NUL-terminated string at %esi/%rsi.
 * putdec: unsigned value in %eax, printed in decimal; puthex: %eax (%rax) in hex.
 * All preserve every register but flags. */
.macro SERIAL_HELPERS_32
putc:
	push %edx
	push %eax
	mov $COM1_LSR, %dx
1:	in %dx, %al
	test $0x20, %al
	jz 1b
	pop %eax
	mov $COM1, %dx
	out %al, %dx
	pop %edx
	ret
puts:
	push %esi
	push %eax
1:	lodsb
	test %al, %al
	jz 2f
	call putc
	jmp 1b
2:	pop %eax
	pop %esi
	ret
putdec:
	push %eax
	push %ecx
	push %edx
	push %ebx
	mov $10, %ebx
	xor %ecx, %ecx
1:	xor %edx, %edx
	div %ebx
	push %edx
	inc %ecx
	test %eax, %eax
	jnz 1b
2:	pop %eax
	add $'0', %al
	call putc
	loop 2b
	pop %ebx
	pop %edx
	pop %ecx
	pop %eax
	ret
puthex:	/* %eax as 0x followed by 8 hex digits */
	push %eax
	push %ecx
	push %edx
	mov %eax, %edx
	mov $'0', %al
	call putc
	mov $'x', %al
	call putc
	mov $8, %ecx
1:	rol $4, %edx
	mov %dl, %al
	and $0xf, %al
	add $'0', %al
	cmp $'9', %al
	jbe 2f
	add $('a' - '0' - 10), %al
2:	call putc
	loop 1b
	pop %edx
	pop %ecx
	pop %eax
	ret
.endm

.macro SERIAL_HELPERS_64
putc:
	push %rdx
	push %rax
	mov $COM1_LSR, %dx
1:	in %dx, %al
	test $0x20, %al
	jz 1b
	pop %rax
	mov $COM1, %dx
	out %al, %dx
	pop %rdx
	ret
puts:
	push %rsi
	push %rax
1:	lodsb
	test %al, %al
	jz 2f
	call putc
	jmp 1b
2:	pop %rax
	pop %rsi
	ret
puthex:	/* %rax as 0x followed by 16 hex digits */
	push %rax
	push %rcx
	push %rdx
	mov %rax, %rdx
	mov $'0', %al
	call putc
	mov $'x', %al
	call putc
	mov $16, %ecx
1:	rol $4, %rdx
	mov %dl, %al
	and $0xf, %al
	add $'0', %al
	cmp $'9', %al
	jbe 2f
	add $('a' - '0' - 10), %al
2:	call putc
	loop 1b
	pop %rdx
	pop %rcx
	pop %rax
	ret
.endm

/* SMP start-up (smp, spin): the BSP copies a 16-bit real-mode AP trampoline to TRAMP (below 1 MiB,
 * page aligned: SIPI vector TRAMP >> 12; free in docs/design.md's memory map while the guest runs),
 * software-enables its LAPIC and sends INIT, SIPI, SIPI to all-excluding-self through the ICR, as
 * Intel's MP start-up does. Each AP then starts in real mode at TRAMP with CS = TRAMP >> 4, IP = 0. */
#define TRAMP		0x8000
#define LAPIC_SVR	0xfee000f0
#define LAPIC_ICR_LO	0xfee00300
#define LAPIC_ICR_HI	0xfee00310
#define ICR_ALL_BUT_SELF (3 << 18)
#define ICR_ASSERT	(1 << 14)
#define ICR_INIT	(5 << 8)
#define ICR_SIPI	(6 << 8)

/* START_APS from, to: copies the trampoline [from, to) to TRAMP and starts the APs on it (32-bit
 * code, paging off; needs SMP_HELPERS_32). Preserves every register but eax, ecx, edx, esi, flags. */
.macro START_APS from, to
	push %edi
	mov $\from, %esi
	mov $TRAMP, %edi
	mov $(\to - \from), %ecx
	rep movsb
	pop %edi
	/* software-enable the LAPIC (spurious vector 0xff) */
	mov LAPIC_SVR, %eax
	or $0x1ff, %eax
	mov %eax, LAPIC_SVR
	movl $0, LAPIC_ICR_HI
	movl $(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_INIT), LAPIC_ICR_LO
	call icr_wait
	mov $(26000000 >> 16), %ecx	/* ~10 ms */
	call delay
	movl $(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_SIPI | (TRAMP >> 12)), LAPIC_ICR_LO
	call icr_wait
	mov $(520000 >> 16), %ecx	/* ~200 us */
	call delay
	movl $(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_SIPI | (TRAMP >> 12)), LAPIC_ICR_LO
	call icr_wait
.endm

/* delay: busy-waits %ecx * 65536 TSC cycles. icr_wait: until the ICR's delivery-status bit clears
 * (bounded). Both preserve every register but flags (delay: and %ecx). */
.macro SMP_HELPERS_32
delay:	push %eax
	push %edx
	push %ebx
	push %esi
	shl $16, %ecx
	rdtsc
	mov %eax, %ebx
	mov %edx, %esi
1:	pause
	rdtsc
	sub %ebx, %eax
	sbb %esi, %edx
	jnz 2f
	cmp %ecx, %eax
	jb 1b
2:	pop %esi
	pop %ebx
	pop %edx
	pop %eax
	ret
icr_wait:
	push %ecx
	mov $100000, %ecx
1:	testl $(1 << 12), LAPIC_ICR_LO
	jz 2f
	pause
	loop 1b
2:	pop %ecx
	ret
.endm
