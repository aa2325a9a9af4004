; patchkit bzloader: a tiny kernel in the Linux boot protocol's bzImage format whose real-mode
; setup reads the BIOS drive gPXE kept with keep-san, checks what it read, and says so on COM1.
;
; The keepsan-boot guest embeds it in the ROM under test; gPXE's `imgexec` runs it after a
; sanboot that returned with keep-san set, so gPXE has shut its devices down first (as before
; a real kernel, memdisk or an installer) while the kept INT 13h drive stays hooked. The disk
; is the probe's (patchkit/guests/probe.py): "PKTOKEN <token>" at TOKEN_LBA, and from DATA_LBA
; on dword i of sector L holds L + (i << 24).
;
; Checks, each "BZLOADER ok NAME" or "BZLOADER FAIL NAME status|... 0xVALUE" on COM1, stopping
; at the first failure: AH=42 of the token sector, AH=48 (512 bytes a sector), AH=42 of 127
; stamped sectors, AH=02 (CHS) of the token sector as cylinder 0, head 0, sector TOKEN_LBA + 1
; (the probe disk's tracks have 63 sectors). Then "PATCHKIT-PASS <token>" and power-off, or
; "PATCHKIT-FAIL bzloader: ..." and power-off. Interrupts stay enabled across the calls.
;
; Boot protocol 2.02, loaded high: gPXE puts the setup at 1000:0000 and jumps to 1020:0000 with
; DS = ES = SS = 1000h. So this file is assembled at origin 0 and addressed through DS; code runs
; at CS = DS + 20h and uses relative jumps and calls only.

        cpu     386
        bits    16
        org     0

%ifndef TOKEN_LBA
%error "assemble with -DTOKEN_LBA=... -DDATA_LBA=..."
%endif
DRIVE           equ 0x80
BUF_SEG         equ 0x2000              ; phys 0x20000: 127 sectors fit below 0x30000
READ_SECTORS    equ 127
READ_LBA        equ DATA_LBA + 2000
COM1            equ 0x3F8

; ---------------------------------------------------------------- the boot sector (never run)
        times   0x1F1 - ($ - $$) db 0
setup_sects:    db SETUP_SECTS
root_flags:     dw 0
syssize:        dd 1                    ; the protected-mode part: 16 bytes
ram_size:       dw 0
vid_mode:       dw 0xFFFF
root_dev:       dw 0
boot_flag:      dw 0xAA55

; ---------------------------------------------------------------- setup (entry at offset 0x200)
        jmp     short entry
header:         db "HdrS"
version:        dw 0x0202
realmode_swtch: dd 0
start_sys_seg:  dw 0x1000
kernel_version: dw 0
type_of_loader: db 0
loadflags:      db 0x01                 ; LOADED_HIGH: a bzImage
setup_move_size: dw 0x8000
code32_start:   dd 0x100000
ramdisk_image:  dd 0
ramdisk_size:   dd 0
bootsect_kludge: dd 0
heap_end_ptr:   dw 0
ext_loader_ver: db 0
ext_loader_type: db 0
cmd_line_ptr:   dd 0

entry:
        mov     ax, cs
        sub     ax, 0x20
        mov     ds, ax
        mov     es, ax
        cld
        sti
        mov     si, s_start
        call    puts

        ; the token sector by AH=42
        mov     si, n_token
        mov     word [dap_count], 1
        mov     dword [dap_lba], TOKEN_LBA
        call    ext_read
        jc      failed_status
        call    token_check
        jc      failed
        call    ok

        ; AH=48: 512-byte sectors
        mov     si, n_ah48
        mov     word [edd], 0x1A
        push    si
        mov     si, edd
        mov     ah, 0x48
        mov     dl, DRIVE
        int     0x13
        pop     si
        jc      failed_status
        movzx   eax, word [edd + 0x18]
        mov     di, s_bytes_per_sector
        cmp     ax, 512
        jne     failed
        call    ok

        ; 127 stamped sectors by AH=42
        mov     si, n_read
        mov     word [dap_count], READ_SECTORS
        mov     dword [dap_lba], READ_LBA
        call    ext_read
        jc      failed_status
        call    stamp_check
        jc      failed
        call    ok

        ; the token sector again by AH=02 (CHS 0/0/TOKEN_LBA+1)
        mov     si, n_chs
        call    clear_buf
        push    es
        mov     ax, BUF_SEG
        mov     es, ax
        xor     bx, bx
        mov     ax, 0x0201
        mov     cx, TOKEN_LBA + 1
        xor     dh, dh
        mov     dl, DRIVE
        int     0x13
        pop     es
        jc      failed_status
        call    token_check
        jc      failed
        call    ok

        ; every call returned with interrupts enabled (a loader waiting on the timer needs that)
        mov     si, n_if
        mov     eax, [if_cleared]
        mov     di, s_if_cleared
        test    eax, eax
        jnz     failed
        call    ok

        mov     si, s_pass
        call    puts
        push    ds
        mov     ax, BUF_SEG
        mov     ds, ax
        mov     si, 8                   ; the token, after "PKTOKEN "
        call    puts
        pop     ds
        mov     si, s_crlf
        call    puts
        jmp     acpi_poweroff

; failed_status: the call at SI failed: report its status (AH).
failed_status:
        movzx   eax, ah
        mov     di, s_status
; failed: "BZLOADER FAIL NAME DETAIL VALUE" (SI name, DI detail, EAX value), the verdict, power-off.
failed:
        push    eax
        push    si
        mov     si, s_fail
        call    puts
        pop     si
        push    si
        call    puts
        mov     al, ' '
        call    putc
        mov     si, di
        call    puts
        mov     al, ' '
        call    putc
        pop     si
        pop     eax
        push    si
        call    put_hex
        mov     si, s_crlf
        call    puts
        mov     si, s_fail_verdict
        call    puts
        pop     si
        call    puts
        mov     si, s_crlf
        call    puts
        jmp     acpi_poweroff

; ok: "BZLOADER ok NAME" (SI).
ok:
        push    si
        mov     si, s_ok
        call    puts
        pop     si
        call    puts
        mov     si, s_crlf
        jmp     puts

; ext_read: AH=42 of [dap_count] sectors at [dap_lba] to BUF_SEG:0 (cleared first); CF, AH as returned.
ext_read:
        call    clear_buf
        push    si
        mov     word [dap], 16
        mov     word [dap_offset], 0
        mov     word [dap_segment], BUF_SEG
        mov     si, dap
        mov     ah, 0x42
        mov     dl, DRIVE
        sti
        int     0x13
        pushf
        push    ax
        pushf
        pop     ax
        test    ax, 0x200
        jnz     .enabled
        inc     dword [if_cleared]
.enabled:
        pop     ax
        popf
        pop     si
        ret

; clear_buf: zero READ_SECTORS sectors at BUF_SEG:0.
clear_buf:
        pushad
        push    es
        mov     ax, BUF_SEG
        mov     es, ax
        xor     di, di
        xor     eax, eax
        mov     cx, READ_SECTORS * 128
        rep     stosd
        pop     es
        popad
        ret

; token_check: CF clear when BUF_SEG:0 starts with "PKTOKEN " (else DI, EAX say what it held).
token_check:
        push    si
        push    es
        mov     ax, BUF_SEG
        mov     es, ax
        xor     di, di
        mov     si, s_token_tag
        mov     cx, 8
        repe    cmpsb
        mov     eax, [es:0]
        pop     es
        pop     si
        mov     di, s_no_token
        je      .good
        stc
        ret
.good:
        clc
        ret

; stamp_check: CF clear when BUF_SEG:0 holds the stamps of READ_SECTORS sectors from READ_LBA
; (else DI names the detail and EAX the first LBA that differs).
stamp_check:
        push    es
        mov     ax, BUF_SEG
        mov     es, ax
        xor     di, di
        mov     ebx, READ_LBA
        mov     dx, READ_SECTORS
.sector:
        mov     eax, ebx
        mov     cx, 128
.dword:
        cmp     [es:di], eax
        jne     .bad
        add     di, 4
        add     eax, 0x01000000
        loop    .dword
        inc     ebx
        dec     dx
        jnz     .sector
        pop     es
        clc
        ret
.bad:
        pop     es
        mov     eax, ebx
        mov     di, s_bad_lba
        stc
        ret

%include "serial-out.asm"

%include "acpi-off.asm"

s_start:        db "BZLOADER start: reading BIOS drive 0x80", 13, 10, 0
s_ok:           db "BZLOADER ok ", 0
s_fail:         db "BZLOADER FAIL ", 0
s_fail_verdict: db "PATCHKIT-FAIL bzloader: ", 0
s_pass:         db "PATCHKIT-PASS ", 0
s_crlf:         db 13, 10, 0
s_status:       db "status", 0
s_no_token:     db "no-token-tag-first-dword", 0
s_bad_lba:      db "data-mismatch-at-lba", 0
s_bytes_per_sector: db "bytes-per-sector", 0
s_if_cleared:   db "calls-returning-with-if-clear", 0
s_token_tag:    db "PKTOKEN "
n_token:        db "ah42-token-sector", 0
n_ah48:         db "ah48-parameters", 0
n_read:         db "ah42-read-127", 0
n_chs:          db "ah02-token-sector", 0
n_if:           db "int13-returns-with-interrupts-enabled", 0

        align   4
if_cleared:     dd 0
dap:            dw 16
dap_count:      dw 0
dap_offset:     dw 0
dap_segment:    dw 0
dap_lba:        dd 0, 0
edd:            times 0x42 db 0
setup_end:
SETUP_SECTS     equ (setup_end - $$ + 511) / 512 - 1 ; sectors after the boot sector

        times   (SETUP_SECTS + 1) * 512 - ($ - $$) db 0
; ---------------------------------------------------------------- the protected-mode part (never run)
        times   16 db 0xF4              ; hlt
