"""Which of a series' changed lines the test matrix ran: QEMU's translation log mapped through the ROM's ELF."""
