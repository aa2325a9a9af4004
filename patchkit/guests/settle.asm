; SETTLE.COM: wait until the BIOS tick count has advanced twice (~110 ms).
; SeaBIOS mirrors the text screen to the serial port from its timer interrupt, so
; screen output (the shell's banner) can reach COM1 after a marker written straight
; to COM1 and split it. Waiting two ticks lets that mirror catch up first. Used
; before the failure marker only, which follows the banner at once; the success
; path's file work already gives the mirror that time, and a wait there would add
; to the boot time the benchmark compares.
        cpu     386
        org     0x100
        sti
        push    word 0x0040
        pop     es
        mov     cx, 2
tick:   mov     ax, [es:0x006c]
same:   hlt                             ; sleep until the next interrupt
        cmp     ax, [es:0x006c]
        je      same
        loop    tick
        mov     ax, 0x4c00              ; exit to DOS
        int     0x21
