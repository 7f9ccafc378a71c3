/*
 * kiln's accelerator probe: one 512-byte x86 boot sector (GNU as syntax).
 *
 * A /dev/kvm that opens and answers its API version does not prove that KVM
 * can run a guest. Under nested KVM without "unrestricted guest" support (an
 * L1 hypervisor that does not pass VMX unrestricted-guest through), KVM
 * cannot run the guest directly while it is in real mode or in the half-way
 * states that boot loaders pass through between real and protected mode: it
 * emulates those instructions one by one, and its emulator does not know
 * all of them. SYSLINUX enters protected mode through a 32-bit IRET before
 * it has reloaded CS, and there KVM gives up with "KVM internal error.
 * Suberror: 1 (emulation failure)"; QEMU then stops the guest.
 *
 * This sector walks a guest through the same transitions a real boot loader
 * and kernel make, writing a marker to the first serial port (COM1, I/O port
 * 0x3f8) after each one:
 *
 *   KILN-PROBE real        real mode, as the BIOS left us
 *   KILN-PROBE protected   32-bit protected mode, entered through IRETL
 *                          with CS still holding its real-mode value
 *   KILN-PROBE real-again  back in real mode through a 16-bit protected
 *                          mode segment (what SYSLINUX does for BIOS calls)
 *   KILN-PROBE long        64-bit long mode with paging (what every x86_64
 *                          kernel reaches)
 *   KILN-PROBE-OK          the marker the prober waits for
 *
 * then halts with interrupts disabled, forever. A guest that cannot make a
 * step stops before the next marker, so the console says how far it got.
 * QEMU's 16550 needs no initialisation: plain OUTB to the data port is
 * enough, and no status polling is done.
 *
 * Regenerate probe.bin with scripts/gen-accel-probe.sh (binutils' as and ld);
 * building kiln needs only the committed probe.bin.
 */

	/* GDT selectors */
	CODE32 = 0x08	/* 32-bit code, base 0, limit 4 GiB */
	DATA32 = 0x10	/* 32-bit data, base 0, limit 4 GiB */
	CODE16 = 0x18	/* 16-bit code, base 0, limit 64 KiB: the way back to real mode */
	DATA16 = 0x20	/* 16-bit data, base 0, limit 64 KiB: real-mode segment limits */
	CODE64 = 0x28	/* 64-bit code (L=1) */

	/* identity-mapped page tables for long mode, in free low memory */
	PML4 = 0x1000
	PDPT = 0x2000
	PD   = 0x3000

	COM1 = 0x3f8

	.code16
	.globl _start
_start:
	/* The BIOS jumps here (0:0x7c00 or 0x7c0:0) in real mode. Interrupts
	   stay off for good: there is no IDT in the protected and long mode
	   parts. Flat real-mode segments and a stack below the sector. */
	cli
	ljmp	$0, $rm1	/* CS=0 whatever the BIOS used */
rm1:
	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	$0x7c00, %sp
	cld
	movw	$msg_real, %si
	call	puts16

	/* Real -> 32-bit protected mode the way SYSLINUX does it: set CR0.PE
	   and, without the far jump that would reload CS, IRETL to a 32-bit
	   code segment. Between setting PE and the IRET the CPU runs protected
	   mode with a real-mode CS; without unrestricted guest KVM has to
	   emulate this stretch, and its emulator fails on the 32-bit IRET
	   (KVM internal error, suberror 1). This is the step that tells a
	   usable KVM from a /dev/kvm that only opens. */
	lgdt	gdtdesc
	movl	%cr0, %eax
	orb	$1, %al
	movl	%eax, %cr0
	pushfl
	pushl	$CODE32
	pushl	$pm32
	iretl

	.code32
pm32:
	movw	$DATA32, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movl	$msg_protected, %esi
	call	puts32

	/* Protected -> real mode: first into a 16-bit code segment, with data
	   segments of real-mode limits (64 KiB), then clear PE and far-jump to
	   reload CS with a real-mode value. */
	ljmp	$CODE16, $pm16

	.code16
pm16:
	movw	$DATA16, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movl	%cr0, %eax
	andb	$0xfe, %al
	movl	%eax, %cr0
	ljmp	$0, $rm2
rm2:
	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	$msg_real_again, %si
	call	puts16

	/* Real -> protected mode again, this time the textbook way (a far
	   jump right after setting PE), on the way to long mode. */
	movl	%cr0, %eax
	orb	$1, %al
	movl	%eax, %cr0
	ljmpl	$CODE32, $pm32b

	.code32
pm32b:
	movw	$DATA32, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss

	/* Protected -> long mode: page tables identity-mapping the first
	   2 MiB with one large page (PML4[0] -> PDPT[0] -> PD[0], 2 MiB),
	   CR4.PAE, CR3, EFER.LME, then CR0.PG; a far jump to a 64-bit code
	   segment leaves compatibility mode. */
	movl	$PML4, %edi
	xorl	%eax, %eax
	movl	$(3 * 4096 / 4), %ecx
	rep stosl
	movl	$(PDPT | 3), PML4	/* present, writable */
	movl	$(PD | 3), PDPT
	movl	$0x83, PD		/* present, writable, 2 MiB page at 0 */
	movl	%cr4, %eax
	orl	$0x20, %eax		/* CR4.PAE */
	movl	%eax, %cr4
	movl	$PML4, %eax
	movl	%eax, %cr3
	movl	$0xc0000080, %ecx	/* IA32_EFER */
	rdmsr
	orl	$0x100, %eax		/* EFER.LME */
	wrmsr
	movl	%cr0, %eax
	orl	$0x80000000, %eax	/* CR0.PG */
	movl	%eax, %cr0
	ljmp	$CODE64, $lm64

	.code64
lm64:
	movl	$0x7c00, %esp		/* zero-extends into RSP */
	movl	$msg_long, %esi
	call	puts64
	movl	$msg_ok, %esi
	call	puts64
halt:
	cli
	hlt
	jmp	halt

/* puts16/32/64: write the NUL-terminated string at (E/R)SI to COM1. One
   per mode: the same source assembles to different bytes in each. */
	.code16
puts16:
	movw	$COM1, %dx
1:	lodsb
	testb	%al, %al
	jz	2f
	outb	%al, %dx
	jmp	1b
2:	ret

	.code32
puts32:
	movw	$COM1, %dx
1:	lodsb
	testb	%al, %al
	jz	2f
	outb	%al, %dx
	jmp	1b
2:	ret

	.code64
puts64:
	movw	$COM1, %dx
1:	lodsb
	testb	%al, %al
	jz	2f
	outb	%al, %dx
	jmp	1b
2:	ret

msg_real:	.asciz	"KILN-PROBE real\n"
msg_protected:	.asciz	"KILN-PROBE protected\n"
msg_real_again:	.asciz	"KILN-PROBE real-again\n"
msg_long:	.asciz	"KILN-PROBE long\n"
msg_ok:		.asciz	"KILN-PROBE-OK\n"

	.p2align 3
gdt:
	.quad	0			/* null */
	.quad	0x00cf9a000000ffff	/* CODE32: G=1 D=1, exec/read */
	.quad	0x00cf92000000ffff	/* DATA32: G=1 B=1, read/write */
	.quad	0x00009a000000ffff	/* CODE16: byte granular, 64 KiB */
	.quad	0x000092000000ffff	/* DATA16: byte granular, 64 KiB */
	.quad	0x00af9a000000ffff	/* CODE64: G=1 L=1 D=0 */
gdtdesc:
	.word	gdtdesc - gdt - 1
	.long	gdt

	.org	510
	.word	0xaa55			/* boot signature */
