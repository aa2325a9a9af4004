; patchkit probe (586: uses RDTSC): a boot-sector program that tests the BIOS INT 13h services of the
; boot drive and reports each check on COM1 ("PROBE ok NAME" / "PROBE FAIL NAME ...").
;
; Disk layout (defined by patchkit/guests/probe.py and passed in with -D):
;   LBA 0                      this file's first 440 bytes (loader) + partition table
;   LBA 1 .. PROG_SECTORS      the rest of this file, loaded to 0000:7E00
;   LBA TOKEN_LBA              "PKTOKEN <token>\0" written by the host per run
;   LBA RESULT_LBA             "PROBE-DONE <token> failures=<n>" written by the probe
;   LBA DATA_LBA .. end        "stamped": dword i of sector L holds (L xor KEY) + (i << 24),
;                              KEY = 0 as built
;   LBA SCRATCH_LBA .. end     where the write checks write, with KEY = WRITE_KEY
; TOTAL_SECTORS is the disk size in sectors.
;
; Every transfer (ext_io, chs_io) calls INT 13h with interrupts enabled, and the last check,
; int13-returns-with-interrupts-enabled, fails if any returned with them disabled: a BIOS returns
; the caller's interrupt flag, and boot code that waits for the timer tick after a read relies on it.
;
; Assembled with -DTEST_DRIVE=N the probe tests BIOS drive N instead of its boot drive: the
; keep-san floppy (this file at LBA 0 .. PROG_SECTORS of a floppy) tests drive 0x80, the SAN
; disk gPXE kept, which then carries the layout above from TOKEN_LBA on. With -DUNCHECKED_END
; as well it leaves out the three reads past the end of the disk and says so (gPXE's INT 13h
; does not check them for ATA-over-Ethernet disks: the AoE keep-san floppy).
;
; Variants (each assembled into its own disk image; without these defines the program is the
; default probe, unchanged):
;   -DSHAPED       a large disk whose partition table has its own geometry (heads x sectors in the
;                  entry's end CHS): AH=08 must report that geometry (cylinders clamped at 1024),
;                  and CHS reads of the partition's start and end CHS, as the table gives them,
;                  must reach the sectors the table means. Only the regions the probe touches
;                  are stamped: LBA DATA_LBA .. STAMPED_END (reads, scratch), a track before the
;                  partition's end CHS, the last 128 sectors, and above 2^32 sectors (2 TiB)
;                  when TOTAL_SECTORS exceeds 32 bits, where the stamp also folds in the high
;                  dword of the LBA (dword i of sector H:L is (L xor KEY xor H * HI_MULT) + (i << 24))
;                  and AH=42 reads above and across 2^32 are checked.
;   -DREAD_ONLY    the disk is read-only: every write must fail with status 03 (write protected)
;                  and leave the sectors as they were; no result sector is written.
;   -DRESET_DEVICE (with TEST_DRIVE) the keep-san floppy that resets the virtio-blk device first,
;                  as an OS driver does, then expects drive calls to fail at once (reset_checks).
;   -DHOLD_READ    a read the harness holds back at the probe's markers (hold_checks).
;   -DCOUNT_REQUESTS  one 127-sector AH=42 read between two markers at which the harness counts
;                  the disk's requests (count_checks).

        cpu     586
        bits    16
        org     0x7C00

%ifndef TOTAL_SECTORS
%error "assemble with -DTOTAL_SECTORS=... -DTOKEN_LBA=... -DRESULT_LBA=... -DDATA_LBA=... -DSCRATCH_LBA=..."
%endif
%ifndef STAMPED_END
%define STAMPED_END TOTAL_SECTORS       ; the end of the stamped region starting at DATA_LBA
%endif
TOTAL_LO        equ TOTAL_SECTORS & 0xFFFFFFFF
TOTAL_HI        equ TOTAL_SECTORS >> 32
%if TOTAL_SECTORS > 0xFFFFFFFF
%define BIG                             ; LBAs above 32 bits: AH=42 carries the high dword
HI_MULT         equ 0x9E3779B9          ; the stamp's multiplier for the LBA's high dword
%endif
PART_ENTRY      equ 0x7C00 + 446        ; the partition table's first entry, loaded with this program
%ifdef HOLD_READ
%define HARNESS                         ; waits for the harness's keys (wait_key)
%endif
%ifdef COUNT_REQUESTS
%define HARNESS
%endif

; SET_LBA value: [io_lba] (and [io_lba_hi] on a BIG disk) = the 64-bit value.
%macro SET_LBA 1
        mov     dword [io_lba], (%1) & 0xFFFFFFFF
%ifdef BIG
        mov     dword [io_lba_hi], (%1) >> 32
%endif
%endmacro

; SECTOR_KEY: EAX = the first dword of sector EDX:EBX's pattern (EDX only on a BIG disk).
%macro SECTOR_KEY 0
%ifdef BIG
        imul    eax, edx, HI_MULT
        xor     eax, ebx
%else
        mov     eax, ebx
%endif
        xor     eax, [pat_key]
%endmacro

; NEXT_SECTOR: the next LBA in EDX:EBX.
%macro NEXT_SECTOR 0
%ifdef BIG
        add     ebx, 1
        adc     edx, 0
%else
        inc     ebx
%endif
%endmacro

WRITE_KEY       equ 0x5AA55AA5
BUF_A           equ 0x1FF0          ; 1FF0:0000 = phys 0x1FF00: every transfer crosses 0x20000
BUF_B           equ 0x3000          ; 3000:0000 = phys 0x30000: 64 KiB aligned
BUF_S           equ 0x5000          ; one-sector buffer for the token and result
TPUT_TICKS      equ 9               ; BIOS ticks (~0.5 s) per throughput sample
TICK_WAIT_KCYCLES equ 0x100000     ; ~0.3-1 s of TSC: longer without a BIOS tick = timer stopped
COM1            equ 0x3F8
TIMED_OUT       equ 0x80                ; INT 13h status: the drive did not answer (timeout)
NOT_READY       equ 0xAA                ; INT 13h status: drive not ready (gone, or taken over)

; ---------------------------------------------------------------- stage 1 (MBR)
start:
        cli
        xor     ax, ax
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     sp, 0x7C00
        sti
        cld
        mov     [drive], dl
        mov     ax, 0x0200 + PROG_SECTORS   ; AH=02 read, AL=sectors
        mov     cx, 0x0002                  ; cylinder 0, sector 2
        xor     dh, dh
        mov     bx, stage2
        int     0x13
        jc      .load_failed
%ifdef TEST_DRIVE
        mov     byte [drive], TEST_DRIVE    ; stage 2 came from the boot drive: now test this one
%endif
        jmp     main
.load_failed:
        mov     si, msg_load_failed
        call    puts
        jmp     acpi_poweroff

%include "acpi-off.asm"

%include "serial-out.asm"

msg_load_failed: db "PATCHKIT-FAIL probe loader: INT 13h AH=02 failed", 13, 10, 0
drive:  db      0

        times   440 - ($ - $$) db 0
        times   512 - ($ - $$) db 0     ; the host writes the partition table here

; ---------------------------------------------------------------- stage 2
stage2:

; put_dec: EAX as unsigned decimal (formatted by dec_str, then written out).
put_dec:
        pushad
        push    es
        push    ds
        pop     es
        mov     di, dec_buf
        call    dec_str
        mov     byte [di], 0
        mov     si, dec_buf
        call    puts
        pop     es
        popad
        ret

dec_buf: times 11 db 0                  ; 4294967295 and its terminator

put_space:
        push    ax
        mov     al, ' '
        call    putc
        pop     ax
        ret

put_crlf:
        push    ax
        mov     al, 13
        call    putc
        mov     al, 10
        call    putc
        pop     ax
        ret

; name: SI = check name; [name_n] appended as "-N" when non-zero.
put_name:
        call    puts
        cmp     dword [name_n], 0
        je      .done
        push    eax
        mov     al, '-'
        call    putc
        mov     eax, [name_n]
        call    put_dec
        pop     eax
.done:
        ret

; ok: "PROBE ok NAME".
ok:
        push    si
        mov     si, s_ok
        call    puts
        pop     si
        call    put_name
        jmp     put_crlf

; fail: "PROBE FAIL NAME DETAIL VALUE" (SI name, DI detail, EAX value); counts the failure.
fail:
        push    si
        mov     si, s_fail
        call    puts
        pop     si
        call    put_name
        call    put_space
        mov     si, di
        call    puts
        call    put_space
        call    put_hex
        call    put_crlf
        inc     word [failures]
        ret

; ---------------------------------------------------------------- disk I/O
; All I/O takes [io_op] (AH value), [io_lba], [io_count], [io_seg] (offset 0).
; Returns CF and AH as the BIOS left them.

ext_io:
        push    si
        push    dx
        mov     word [dap], 16
        mov     ax, [io_count]
        mov     [dap + 2], ax
        mov     word [dap + 4], 0
        mov     ax, [io_seg]
        mov     [dap + 6], ax
        mov     eax, [io_lba]
        mov     [dap + 8], eax
%ifdef BIG
        mov     eax, [io_lba_hi]
        mov     [dap + 12], eax
%else
        mov     dword [dap + 12], 0
%endif
        mov     si, dap
        mov     dl, [drive]
        mov     ah, [io_op]
        mov     al, 0
        sti
        int     0x13
        call    note_if
        pop     dx
        pop     si
        ret

; note_if: count an INT 13h call that returned with interrupts disabled (flags and registers kept).
; A BIOS returns the caller's interrupt flag: code that waits for the timer tick after a disk read
; (boot loaders do) would hang otherwise. report_if turns the count into a check.
note_if:
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
        ret

; report_if: the check int13-returns-with-interrupts-enabled, once (the detail: how many calls
; returned with interrupts disabled).
report_if:
        cmp     byte [if_reported], 0
        jne     .done
        mov     byte [if_reported], 1
        pushad
        mov     si, n_if
        mov     eax, [if_cleared]
        test    eax, eax
        jz      .ok
        mov     di, s_if_cleared
        call    fail
        jmp     .out
.ok:
        call    ok
.out:
        popad
.done:
        ret

; chs_io: converts [io_lba] with the geometry AH=08 reported.
chs_io:
        push    es
        push    bx
        push    cx
        push    dx
        mov     eax, [io_lba]
        xor     edx, edx
        movzx   ecx, word [spt]
        div     ecx                     ; EAX = track, EDX = sector - 1
        inc     dx
        mov     cl, dl                  ; CL = sector
        xor     edx, edx
        movzx   ebx, word [heads]
        div     ebx                     ; EAX = cylinder, EDX = head
        mov     dh, dl
        mov     ch, al
        shl     ah, 6
        or      cl, ah
        mov     dl, [drive]
        mov     ax, [io_seg]
        mov     es, ax
        xor     bx, bx
        mov     ah, [io_op]
        mov     al, [io_count]
        sti
        int     0x13
        call    note_if
        pop     dx
        pop     cx
        pop     bx
        pop     es
        ret

; check_buf: compare [io_count] sectors at [io_seg]:0 with the pattern for [io_lba].
; CF set on mismatch, EAX = the first bad LBA.
check_buf:
        push    es
        push    ebx
        push    ecx
        push    edi
%ifdef BIG
        push    edx
        mov     edx, [io_lba_hi]
%endif
        mov     ax, [io_seg]
        mov     es, ax
        xor     di, di
        mov     ebx, [io_lba]
        mov     cx, [io_count]
.sector:
        push    cx
        SECTOR_KEY
        mov     cx, 128
.dword:
        cmp     [es:di], eax
        jne     .bad
        add     di, 4
        add     eax, 0x01000000
        loop    .dword
        pop     cx
        NEXT_SECTOR
        loop    .sector
        clc
        jmp     .done
.bad:
        pop     cx
        mov     eax, ebx
        stc
.done:
%ifdef BIG
        pop     edx
%endif
        pop     edi
        pop     ecx
        pop     ebx
        pop     es
        ret

; fill_buf: write the pattern for [io_lba] .. into [io_seg]:0 ([io_count] sectors).
fill_buf:
        pushad
        push    es
        mov     ax, [io_seg]
        mov     es, ax
        xor     di, di
        mov     ebx, [io_lba]
%ifdef BIG
        mov     edx, [io_lba_hi]
%endif
        mov     cx, [io_count]
.sector:
        push    cx
        SECTOR_KEY
        mov     cx, 128
.dword:
        stosd
        add     eax, 0x01000000
        loop    .dword
        pop     cx
        NEXT_SECTOR
        loop    .sector
        pop     es
        popad
        ret

; clear_buf: zero 127 sectors at [io_seg]:0.
clear_buf:
        pushad
        push    es
        mov     ax, [io_seg]
        mov     es, ax
        xor     di, di
        xor     eax, eax
        mov     cx, 127 * 128
        rep     stosd
        pop     es
        popad
        ret

; read_check: read with [io_op] (0x02 or 0x42) and compare with the pattern; report as SI.
read_check:
        call    clear_buf
        cmp     byte [io_op], 0x42
        je      .ext
        call    chs_io
        jmp     .done_io
.ext:
        call    ext_io
.done_io:
        jnc     .compare
        movzx   eax, ah
        mov     di, s_status
        jmp     fail
.compare:
        call    check_buf
        jnc     .good
        mov     di, s_bad_lba
        jmp     fail
.good:
        jmp     ok

; write_check: fill [io_seg] with the written pattern, write with [io_op] (0x03 or 0x43),
; read back into the other buffer with the matching read, compare; report as SI.
; READ_ONLY: the write must fail with status 03 and the read back must find the sectors as built.
write_check:
        mov     dword [pat_key], WRITE_KEY
        call    fill_buf
        cmp     byte [io_op], 0x43
        je      .ext
        call    chs_io
        jmp     .done_io
.ext:
        call    ext_io
.done_io:
%ifdef READ_ONLY
        jc      .refused
        xor     eax, eax
        mov     di, s_write_accepted
        call    fail
        jmp     .out
.refused:
        cmp     ah, 0x03
        je      .read_back
        movzx   eax, ah
        mov     di, s_write_status
        call    fail
        jmp     .out
.read_back:
        mov     dword [pat_key], 0      ; unchanged: the sectors' own stamps
%else
        jnc     .read_back
        movzx   eax, ah
        mov     di, s_write_status
        call    fail
        jmp     .out
.read_back:
%endif
        sub     byte [io_op], 1         ; 03 -> 02, 43 -> 42
        xor     word [io_seg], BUF_A ^ BUF_B
        call    read_check
.out:
        mov     dword [pat_key], 0
        ret

; expect_error: do [io_op] I/O that must fail (CF set); report as SI.
expect_error:
        cmp     byte [io_op], 0x42
        je      .ext
        call    chs_io
        jmp     .done_io
.ext:
        call    ext_io
.done_io:
        jc      .good
        xor     eax, eax
        mov     di, s_no_error
        jmp     fail
.good:
        jmp     ok

%ifdef SHAPED
; expect_eq: ok if EAX = EBX, else fail with detail DI and value EAX; report as SI.
expect_eq:
        cmp     eax, ebx
        jne     fail
        jmp     ok

; chs_read_at: AH=02 of one sector at C/H/S CX, DH (as INT 13h takes them) into BUF_A, which
; must then hold the stamp of LBA EAX; a mismatch reports the LBA the sector holds (its first
; dword: 0 for a sector that is not stamped). Report as SI.
chs_read_at:
        mov     [io_lba], eax
        mov     word [io_count], 1
        mov     word [io_seg], BUF_A
        call    clear_buf
        push    es
        mov     ax, BUF_A
        mov     es, ax
        xor     bx, bx
        mov     dl, [drive]
        mov     ax, 0x0201
        int     0x13
        pop     es
        jnc     .compare
        movzx   eax, ah
        mov     di, s_status
        jmp     fail
.compare:
        call    check_buf
        jnc     ok
        push    es
        mov     ax, BUF_A
        mov     es, ax
        mov     eax, [es:0]
        pop     es
        mov     di, s_holds
        jmp     fail
%endif

; ---------------------------------------------------------------- the checks
main:
        ; SeaBIOS mirrors the screen to COM1 lazily, from its timer interrupt: let it
        ; flush what the BIOS and the ROM printed before our lines start, or its
        ; characters land in the middle of them.
        sti
        call    tick_edge
        call    tick_edge
        mov     si, s_hello
        call    puts
        movzx   eax, byte [drive]
        call    put_hex
        call    put_crlf
%ifdef RESET_DEVICE
        jmp     reset_checks
%endif
%ifdef HOLD_READ
        jmp     hold_checks
%endif
%ifdef COUNT_REQUESTS
        jmp     count_checks
%endif

        ; AH=41: extensions present, fixed-disk access subset.
        mov     si, n_ah41
        mov     ah, 0x41
        mov     bx, 0x55AA
        mov     dl, [drive]
        int     0x13
        jc      .ah41_bad
        cmp     bx, 0xAA55
        jne     .ah41_bad
        test    cx, 1
        jz      .ah41_bad
        call    ok
        jmp     .ah08
.ah41_bad:
        movzx   eax, ax
        mov     di, s_status
        call    fail

.ah08:  ; AH=08: geometry.
        mov     si, n_ah08
        mov     ah, 0x08
        mov     dl, [drive]
        xor     di, di
        mov     es, di
        int     0x13
        push    ds
        pop     es
        jnc     .ah08_ok
        movzx   eax, ah
        mov     di, s_status
        call    fail
        jmp     .fatal
.ah08_ok:
        movzx   ax, dh
        inc     ax
        mov     [heads], ax
        mov     al, cl
        and     ax, 0x3F
        mov     [spt], ax
        mov     al, cl
        shl     ax, 2
        mov     al, ch
        and     ax, 0x3FF
        inc     ax
        mov     [cyls], ax
        call    ok
        mov     si, s_geometry
        call    puts
        movzx   eax, word [cyls]
        call    put_dec
        call    put_space
        movzx   eax, word [heads]
        call    put_dec
        call    put_space
        movzx   eax, word [spt]
        call    put_dec
        call    put_crlf

        ; AH=48: drive parameters; the size must be the disk's.
        mov     si, n_ah48
        mov     word [edd], 0x1A
        mov     ah, 0x48
        mov     dl, [drive]
        push    si
        mov     si, edd
        int     0x13
        pop     si
        jnc     .ah48_ok
        movzx   eax, ah
        mov     di, s_status
        call    fail
        jmp     .ah15
.ah48_ok:
        cmp     word [edd + 0x18], 512
        je      .ah48_bps
        movzx   eax, word [edd + 0x18]
        mov     di, s_bytes_per_sector
        call    fail
        jmp     .ah15
.ah48_bps:
        call    ok
        mov     si, n_size
        mov     eax, [edd + 0x10]
        cmp     dword [edd + 0x14], TOTAL_HI
        jne     .size_bad
        cmp     eax, TOTAL_LO
        jne     .size_bad
        call    ok
        jmp     .consistent
.size_bad:
        mov     di, s_sectors
        call    fail
        jmp     .ah15

.consistent:
        ; cylinders x heads x sectors must cover all but less than two cylinders of the disk
        mov     si, n_geometry
        movzx   eax, word [heads]
        movzx   ebx, word [spt]
        mul     ebx
        mov     [cyl_sectors], eax
%ifdef SHAPED
        ; past 1024 cylinders CHS reaches 1024 of them: that is what the geometry must cover
        mov     ecx, eax
        shl     ecx, 10
%ifndef BIG
        cmp     ecx, TOTAL_LO
        jbe     .chs_limit
        mov     ecx, TOTAL_LO
.chs_limit:
%endif
%define CHS_SECTORS ecx
%else
%define CHS_SECTORS TOTAL_SECTORS
%endif
        movzx   ebx, word [cyls]
        mul     ebx                     ; EAX = CHS-addressable sectors
        cmp     eax, CHS_SECTORS
        ja      .geometry_bad
        mov     ebx, eax
        add     ebx, [cyl_sectors]
        add     ebx, [cyl_sectors]
        cmp     ebx, CHS_SECTORS
        jbe     .geometry_bad
        call    ok
        jmp     .ah15
.geometry_bad:
        mov     di, s_chs_sectors
        call    fail

.ah15:  ; AH=15: a fixed disk with a plausible sector count.
        mov     si, n_ah15
        mov     ah, 0x15
        mov     dl, [drive]
        int     0x13
        jc      .ah15_bad
        cmp     ah, 3
        jne     .ah15_bad
        mov     ax, cx
        shl     eax, 16
        mov     ax, dx
        test    eax, eax
        jz      .ah15_count
%ifndef BIG                             ; CX:DX cannot hold more than 32 bits
        cmp     eax, TOTAL_SECTORS
        ja      .ah15_count
%endif
        call    ok
        jmp     .reads
.ah15_bad:
        movzx   eax, ax
        mov     di, s_status
        call    fail
        jmp     .reads
.ah15_count:
        mov     di, s_sectors
        call    fail

.reads:
%ifdef SHAPED
        ; AH=08's geometry must be the partition table's (its end CHS: last head, sectors per
        ; track), with min(1024, disk / cylinder) cylinders: the geometry DOS boot code uses.
        ; One cylinder fewer passes with a note: BIOSes may hold back a diagnostic cylinder
        ; (SeaBIOS does).
        movzx   eax, byte [PART_ENTRY + 5]
        inc     eax
        mov     [t_heads], ax
        movzx   eax, byte [PART_ENTRY + 6]
        and     al, 0x3F
        mov     [t_spt], ax
        mov     si, n_table_heads
        movzx   eax, word [heads]
        movzx   ebx, word [t_heads]
        mov     di, s_ah08_heads
        call    expect_eq
        mov     si, n_table_spt
        movzx   eax, word [spt]
        movzx   ebx, word [t_spt]
        mov     di, s_ah08_spt
        call    expect_eq
        movzx   eax, word [t_heads]
        movzx   ecx, word [t_spt]
        mul     ecx                     ; EAX = the table's cylinder in sectors
        mov     ecx, eax
        mov     ebx, 1024
%ifndef BIG
        mov     eax, TOTAL_SECTORS
        xor     edx, edx
        div     ecx
        cmp     eax, ebx
        jae     .table_cylinders
        mov     ebx, eax
.table_cylinders:
%endif
        mov     si, n_table_cylinders
        movzx   eax, word [cyls]
        lea     ecx, [eax + 1]
        cmp     ecx, ebx
        jne     .cylinders
        mov     eax, ebx                ; one held back: as good as the table's
        push    si
        mov     si, s_diag_note
        call    puts
        pop     si
.cylinders:
        mov     di, s_ah08_cylinders
        call    expect_eq

        ; CHS reads at the C/H/S the table gives: the partition's start must be its first sector
        ; (its LBA field), its end CHS (saturated at 1023/254/63 past 1024 cylinders, as fdisk
        ; writes it) the sector that C/H/S means with the table's geometry.
        mov     eax, [PART_ENTRY + 8]
        mov     dh, [PART_ENTRY + 1]
        mov     cx, [PART_ENTRY + 2]
        mov     si, n_part_start
        call    chs_read_at
        movzx   eax, byte [PART_ENTRY + 6]
        and     al, 0xC0
        shl     eax, 2
        mov     al, [PART_ENTRY + 7]    ; EAX = the end cylinder
        movzx   ecx, word [t_heads]
        mul     ecx
        movzx   ecx, byte [PART_ENTRY + 5]
        add     eax, ecx
        movzx   ecx, word [t_spt]
        mul     ecx
        movzx   ecx, byte [PART_ENTRY + 6]
        and     cl, 0x3F
        dec     ecx
        add     eax, ecx                ; EAX = the end CHS as an LBA
        mov     dh, [PART_ENTRY + 5]
        mov     cx, [PART_ENTRY + 6]
        mov     si, n_part_end
        call    chs_read_at
%endif
        ; AH=02 reads across a track and a cylinder boundary, and 127 sectors.
        mov     byte [io_op], 0x02
        mov     word [io_seg], BUF_A
        mov     word [io_count], 6
        movzx   eax, word [spt]
        imul    eax, 5
        sub     eax, 3
        mov     [io_lba], eax
        mov     si, n_chs_read_track
        call    read_check
        mov     eax, [cyl_sectors]
        shl     eax, 1
        sub     eax, 3
        cmp     eax, SCRATCH_LBA - 6
        ja      .unusable
        mov     [io_lba], eax
        mov     si, n_chs_read_cylinder
        call    read_check
        mov     word [io_count], 127
        mov     dword [io_lba], DATA_LBA + 1000
        mov     si, n_chs_read_127
        call    read_check

        ; AH=42 reads of 1, 8, 64 and 127 sectors into a buffer crossing 64 KiB.
        mov     byte [io_op], 0x42
        mov     bx, sizes
.ext_read:
        movzx   eax, word [bx]
        test    eax, eax
        jz      .ext_read_aligned
        mov     [io_count], ax
        mov     [name_n], eax
        imul    eax, 37
        add     eax, DATA_LBA + 3000
        mov     [io_lba], eax
        mov     si, n_ext_read
        push    bx
        call    read_check
        pop     bx
        add     bx, 2
        jmp     .ext_read
.ext_read_aligned:
        mov     dword [name_n], 0
        mov     word [io_seg], BUF_B
        mov     word [io_count], 127
        mov     dword [io_lba], DATA_LBA + 5000
        mov     si, n_ext_read_aligned
        call    read_check

%ifdef BIG
        ; above 2 TiB (2^32 sectors): AH=42 passes the LBA's high dword, and a read across
        ; 2^32 carries into it (each sector's stamp differs from the one 2^32 below it)
        mov     word [io_seg], BUF_A
        mov     word [io_count], 127
        SET_LBA 0x100000000 - 64
        mov     si, n_across_2t
        call    read_check
        mov     word [io_count], 8
        SET_LBA 0x100000000 + DATA_LBA + 1000
        mov     si, n_above_2t
        call    read_check
%endif

        ; the last sector reads; beyond it, reads fail instead of hanging or wrapping.
        mov     word [io_count], 1
        SET_LBA TOTAL_SECTORS - 1
        mov     si, n_last_sector
        call    read_check
%ifdef UNCHECKED_END
        mov     si, s_end_note
        call    puts
%else
        mov     word [io_seg], BUF_A
        SET_LBA TOTAL_SECTORS
        mov     si, n_past_end
        call    expect_error
        mov     word [io_count], 2
        SET_LBA TOTAL_SECTORS - 1
        mov     si, n_straddle_end
        call    expect_error
%ifdef BIG
        mov     dword [io_lba_hi], 0
%endif
        mov     byte [io_op], 0x02
        mov     word [io_count], 1
%ifdef SHAPED
        cmp     word [cyls], 1023       ; CHS cannot name a cylinder past 1023
        jb      .chs_past_end
        mov     si, s_chs_end_note
        call    puts
        jmp     .writes
.chs_past_end:
%endif
        movzx   eax, word [cyls]
        inc     eax                     ; AH=08 may hold back one (diagnostic) cylinder:
        mul     dword [cyl_sectors]     ; one beyond that is past the end of the disk
        mov     [io_lba], eax
        mov     si, n_chs_past_end
        call    expect_error
%endif

.writes:
        ; writes (scratch region), each read back and compared.
        mov     word [io_seg], BUF_B
        mov     byte [io_op], 0x03
        mov     word [io_count], 6
        movzx   eax, word [spt]
        imul    eax, 5
        add     eax, SCRATCH_LBA - 3
        mov     [io_lba], eax
        mov     si, n_chs_write_track
        call    write_check
        mov     word [io_seg], BUF_B
        mov     byte [io_op], 0x03
        mov     eax, [cyl_sectors]
        shl     eax, 1
        add     eax, SCRATCH_LBA - 3
        cmp     eax, STAMPED_END - 6
        ja      .unusable
        mov     [io_lba], eax
        mov     si, n_chs_write_cylinder
        call    write_check

        mov     bx, sizes
.ext_write:
        movzx   eax, word [bx]
        test    eax, eax
        jz      .throughput
        mov     [io_count], ax
        mov     [name_n], eax
        mov     si, bx
        sub     si, sizes
        shl     si, 1
        mov     eax, [ext_write_lba + si]
        mov     [io_lba], eax
        mov     byte [io_op], 0x43
        mov     word [io_seg], BUF_A
        mov     si, n_ext_write
        push    bx
        call    write_check
        pop     bx
        add     bx, 2
        jmp     .ext_write

.unusable:
        mov     si, n_geometry
        mov     di, s_unusable
        call    fail
        jmp     .fatal

.throughput:
        mov     dword [name_n], 0
        call    throughput
        jmp     finish

.fatal:
        jmp     finish

; throughput: for each transfer size, count the sectors AH=42 reads in TPUT_TICKS
; BIOS ticks' worth of TSC time (calibrated against the BIOS tick count first).
; Interrupts are enabled first: INT 13h handlers may return with IF clear.
throughput:
        call    calibrate
        jc      .no_ticks
        mov     si, s_tsc
        call    puts
        call    put_dec
        call    put_crlf

        mov     byte [io_op], 0x42
        mov     word [io_seg], BUF_B
        mov     bx, sizes
.size:
        movzx   ecx, word [bx]
        test    ecx, ecx
        jz      .done
        mov     [io_count], cx
        mov     dword [io_lba], DATA_LBA
        xor     edi, edi                ; sectors read
        sti
        call    tick_edge
        mov     esi, [fs:0x46C]
        call    kcycles
        mov     ebp, eax
.read:
        call    ext_io
        jc      .error
        add     edi, ecx
        add     [io_lba], ecx
        mov     eax, [io_lba]
        add     eax, ecx
        cmp     eax, SCRATCH_LBA
        jb      .next
        mov     dword [io_lba], DATA_LBA
.next:
        call    kcycles
        sub     eax, ebp
        mov     edx, eax
        mov     eax, [kcycles_per_tick]
        imul    eax, TPUT_TICKS
        cmp     edx, eax
        jb      .read
        sti
        mov     eax, [fs:0x46C]
        sub     eax, esi
        push    si
        mov     si, s_tput
        call    puts
        pop     si
        push    eax
        mov     eax, ecx
        call    put_dec
        call    put_space
        mov     eax, edi
        call    put_dec
        call    put_space
        pop     eax
        call    put_dec
        call    put_space
        mov     eax, edx
        call    put_dec
        call    put_crlf
        add     bx, 2
        jmp     .size
.error:
        mov     [name_n], ecx
        movzx   eax, ah
        mov     si, n_tput
        mov     di, s_status
        call    fail
        mov     dword [name_n], 0
        add     bx, 2
        jmp     .size
.no_ticks:
        mov     si, n_ticks
        xor     eax, eax
        mov     di, s_stopped
        call    fail
.done:
        ret

; calibrate: EAX = [kcycles_per_tick], the TSC kcycles of a BIOS tick (measured over 4 ticks,
; interrupts enabled); CF set if the tick count stopped. Clobbers ESI, EBP.
calibrate:
        sti
        call    tick_edge
        jc      .done
        mov     esi, [fs:0x46C]
        call    kcycles
        mov     ebp, eax
.wait:
        call    kcycles
        sub     eax, ebp
        cmp     eax, TICK_WAIT_KCYCLES * 4
        ja      .stopped
        mov     eax, [fs:0x46C]
        sub     eax, esi
        cmp     eax, 4
        jb      .wait
        call    kcycles
        sub     eax, ebp
        shr     eax, 2
        mov     [kcycles_per_tick], eax
        clc
        ret
.stopped:
        stc
.done:
        ret

; tick_edge: wait for the BIOS tick count at 0040:006C to change (FS = 0 on return).
; CF set if it did not change within TICK_WAIT_KCYCLES.
tick_edge:
        push    eax
        push    ebx
        push    ecx
        xor     ax, ax
        mov     fs, ax
        call    kcycles
        mov     ebx, eax
        mov     ecx, [fs:0x46C]
.wait:
        cmp     ecx, [fs:0x46C]
        jne     .changed
        call    kcycles
        sub     eax, ebx
        cmp     eax, TICK_WAIT_KCYCLES
        jb      .wait
        stc
        jmp     .out
.changed:
        clc
.out:
        pop     ecx
        pop     ebx
        pop     eax
        ret

; kcycles: EAX = TSC / 1024 (low 32 bits).
kcycles:
        push    edx
        rdtsc
        shrd    eax, edx, 10
        pop     edx
        ret

%ifdef RESET_DEVICE
; ---------------------------------------------------------------- keep-san after an OS took over
; An OS driver taking the virtio-blk device over resets it (device status register = 0). The
; drive gPXE kept must then fail INT 13h calls at once instead of waiting for the device. The
; calls are timed by the TSC (calibrated against the BIOS tick: the tick count does not advance
; while a handler runs with interrupts disabled). Nothing is written to the disk.
reset_checks:
        call    read_token              ; while the disk still answers
        jc      finish.no_token
        call    calibrate
        jc      .no_ticks
        mov     byte [io_op], 0x42
        mov     word [io_seg], BUF_A
        mov     word [io_count], 1
        mov     dword [io_lba], DATA_LBA
        mov     si, n_read_before_reset
        call    read_check
        call    reset_virtio
        jc      finish.verdict
        mov     si, n_read_after_reset
        call    quick_failure
        mov     byte [io_op], 0x43
        mov     si, n_write_after_reset
        call    quick_failure
        mov     byte [io_op], 0x42
        mov     si, n_read_again_after_reset
        call    quick_failure
        jmp     finish.verdict
.no_ticks:
        mov     si, n_ticks
        xor     eax, eax
        mov     di, s_stopped
        call    fail
        jmp     finish.verdict

; reset_virtio: find 1af4:1001 (the first one) through the PCI BIOS (INT 1Ah B102), take its
; legacy I/O base from BAR0 (B10A) and write 0 to its status register (base + 18). Reports
; "virtio-reset" and notes the device; CF set when it could not.
reset_virtio:
        mov     ax, 0xB102
        mov     cx, 0x1001
        mov     dx, 0x1AF4
        xor     si, si
        int     0x1A
        mov     si, n_virtio_reset
        jc      .no_device
        test    ah, ah
        jnz     .no_device
        mov     ax, 0xB10A
        mov     di, 0x10
        int     0x1A
        jc      .no_device
        test    cl, 1
        jz      .no_io_bar
        and     cx, 0xFFFC
        mov     dx, cx
        add     dx, 18
        xor     al, al
        out     dx, al
        push    si
        mov     si, s_reset_note
        call    puts
        movzx   eax, bx
        call    put_hex
        mov     si, s_reset_io
        call    puts
        movzx   eax, cx
        call    put_hex
        call    put_crlf
        pop     si
        call    ok
        clc
        ret
.no_io_bar:
        mov     eax, ecx
        mov     di, s_bar0
        jmp     .failed
.no_device:
        movzx   eax, ah
        mov     di, s_no_device
.failed:
        call    fail
        stc
        ret

; quick_failure: AH=[io_op] (0x42 or 0x43) of one sector at DATA_LBA, which must fail with status
; AAh (drive not ready: the device was taken over) within RESET_TICKS BIOS ticks (of TSC time);
; report as SI (the detail is the status, or the ticks it took). A note names the call first: if
; it hangs, the log shows which.
quick_failure:
        push    si
        mov     si, s_calling_note
        call    puts
        pop     si
        push    si
        call    puts
        pop     si
        call    put_crlf
        mov     word [io_seg], BUF_A
        mov     word [io_count], 1
        mov     dword [io_lba], DATA_LBA
        call    kcycles
        mov     ebp, eax
        call    ext_io
        pushf
        push    ax
        call    kcycles
        sub     eax, ebp
        xor     edx, edx
        div     dword [kcycles_per_tick]
        mov     ebx, eax                ; ticks the call took
        pop     ax
        popf
        jc      .failed
        xor     eax, eax
        mov     di, s_no_error
        jmp     fail
.failed:
        cmp     ah, NOT_READY
        je      .not_ready
        movzx   eax, ah
        mov     di, s_status
        jmp     fail
.not_ready:
        mov     eax, ebx
        cmp     eax, RESET_TICKS
        jbe     .quick
        mov     di, s_slow_ticks
        jmp     fail
.quick:
        jmp     ok
%endif

%ifdef HOLD_READ
; ---------------------------------------------------------------- a request the device holds
; For a run whose disk holds a request back: the harness throttles the disk when it sees
; HOLD_READY (QEMU throttle filter, a rate of a byte per second) and presses a key; the probe
; reads one sector (the primer, which passes and fills the throttle's bucket), then HOLD_COUNT
; sectors into a buffer whose next sector is a canary: that read is held. It must fail (the
; driver's timeout), must not have touched the canary, and after HOLD_RETURNED (the harness
; lifts the limit, then presses a key) the buffer must not change for HOLD_WATCH_TICKS: a
; driver that left the request with the device lets it write the caller's memory later. Then
; the held call's status must have been 80h (timed out) and a later read must fail with AAh
; (drive not ready). The held call's duration is printed ("PROBE held-read-kcycles K T": TSC
; kcycles, and kcycles a BIOS tick) for the host to report.
; Nothing is written to the disk (the device may be unusable after the timeout).
HOLD_LBA        equ DATA_LBA + 7000
HOLD_COUNT      equ 8
HOLD_BYTES      equ (HOLD_COUNT + 1) * 512
HOLD_CANARY     equ 0xC5
HOLD_WATCH_TICKS equ 55                 ; about 3 s

hold_checks:
        call    read_token
        jc      finish.no_token
        call    calibrate
        jc      .no_ticks
        push    es
        mov     ax, BUF_B
        mov     es, ax
        xor     di, di
        mov     al, HOLD_CANARY
        mov     cx, HOLD_BYTES
        rep     stosb
        pop     es
        mov     si, s_hold_ready
        call    wait_key
        jc      finish.verdict
        mov     byte [io_op], 0x42
        mov     word [io_seg], BUF_A
        mov     word [io_count], 1
        mov     dword [io_lba], HOLD_LBA - 1
        mov     si, n_hold_primer
        call    read_check
        mov     word [io_seg], BUF_B
        mov     word [io_count], HOLD_COUNT
        mov     dword [io_lba], HOLD_LBA
        call    kcycles
        mov     ebp, eax
        call    ext_io
        pushf
        push    ax
        call    kcycles
        sub     eax, ebp
        mov     [held_kcycles], eax
        xor     edx, edx
        div     dword [kcycles_per_tick]
        mov     ebx, eax                ; ticks the call took
        push    ds                      ; snapshot of the buffer and canary as the call left them
        push    es
        mov     cx, BUF_A
        mov     es, cx
        mov     cx, BUF_B
        mov     ds, cx
        xor     si, si
        xor     di, di
        mov     cx, HOLD_BYTES
        rep     movsb
        pop     es
        pop     ds
        pop     ax
        popf
        mov     si, n_hold_fails
        jc      .failed
        xor     eax, eax
        mov     di, s_no_error
        call    fail
        jmp     .canary
.failed:
        push    si
        mov     cl, ah
        mov     si, s_hold_status
        call    puts
        movzx   eax, cl
        call    put_hex
        mov     si, s_hold_ticks
        call    puts
        mov     eax, ebx
        call    put_dec
        call    put_crlf
        mov     si, s_held_read         ; the call's duration for the host: kcycles and kcycles a tick
        call    puts
        mov     eax, [held_kcycles]
        call    put_dec
        call    put_space
        mov     eax, [kcycles_per_tick]
        call    put_dec
        call    put_crlf
        pop     si
        call    ok
        mov     [held_status], cl       ; checked once the buffer checks are done (.after)
        mov     byte [held_failed], 1
.canary:
        mov     si, n_hold_canary
        push    es
        mov     ax, BUF_A
        mov     es, ax
        mov     di, HOLD_COUNT * 512
        mov     al, HOLD_CANARY
        mov     cx, 512
        repe    scasb
        pop     es
        je      .canary_ok
        mov     eax, HOLD_COUNT * 512 - 1 ; EAX = the first changed offset
        add     eax, 512
        sub     ax, cx
        mov     di, s_changed_at
        call    fail
        jmp     .watch
.canary_ok:
        call    ok
.watch:
        mov     si, s_hold_returned
        call    wait_key
        jc      finish.verdict
        sti
        mov     ecx, HOLD_WATCH_TICKS
.tick:
        call    tick_edge
        loop    .tick
        mov     si, n_hold_unchanged
        push    ds
        push    es
        mov     ax, BUF_A
        mov     es, ax
        mov     ax, BUF_B
        mov     ds, ax
        xor     si, si
        xor     di, di
        mov     cx, HOLD_BYTES
        repe    cmpsb
        pop     es
        pop     ds
        mov     si, n_hold_unchanged
        je      .unchanged
        mov     eax, HOLD_BYTES - 1     ; EAX = the first changed offset
        sub     ax, cx
        mov     di, s_changed_at
        call    fail
        jmp     .after
.unchanged:
        call    ok
.after:
        ; a held call that failed must say the drive did not answer (80h), and later calls must
        ; fail at once with AAh (drive not ready): the device was reset under the timed-out request
        cmp     byte [held_failed], 0
        je      finish.verdict
        mov     si, n_hold_status
        movzx   eax, byte [held_status]
        cmp     al, TIMED_OUT
        je      .timed_out
        mov     di, s_status
        call    fail
        jmp     .after_call
.timed_out:
        call    ok
.after_call:
        mov     byte [io_op], 0x42
        mov     word [io_seg], BUF_A
        mov     word [io_count], 1
        mov     dword [io_lba], HOLD_LBA
        mov     si, n_after_timeout
        call    ext_io
        jc      .after_failed
        xor     eax, eax
        mov     di, s_no_error
        call    fail
        jmp     finish.verdict
.after_failed:
        cmp     ah, NOT_READY
        je      .after_ok
        movzx   eax, ah
        mov     di, s_status
        call    fail
        jmp     finish.verdict
.after_ok:
        call    ok
        jmp     finish.verdict
.no_ticks:
        mov     si, n_ticks
        xor     eax, eax
        mov     di, s_stopped
        call    fail
        jmp     finish.verdict
%endif

%ifdef COUNT_REQUESTS
; ---------------------------------------------------------------- virtio requests per INT 13h call
; The harness counts the disk's read requests (QMP query-blockstats) at COUNT_BEFORE and at
; COUNT_AFTER, pressing a key after each; between them the probe makes one AH=42 read of
; COUNT_SECTORS sectors (checked against the stamps), so the difference is that call's requests.
; Nothing is written to the disk.
COUNT_SECTORS   equ 127

count_checks:
        call    read_token
        jc      finish.no_token
        mov     si, s_count_before
        call    wait_key
        jc      finish.verdict
        mov     byte [io_op], 0x42
        mov     word [io_seg], BUF_B
        mov     word [io_count], COUNT_SECTORS
        mov     dword [io_lba], DATA_LBA + 5000
        mov     si, n_count_read
        call    read_check
        mov     si, s_count_after
        call    wait_key
        jmp     finish.verdict
%endif

%ifdef HARNESS
HOLD_KEY_TICKS  equ 1092                ; a minute for the harness to act

; wait_key: print the line at SI (a marker for the harness), then wait up to HOLD_KEY_TICKS for
; a key (INT 16h) and take it; CF set (and a failure counted) if none came.
wait_key:
        sti
        call    puts
        mov     ecx, HOLD_KEY_TICKS
.poll:
        mov     ah, 0x01
        int     0x16
        jnz     .key
        call    tick_edge
        loop    .poll
        mov     si, n_hold_key
        xor     eax, eax
        mov     di, s_no_key
        call    fail
        stc
        ret
.key:
        xor     ah, ah
        int     0x16
        clc
        ret
%endif

;
; finish: read the token, write the result sector, print the verdict, power off.
; The token sector is read to BUF_S:0000; the result is built at BUF_S:0200.
finish:
        call    report_if
        call    read_token
        jc      .no_token

        mov     ax, BUF_S
        mov     es, ax
        mov     di, 0x200
        xor     al, al
        mov     cx, 512
        rep     stosb
        mov     di, 0x200
        mov     si, s_done
        call    copy_str
        push    ds
        mov     ax, BUF_S
        mov     ds, ax
        mov     si, 8
        call    copy_str
        pop     ds
        mov     si, s_failures
        call    copy_str
        movzx   eax, word [failures]
        call    dec_str
        push    ds
        pop     es
%ifdef READ_ONLY
        mov     si, s_no_result_note
        call    puts
%else
        mov     byte [io_op], 0x43
        mov     word [io_seg], BUF_S + 0x20
        mov     dword [io_lba], RESULT_LBA
        call    ext_io
        jnc     .verdict
        mov     si, n_result
        movzx   eax, ah
        mov     di, s_write_status
        call    fail
%endif
.verdict:
        call    report_if
        cmp     dword [failures], 0
        jne     .failed
        mov     si, s_pass
        call    puts
        push    ds
        mov     ax, BUF_S
        mov     ds, ax
        mov     si, 8
        call    puts
        pop     ds
        call    put_crlf
        jmp     acpi_poweroff
.failed:
        mov     si, s_fail_verdict
        call    puts
        movzx   eax, word [failures]
        call    put_dec
        mov     si, s_failures_tail
        call    puts
        jmp     acpi_poweroff
.no_token:
        mov     si, s_no_token
        call    puts
        jmp     acpi_poweroff

; read_token: read the token sector to BUF_S:0000; CF set if that fails or it has no token tag.
read_token:
        mov     byte [io_op], 0x42
        mov     word [io_seg], BUF_S
        mov     word [io_count], 1
        mov     dword [io_lba], TOKEN_LBA
        call    ext_io
        jc      .done
        mov     ax, BUF_S
        mov     es, ax
        xor     di, di
        mov     si, s_token_tag
        mov     cx, 8
        repe    cmpsb
        push    ds
        pop     es
        je      .done                   ; CF clear: equal
        stc
.done:
        ret

; copy_str: copy the zero-terminated DS:SI to ES:DI (without the zero).
copy_str:
        lodsb
        test    al, al
        jz      .done
        stosb
        jmp     copy_str
.done:
        ret

; dec_str: EAX in decimal to ES:DI.
dec_str:
        push    ebx
        push    ecx
        push    edx
        mov     ebx, 10
        xor     cx, cx
.divide:
        xor     edx, edx
        div     ebx
        push    dx
        inc     cx
        test    eax, eax
        jnz     .divide
.emit:
        pop     ax
        add     al, '0'
        stosb
        loop    .emit
        pop     edx
        pop     ecx
        pop     ebx
        ret

; ---------------------------------------------------------------- data
sizes:          dw 1, 8, 64, 127, 0
ext_write_lba:  dd SCRATCH_LBA + 2200, SCRATCH_LBA + 2300, SCRATCH_LBA + 2400, SCRATCH_LBA + 2600

s_hello:        db "PROBE start drive ", 0
s_ok:           db "PROBE ok ", 0
s_fail:         db "PROBE FAIL ", 0
s_geometry:     db "PROBE geometry ", 0
s_tsc:          db "PROBE tsc-kcycles-per-tick ", 0
s_tput:         db "PROBE tput ", 0
s_status:       db "status", 0
s_write_status: db "write-status", 0
s_bad_lba:      db "data-mismatch-at-lba", 0
s_no_error:     db "no-error", 0
s_bytes_per_sector: db "bytes-per-sector", 0
s_sectors:      db "sectors", 0
s_chs_sectors:  db "chs-sectors", 0
s_unusable:     db "geometry-unusable-for-checks", 0
s_no_token:     db "PATCHKIT-FAIL probe: no token sector (PKTOKEN) at its LBA", 13, 10, 0
s_token_tag:    db "PKTOKEN "
s_done:         db "PROBE-DONE ", 0
s_failures:     db " failures=", 0
s_pass:         db "PATCHKIT-PASS ", 0
s_fail_verdict: db "PATCHKIT-FAIL probe: ", 0
s_failures_tail: db " failures", 13, 10, 0

n_ah41:         db "ah41-extensions", 0
n_ah08:         db "ah08-geometry", 0
n_ah48:         db "ah48-parameters", 0
n_size:         db "ah48-size", 0
n_geometry:     db "geometry-consistent", 0
n_ah15:         db "ah15-type", 0
n_chs_read_track: db "chs-read-track-boundary", 0
n_chs_read_cylinder: db "chs-read-cylinder-boundary", 0
n_chs_read_127: db "chs-read-127", 0
n_ext_read:     db "ext-read-64k-boundary", 0
n_ext_read_aligned: db "ext-read-aligned-127", 0
n_last_sector:  db "last-sector", 0
n_past_end:     db "read-past-end", 0
n_straddle_end: db "read-straddling-end", 0
n_chs_past_end: db "chs-read-past-end", 0
%ifdef READ_ONLY
n_chs_write_track: db "chs-write-protected-track-boundary", 0
n_chs_write_cylinder: db "chs-write-protected-cylinder-boundary", 0
n_ext_write:    db "ext-write-protected-64k-boundary", 0
s_write_accepted: db "write-accepted", 0
s_no_result_note: db "PROBE note read-only disk: no result sector written", 13, 10, 0
%else
n_chs_write_track: db "chs-write-track-boundary", 0
n_chs_write_cylinder: db "chs-write-cylinder-boundary", 0
n_ext_write:    db "ext-write-64k-boundary", 0
%endif
n_tput:         db "throughput", 0
n_result:       db "result-sector", 0
n_ticks:        db "bios-timer", 0
s_stopped:      db "tick-count-stopped", 0
n_if:           db "int13-returns-with-interrupts-enabled", 0
s_if_cleared:   db "calls-returning-with-if-clear", 0
%ifdef UNCHECKED_END
s_end_note:     db "PROBE note reads past the end not checked (UNCHECKED_END)", 13, 10, 0
%endif
%ifdef SHAPED
n_table_heads:  db "table-geometry-heads", 0
n_table_spt:    db "table-geometry-sectors", 0
n_table_cylinders: db "table-geometry-cylinders", 0
n_part_start:   db "chs-read-partition-start", 0
n_part_end:     db "chs-read-partition-end", 0
s_ah08_heads:   db "ah08-heads", 0
s_ah08_spt:     db "ah08-sectors", 0
s_ah08_cylinders: db "ah08-cylinders", 0
s_holds:        db "sector-holds-lba", 0
s_diag_note:    db "PROBE note AH=08 holds back one cylinder of the table's geometry", 13, 10, 0
s_chs_end_note: db "PROBE note chs-read-past-end not checked (CHS ends before the disk does)", 13, 10, 0
%endif
%ifdef RESET_DEVICE
RESET_TICKS     equ 18                  ; about a second
n_read_before_reset: db "read-before-reset", 0
n_virtio_reset: db "virtio-reset", 0
n_read_after_reset: db "read-after-reset-fails-quickly", 0
n_write_after_reset: db "write-after-reset-fails-quickly", 0
n_read_again_after_reset: db "read-again-after-reset-fails-quickly", 0
s_no_device:    db "no-1af4:1001-pci-bios-status", 0
s_bar0:         db "bar0-not-io", 0
s_slow_ticks:   db "took-ticks", 0
s_reset_note:   db "PROBE note reset the virtio-blk device at PCI bus/devfn ", 0
s_reset_io:     db " io-base ", 0
s_calling_note: db "PROBE note calling INT 13h for ", 0
%endif
%ifdef HOLD_READ
s_hold_ready:   db "PROBE hold-ready: throttle the disk, then press a key", 13, 10, 0
s_hold_returned: db "PROBE hold-returned: lift the throttle, then press a key", 13, 10, 0
s_hold_status:  db "PROBE note held read returned status ", 0
s_hold_ticks:   db " after BIOS ticks ", 0
n_hold_primer:  db "held-read-primer", 0
n_hold_fails:   db "held-read-fails", 0
n_hold_canary:  db "held-read-canary-intact", 0
n_hold_unchanged: db "held-read-buffer-unchanged-after-return", 0
n_hold_status:  db "held-read-status-timed-out", 0
n_after_timeout: db "read-after-timeout-not-ready", 0
s_held_read:    db "PROBE held-read-kcycles ", 0
s_changed_at:   db "changed-at-offset", 0
%endif
%ifdef COUNT_REQUESTS
s_count_before: db "PROBE count-before: count the disk's requests, then press a key", 13, 10, 0
s_count_after:  db "PROBE count-after: count the disk's requests, then press a key", 13, 10, 0
n_count_read:   db "ext-read-127-counted", 0
%endif
%ifdef HARNESS
n_hold_key:     db "hold-key-from-harness", 0
s_no_key:       db "no-key", 0
%endif
%ifdef BIG
n_across_2t:    db "ext-read-across-2t", 0
n_above_2t:     db "ext-read-above-2t", 0
%endif

        align   4
failures:       dd 0
name_n:         dd 0
pat_key:        dd 0
io_lba:         dd 0
cyl_sectors:    dd 0
kcycles_per_tick: dd 0
if_cleared:     dd 0
held_kcycles:   dd 0
io_count:       dw 0
io_seg:         dw 0
cyls:           dw 0
heads:          dw 0
spt:            dw 0
io_op:          db 0
if_reported:    db 0
held_status:    db 0
held_failed:    db 0
        align   4
dap:            times 16 db 0
edd:            times 0x42 db 0
%ifdef SHAPED
t_heads:        dw 0
t_spt:          dw 0
%endif
%ifdef BIG
        align   4
io_lba_hi:      dd 0
%endif

prog_end:
PROG_SECTORS    equ (prog_end - stage2 + 511) / 512
