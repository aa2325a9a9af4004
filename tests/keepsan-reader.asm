; A floppy boot sector for the keep-san tests: after gPXE kept a SAN disk and
; returned, the BIOS boots this from A:. It checks that BIOS drive 0x80 exists,
; writes "PATCHKIT-KEEPSAN <token>" to its LBA 1 and reads it back, reports on
; COM1 and powers off. The host writes the run token at offset 0x1d0.
bits 16
org 0x7c00
COM1 equ 0x3f8
start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    sti
    mov ah, 0x08                ; drive parameters of 0x80
    mov dl, 0x80
    xor di, di
    int 0x13
    jc .no_drive
    mov di, 0x8000              ; sector to write: "PATCHKIT-KEEPSAN <token>"
    mov cx, 256
    push di
    xor ax, ax
    rep stosw
    pop di
    mov si, written
    call copy
    mov si, token
    call copy
    mov ax, 0x0301              ; write 1 sector: C0 H0 S2 (LBA 1)
    mov cx, 0x0002
    xor dh, dh
    mov dl, 0x80
    mov bx, 0x8000
    int 0x13
    jc .io_failed
    mov ax, 0x0201              ; read it back
    mov cx, 0x0002
    xor dh, dh
    mov dl, 0x80
    mov bx, 0x8200
    int 0x13
    jc .io_failed
    mov si, 0x8000
    mov di, 0x8200
    mov cx, 256
    repe cmpsw
    jne .mismatch
    mov si, pass
    jmp .report
.no_drive:
    mov si, fail_drive
    jmp .report
.io_failed:
    mov si, fail_io
    jmp .report
.mismatch:
    mov si, fail_data
.report:
    call print
    mov si, token
    call print
    mov si, crlf
    call print
    mov dx, 0x604               ; ACPI PM1a control (PIIX4, pm_base 0x600): S5
    mov ax, 0x2000
    out dx, ax
.halt:
    hlt
    jmp .halt

copy:                           ; copy the string at si to di (without its NUL)
    lodsb
    test al, al
    jz .done
    stosb
    jmp copy
.done:
    ret

print:                          ; send the string at si to COM1
    lodsb
    test al, al
    jz .done
    mov ah, al
    mov dx, COM1 + 5
.wait:
    in al, dx
    test al, 0x20
    jz .wait
    mov al, ah
    mov dx, COM1
    out dx, al
    jmp print
.done:
    ret

written    db "PATCHKIT-KEEPSAN ", 0
pass       db "PATCHKIT-PASS ", 0
fail_drive db "PATCHKIT-FAIL no BIOS drive 0x80 ", 0
fail_io    db "PATCHKIT-FAIL drive 0x80 write or read failed ", 0
fail_data  db "PATCHKIT-FAIL drive 0x80 read back other data ", 0
crlf       db 13, 10, 0
    times 0x1d0 - ($ - $$) db 0
token:                          ; the run token, written here by the host (NUL-terminated)
    times 510 - ($ - $$) db 0
    dw 0xaa55
