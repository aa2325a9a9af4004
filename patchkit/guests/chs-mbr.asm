; A master boot record that boots the way DOS-era MBRs do: CHS only.
;
; It moves itself to 0000:0600, finds the one active entry of the partition table,
; reads that partition's first sector to 0000:7C00 with INT 13h AH=02 at the
; cylinder/head/sector the entry gives (never AH=42), checks the 55AA signature and
; jumps there with DL = the boot drive and DS:SI = the entry. So the partition table's
; CHS values must mean the same sector to the BIOS: a geometry mismatch reads the
; wrong sector and ends in "Missing operating system".
; Messages go through INT 10h (which SeaBIOS mirrors to serial); then it halts.
; Only the first 440 bytes are used: the disk's builder writes the table after them.

        cpu     8086
        bits    16
        org     0x0600

RELOCATED       equ 0x0600
BOOT_SECTOR     equ 0x7C00
TABLE           equ RELOCATED + 446
ENTRY_SIZE      equ 16
READ_TRIES      equ 4

start:
        cli
        xor     ax, ax
        mov     ss, ax
        mov     sp, BOOT_SECTOR
        mov     ds, ax
        mov     es, ax
        sti
        cld
        mov     si, BOOT_SECTOR
        mov     di, RELOCATED
        mov     cx, 256
        rep movsw
        jmp     0:relocated

relocated:
        mov     [drive], dl
        mov     si, TABLE
        mov     cx, 4
.scan:
        cmp     byte [si], 0x80
        je      .found
        cmp     byte [si], 0
        jne     invalid_table
        add     si, ENTRY_SIZE
        loop    .scan
        mov     si, msg_no_active
        jmp     fail
.found:
        mov     bp, si                  ; the active entry
.check_rest:                            ; every later entry must be inactive
        add     si, ENTRY_SIZE
        dec     cx
        jz      load
        cmp     byte [si], 0
        je      .check_rest
        jmp     invalid_table

load:
        mov     di, READ_TRIES
.read:
        mov     bx, BOOT_SECTOR
        mov     dl, [drive]
        mov     dh, [bp + 1]            ; head
        mov     cx, [bp + 2]            ; sector (bits 0-5), cylinder (bits 6-7 of CL, CH)
        mov     ax, 0x0201
        int     0x13
        jnc     .read_ok
        xor     ax, ax                  ; reset the drive and try again
        mov     dl, [drive]
        int     0x13
        dec     di
        jnz     .read
        mov     si, msg_read_error
        jmp     fail
.read_ok:
        cmp     word [BOOT_SECTOR + 510], 0xAA55
        je      .boot
        mov     si, msg_missing_os
        jmp     fail
.boot:
        mov     si, bp
        mov     dl, [drive]
        jmp     0:BOOT_SECTOR

invalid_table:
        mov     si, msg_invalid

; Print the NUL-terminated message at SI, then wait for good (interrupts on: SeaBIOS
; mirrors the screen to serial from its timer interrupt).
fail:
        lodsb
        test    al, al
        jz      .halt
        mov     ah, 0x0E
        mov     bx, 0x0007
        int     0x10
        jmp     fail
.halt:
        sti
        hlt
        jmp     .halt

drive           db      0
msg_invalid     db      "MBR: Invalid partition table", 13, 10, 0
msg_no_active   db      "MBR: No active partition", 13, 10, 0
msg_read_error  db      "MBR: Error loading operating system", 13, 10, 0
msg_missing_os  db      "MBR: Missing operating system", 13, 10, 0

        times 440 - ($ - $$) db 0
