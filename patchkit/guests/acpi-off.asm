; acpi_poweroff: switch the QEMU pc machine off (real mode, any segment; never returns).
; Included by poweroff.asm (the DOS program) and probe.asm.
;
; The PIIX4 power-management function (PCI 00:01.3) holds its I/O base in config
; register 0x40; SeaBIOS sets it to 0x600. Writing SLP_EN (bit 13) with SLP_TYP 0
; (the S5 type in QEMU's DSDT) to PM1a_CNT (base + 4) powers the machine off.
; If that does nothing, try the isa-debug-exit port, then halt for good.

acpi_poweroff:
        cli
        mov     dx, 0x0CF8
        mov     eax, 0x80000B40         ; bus 0, device 1, function 3, register 0x40
        out     dx, eax
        mov     dx, 0x0CFC
        in      eax, dx
        and     ax, 0xFFC0
        cmp     ax, 0
        je      .default_base
        cmp     ax, 0xFFC0
        jne     .have_base
.default_base:
        mov     ax, 0x0600
.have_base:
        add     ax, 4                   ; PM1a_CNT
        mov     dx, ax
        mov     ax, 0x2000              ; SLP_EN | SLP_TYP=0
        out     dx, ax
        mov     dx, 0x00F4              ; isa-debug-exit, when present
        mov     al, 0
        out     dx, al
.halt:
        hlt
        jmp     .halt
