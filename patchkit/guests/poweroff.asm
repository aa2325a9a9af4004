; POWEROFF.COM: the FreeDOS guest's last command; switches QEMU off through ACPI.
        cpu     386
        org     0x100
        jmp     acpi_poweroff

%include "acpi-off.asm"
