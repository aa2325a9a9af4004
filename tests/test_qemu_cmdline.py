"""QEMU command lines: the rules that keep a ROM boot test from passing without the ROM."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchkit.errors import BootError
from patchkit.qemu.cmdline import (
    Drive,
    MachineSpec,
    Nic,
    check_spec,
    drive_id,
    qemu_argv,
    reference_spec,
    rom_boot_spec,
)

ROM = Path("/roms/1af41001.rom")
DISK = Path("/runs/x/freedos.img")


def devices(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == "-device"]


def option(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == name]


def test_rom_boot_only_the_rom_can_boot_the_disk() -> None:
    argv = qemu_argv(rom_boot_spec(ROM, (Drive(DISK),)), monitor_fd=3)
    assert option(argv, "-boot") == ["strict=on"]
    assert option(argv, "-option-rom") == [f"{ROM},bootindex=0"]
    virtio = [d for d in devices(argv) if d.startswith("virtio-blk-pci")]
    assert virtio == ["virtio-blk-pci,drive=disk0,addr=04.0"]
    assert "bootindex" not in virtio[0]
    assert option(argv, "-drive") == [f"file={DISK},format=raw,if=none,id=disk0"]


def test_console_logs_and_control_are_wired() -> None:
    argv = qemu_argv(rom_boot_spec(ROM, (Drive(DISK),)), monitor_fd=3)
    assert "pc,graphics=off" in option(argv, "-machine")
    assert option(argv, "-serial") == ["chardev:serial0"]
    assert "stdio,id=serial0,signal=off" in option(argv, "-chardev")
    assert "file,id=dbg,path=seabios.log" in option(argv, "-chardev")
    assert "isa-debugcon,iobase=0x402,chardev=dbg" in devices(argv)
    assert "socket,id=qmp,fd=3" in option(argv, "-chardev")  # the monitor: an inherited socket, no file
    assert option(argv, "-mon") == ["chardev=qmp,mode=control"]
    assert "-qmp" not in argv
    assert "-nodefaults" in argv  # no NIC with its own boot ROM, no default CD-ROM
    assert option(argv, "-accel") == ["tcg"]


def test_a_virtio_disk_with_a_bootindex_next_to_a_rom_is_refused() -> None:
    with pytest.raises(BootError, match="SeaBIOS would boot it natively"):
        rom_boot_spec(ROM, (Drive(DISK, bootindex=1),))
    with pytest.raises(BootError, match="SeaBIOS would boot it natively"):
        qemu_argv(MachineSpec(drives=(Drive(DISK, bootindex=2),), rom=ROM), monitor_fd=3)


def test_bootindex_zero_is_the_roms() -> None:
    with pytest.raises(BootError, match="bootindex 0 belongs to the ROM"):
        rom_boot_spec(ROM, (Drive(DISK, interface="ide", bootindex=0),))


def test_an_ide_disk_may_be_booted_after_the_rom() -> None:
    blank = Path("/runs/x/blank.img")
    argv = qemu_argv(rom_boot_spec(ROM, (Drive(blank), Drive(DISK, interface="ide", bootindex=1))), monitor_fd=3)
    assert "ide-hd,drive=disk1,bus=ide.0,unit=0,bootindex=1" in devices(argv)
    assert "virtio-blk-pci,drive=disk0,addr=04.0" in devices(argv)


def test_a_floppy_boots_by_its_controllers_bootindex() -> None:
    floppy = Drive(DISK, interface="floppy", bootindex=1)
    argv = qemu_argv(rom_boot_spec(ROM, (Drive(Path("/blank.img")), floppy)), monitor_fd=3)
    assert "floppy,drive=disk1,unit=0" in devices(argv)
    assert option(argv, "-global") == ["isa-fdc.bootindexA=1"]
    with pytest.raises(BootError, match="one floppy"):
        rom_boot_spec(ROM, (Drive(DISK, interface="floppy"), Drive(DISK, interface="floppy")))


def test_reference_run_lets_seabios_boot_the_disk() -> None:
    argv = qemu_argv(reference_spec(DISK, pci_addr="05.0"), monitor_fd=3)
    assert "-option-rom" not in argv
    assert devices(argv)[-1] == "virtio-blk-pci,drive=disk0,addr=05.0,bootindex=0"
    assert option(argv, "-boot") == ["strict=on"]


def test_two_virtio_disks_need_two_addresses() -> None:
    argv = qemu_argv(rom_boot_spec(ROM, (Drive(Path("/a.img")), Drive(DISK, pci_addr="05.0"))), monitor_fd=3)
    assert [d for d in devices(argv) if d.startswith("virtio")] == [
        "virtio-blk-pci,drive=disk0,addr=04.0", "virtio-blk-pci,drive=disk1,addr=05.0"]
    with pytest.raises(BootError, match="share a PCI address"):
        rom_boot_spec(ROM, (Drive(Path("/a.img")), Drive(DISK)))


def test_a_nic_runs_qemu_in_its_namespace_without_a_rom_of_its_own() -> None:
    floppy = Drive(Path("/probe.img"), interface="floppy", bootindex=1)
    argv = qemu_argv(check_spec(MachineSpec(drives=(floppy,), rom=ROM, nic=Nic("patchkit-1234", "aoe0"))), monitor_fd=3)
    assert argv[:5] == ["ip", "netns", "exec", "patchkit-1234", "qemu-system-x86_64"]
    assert option(argv, "-netdev") == ["tap,id=net0,ifname=aoe0,script=no,downscript=no"]
    assert "virtio-net-pci,netdev=net0,addr=03.0,romfile=" in devices(argv)  # not QEMU's own iPXE
    assert option(argv, "-option-rom") == [f"{ROM},bootindex=0"]
    with pytest.raises(BootError, match="share a PCI address"):
        check_spec(MachineSpec(drives=(Drive(DISK, pci_addr="03.0"),), rom=ROM, nic=Nic("n", "aoe0")))


def test_commas_in_paths_are_doubled() -> None:
    argv = qemu_argv(rom_boot_spec(Path("/r,1.rom"), (Drive(Path("/d,1.img")),)), monitor_fd=3)
    assert option(argv, "-option-rom") == ["/r,,1.rom,bootindex=0"]
    assert option(argv, "-drive") == ["file=/d,,1.img,format=raw,if=none,id=disk0"]


def test_bad_specs_are_refused() -> None:
    with pytest.raises(BootError, match="unknown accelerator"):
        qemu_argv(MachineSpec(drives=(Drive(DISK),), accel="hvf"), monitor_fd=3)
    with pytest.raises(BootError, match="at least one disk"):
        qemu_argv(MachineSpec(drives=(), rom=ROM), monitor_fd=3)


def test_building_the_command_line_touches_nothing(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    qemu_argv(rom_boot_spec(work / "missing.rom", (Drive(work / "missing.img"),)), monitor_fd=3)
    assert list(work.iterdir()) == []


# --- configurations: machine type, boot order, read-only, properties, busy disks ---------------


def test_q35_puts_the_virtio_disks_on_the_root_bus() -> None:
    spec = check_spec(MachineSpec(drives=(Drive(DISK, pci_addr="05.0"),), rom=ROM, machine="q35"))
    argv = qemu_argv(spec, monitor_fd=3)
    assert option(argv, "-machine") == ["q35,graphics=off"]
    # On pcie.0 itself (not behind a root port) virtio-blk-pci stays transitional: legacy BAR0, ID 1af4:1001.
    assert [d for d in devices(argv) if d.startswith("virtio")] == ["virtio-blk-pci,drive=disk0,bus=pcie.0,addr=05.0"]
    assert option(argv, "-boot") == ["strict=on"]


def test_q35_gets_a_floppy_controller_and_one_ide_disk_per_port() -> None:
    drives = (Drive(Path("/a.img"), interface="floppy", bootindex=1), Drive(Path("/b.img"), interface="ide"),
              Drive(Path("/c.img"), interface="ide"))
    argv = qemu_argv(check_spec(MachineSpec(drives=drives, rom=ROM, machine="q35")), monitor_fd=3)
    assert devices(argv)[1:] == ["isa-fdc", "floppy,drive=disk0,unit=0", "ide-hd,drive=disk1,bus=ide.0,unit=0",
                                 "ide-hd,drive=disk2,bus=ide.1,unit=0"]
    pc = qemu_argv(check_spec(MachineSpec(drives=drives, rom=ROM)), monitor_fd=3)
    assert "isa-fdc" not in devices(pc) and "ide-hd,drive=disk2,bus=ide.0,unit=1" in devices(pc)


def test_default_boot_order_drops_strict_but_keeps_the_rom_first() -> None:
    argv = qemu_argv(check_spec(MachineSpec(drives=(Drive(DISK),), rom=ROM, strict_boot=False)), monitor_fd=3)
    assert "-boot" not in argv
    assert option(argv, "-option-rom") == [f"{ROM},bootindex=0"]
    assert "bootindex" not in devices(argv)[-1]  # the guest disk still has none


def test_a_read_only_disk_with_properties() -> None:
    drive = Drive(DISK, readonly=True, properties=(("queue-size", "1024"), ("disable-legacy", "on")))
    argv = qemu_argv(rom_boot_spec(ROM, (drive,)), monitor_fd=3)
    assert option(argv, "-drive") == [f"file={DISK},format=raw,if=none,id=disk0,readonly=on"]
    assert devices(argv)[-1] == "virtio-blk-pci,drive=disk0,addr=04.0,queue-size=1024,disable-legacy=on"


def test_only_a_blank_disk_may_have_a_bootindex_next_to_the_rom() -> None:
    busy = Drive(Path("/runs/x/blank-04-0.img"), bootindex=1, blank=True)
    argv = qemu_argv(rom_boot_spec(ROM, (busy, Drive(DISK, pci_addr="05.0"))), monitor_fd=3)
    assert "virtio-blk-pci,drive=disk0,addr=04.0,bootindex=1" in devices(argv)
    with pytest.raises(BootError, match=r"freedos.img has a bootindex .* \(only a blank disk, which has no "
                                        r"boot sector, may carry one\)"):
        rom_boot_spec(ROM, (busy, Drive(DISK, pci_addr="05.0", bootindex=2)))
    with pytest.raises(BootError, match="bootindex 0 belongs to the ROM"):
        rom_boot_spec(ROM, (Drive(Path("/b.img"), bootindex=0, blank=True), Drive(DISK, pci_addr="05.0")))


@pytest.mark.parametrize(("machine", "addr"), [("pc", "02.0"), ("pc", "00.0"), ("q35", "01.0"), ("q35", "1f.0"),
                                               ("pc", "20.0")])
def test_slots_of_the_machines_own_devices_are_refused(machine: str, addr: str) -> None:
    with pytest.raises(BootError, match=rf"PCI slot {addr} of freedos.img is not free on -machine {machine}"):
        check_spec(MachineSpec(drives=(Drive(DISK, pci_addr=addr),), rom=ROM, machine=machine))


def test_configurations_cannot_set_what_keeps_the_test_honest() -> None:
    for name in ("bootindex", "romfile", "addr", "drive"):
        with pytest.raises(BootError, match=rf"property '{name}' is not one a configuration may set"):
            rom_boot_spec(ROM, (Drive(DISK, properties=((name, "1"),)),))
    with pytest.raises(BootError, match="queue-size takes a number"):
        rom_boot_spec(ROM, (Drive(DISK, properties=(("queue-size", "1k"),)),))
    with pytest.raises(BootError, match="properties need a virtio disk"):
        rom_boot_spec(ROM, (Drive(DISK, interface="ide", bootindex=1, properties=(("queue-size", "64"),)),))
    with pytest.raises(BootError, match="unknown machine type 'isapc'"):
        check_spec(MachineSpec(drives=(Drive(DISK),), rom=ROM, machine="isapc"))
    with pytest.raises(BootError, match=r"not slot\.function"):
        check_spec(MachineSpec(drives=(Drive(DISK, pci_addr="4"),), rom=ROM))


def test_a_faulty_disk_is_read_through_blkdebug() -> None:
    config = Path("/runs/x/blkdebug.conf")
    spec = rom_boot_spec(ROM, (Drive(Path("/runs/x/blank.img"), blank=True),
                               Drive(DISK, pci_addr="05.0", blkdebug=config, readonly=True)))
    argv = qemu_argv(spec, monitor_fd=3)
    assert option(argv, "-drive")[1] == (
        f"file.driver=blkdebug,file.config={config},file.image.driver=file,file.image.filename={DISK},"
        "format=raw,if=none,id=disk1,readonly=on")
    assert devices(argv)[-1] == "virtio-blk-pci,drive=disk1,addr=05.0"
    assert drive_id(spec, DISK) == "disk1"  # what the monitor's qemu-io names
    with pytest.raises(BootError, match=r"no disk other\.img"):
        drive_id(spec, Path("/other.img"))
