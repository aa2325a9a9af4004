"""QEMU command lines for boot tests, built without side effects.

The rules that keep a ROM test honest live here (see qemu-guests.md): with a ROM
under test, SeaBIOS must not be able to boot a virtio disk by itself, so the boot
is `-boot strict=on`, the ROM is `-option-rom ROM,bootindex=0`, and no virtio-blk
device has a bootindex. A reference run (no ROM) lets SeaBIOS boot its disk natively.

Paths of run-dir files (QMP socket, SeaBIOS log) are relative: QEMU is started
in the run directory, which keeps the UNIX socket path short.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from patchkit.errors import BootError

QMP_SOCKET = "qmp.sock"
SEABIOS_LOG = "seabios.log"
ACCELS = ("kvm", "tcg")


@dataclass(frozen=True)
class Drive:
    """A raw disk image: a virtio-blk PCI device (at ``pci_addr`` on bus 0), an IDE disk or floppy A:."""

    path: Path
    interface: Literal["virtio", "ide", "floppy"] = "virtio"
    pci_addr: str = "04.0"  # slot.function; virtio only
    bootindex: int | None = None


@dataclass(frozen=True)
class Nic:
    """A virtio-net NIC on tap device ``tap`` of network namespace ``netns`` (QEMU runs inside it).

    The NIC has no option ROM of its own (QEMU's iPXE would run too): gPXE comes from the ROM under test.
    """

    netns: str
    tap: str
    pci_addr: str = "03.0"


@dataclass(frozen=True)
class MachineSpec:
    """Everything that decides a boot test's QEMU command line."""

    drives: tuple[Drive, ...]
    rom: Path | None = None  # the option ROM under test; None = reference run
    nic: Nic | None = None
    accel: str = "tcg"
    memory_mib: int = 128
    qemu: str = "qemu-system-x86_64"


def rom_boot_spec(rom: Path, drives: tuple[Drive, ...], accel: str = "tcg") -> MachineSpec:
    """A machine whose virtio disks can only be booted through ``rom``."""
    return check_spec(MachineSpec(drives=drives, rom=rom, accel=accel))


def reference_spec(disk: Path, accel: str = "tcg", pci_addr: str = "04.0") -> MachineSpec:
    """A machine where SeaBIOS boots ``disk`` natively (the reference path, no ROM)."""
    return check_spec(MachineSpec(drives=(Drive(disk, pci_addr=pci_addr, bootindex=0),), accel=accel))


def check_spec(spec: MachineSpec) -> MachineSpec:
    """Reject specs that would make a ROM test pass without the ROM; return ``spec``."""
    if spec.accel not in ACCELS:
        raise BootError(f"unknown accelerator {spec.accel!r}: use one of {', '.join(ACCELS)}")
    if not spec.drives:
        raise BootError("a boot test needs at least one disk")
    if spec.rom is not None:
        native = [d for d in spec.drives if d.interface == "virtio" and d.bootindex is not None]
        if native:
            raise BootError(
                f"virtio disk {native[0].path.name} has a bootindex while a ROM is under test: "
                "SeaBIOS would boot it natively and the test could pass without the ROM"
            )
        if any(d.bootindex == 0 for d in spec.drives):
            raise BootError("bootindex 0 belongs to the ROM under test")
    if sum(d.interface == "floppy" for d in spec.drives) > 1:
        raise BootError("only one floppy drive (A:) is supported")
    addrs = [d.pci_addr for d in spec.drives if d.interface == "virtio"] + ([spec.nic.pci_addr] if spec.nic else [])
    if len(addrs) != len(set(addrs)):
        raise BootError(f"two virtio devices share a PCI address: {addrs}")
    return spec


def qemu_argv(spec: MachineSpec) -> list[str]:
    """The full argv for ``spec`` (checked with check_spec first)."""
    check_spec(spec)
    argv = [
        spec.qemu,
        "-nodefaults",
        "-machine", "pc,graphics=off",
        "-accel", spec.accel,
        "-m", str(spec.memory_mib),
        "-vga", "std",
        "-display", "none",
        # Serial (SeaBIOS mirrors the text screen here) on QEMU's stdout.
        "-chardev", "stdio,id=serial0,signal=off",
        "-serial", "chardev:serial0",
        "-chardev", f"file,id=dbg,path={SEABIOS_LOG}",
        "-device", "isa-debugcon,iobase=0x402,chardev=dbg",
        "-qmp", f"unix:{QMP_SOCKET},server=on,wait=off",
        "-boot", "strict=on",
        # Guest reboots and power-off stop the VM (status "shutdown") so the screen can still be taken.
        "-no-reboot",
        "-no-shutdown",
    ]
    ide_unit = 0
    for n, drive in enumerate(spec.drives):
        argv += ["-drive", f"file={_escape(drive.path)},format=raw,if=none,id=disk{n}"]
        if drive.interface == "floppy":
            argv += ["-device", f"floppy,drive=disk{n},unit=0"]
            if drive.bootindex is not None:  # the floppy controller carries its drives' boot indexes
                argv += ["-global", f"isa-fdc.bootindexA={drive.bootindex}"]
            continue
        if drive.interface == "virtio":
            device = f"virtio-blk-pci,drive=disk{n},addr={drive.pci_addr}"
        else:
            device = f"ide-hd,drive=disk{n},bus=ide.{ide_unit // 2},unit={ide_unit % 2}"
            ide_unit += 1
        if drive.bootindex is not None:
            device += f",bootindex={drive.bootindex}"
        argv += ["-device", device]
    if spec.nic is not None:
        argv = ["ip", "netns", "exec", spec.nic.netns, *argv,
                "-netdev", f"tap,id=net0,ifname={spec.nic.tap},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=net0,addr={spec.nic.pci_addr},romfile="]
    if spec.rom is not None:
        argv += ["-option-rom", f"{_escape(spec.rom)},bootindex=0"]
    return argv


def _escape(path: Path) -> str:
    """QEMU option values double their commas."""
    return str(path).replace(",", ",,")
