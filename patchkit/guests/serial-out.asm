; Serial output shared by patchkit's real-mode programs (the includer defines COM1):
; putc: AL to COM1, polling the transmit-holding-register-empty bit; puts: the zero-terminated
; string at DS:SI; put_hex: EAX as 0x%08x. Registers are preserved.
putc:
        push    dx
        push    ax
        mov     dx, COM1 + 5
.wait:
        in      al, dx
        test    al, 0x20
        jz      .wait
        pop     ax
        mov     dx, COM1
        out     dx, al
        pop     dx
        ret

puts:
        push    ax
.next:
        lodsb
        test    al, al
        jz      .done
        call    putc
        jmp     .next
.done:
        pop     ax
        ret

put_hex:
        pushad
        mov     ebx, eax
        mov     al, '0'
        call    putc
        mov     al, 'x'
        call    putc
        mov     cx, 8
.digit:
        rol     ebx, 4
        mov     al, bl
        and     al, 0x0F
        add     al, '0'
        cmp     al, '9'
        jbe     .out
        add     al, 'a' - '9' - 1
.out:
        call    putc
        loop    .digit
        popad
        ret
