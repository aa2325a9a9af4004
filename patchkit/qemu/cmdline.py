"""QEMU command lines for boot tests, built without side effects.

The rules that keep a ROM test honest live here (see qemu-guests.md): with a ROM
under test, SeaBIOS must not be able to boot a virtio disk by itself, so the boot
is `-boot strict=on`, the ROM is `-option-rom ROM,bootindex=0`, and no virtio-blk
device has a bootindex. A reference run (no ROM) lets SeaBIOS boot its disk natively.

Configurations vary this within those rules: a blank disk (zero-filled, no boot sector)
may carry a bootindex after the ROM so that SeaBIOS drives it (a "busy" device), and
``strict_boot=False`` is QEMU's default order, where SeaBIOS brings up every virtio disk
and boots them after the ROM; the boot harness then fails a run that SeaBIOS booted
("Booting from Hard Disk"). On q35 the devices sit on the root bus pcie.0, where
virtio-blk-pci stays transitional (legacy I/O BAR0, ID 1af4:1001).

Paths of run-dir files (the SeaBIOS log) are relative: QEMU is started in the run
directory. The QMP monitor is no file: QEMU inherits one end of a socket pair as
descriptor ``monitor_fd`` (patchkit.qemu.machine holds the other end), so it is
connected from the start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from patchkit.coverage.trace import trace_args
from patchkit.errors import BootError

SEABIOS_LOG = "seabios.log"
ACCELS = ("kvm", "tcg")
MACHINES = ("pc", "q35")
# Bus 0 slots the machine's own devices take (-nodefaults, -vga std): host bridge, chipset, VGA.
RESERVED_SLOTS = {"pc": (0x00, 0x01, 0x02), "q35": (0x00, 0x01, 0x1F)}
PCI_ADDR = re.compile(r"[0-9a-f]{2}\.[0-7]")

# virtio-blk-pci properties a configuration may set, and their kinds: int, bool (on/off),
# onoffauto (on/off/auto) or str. Everything else (bootindex, romfile, addr, drive, ...)
# is decided here, by the rules above.
VIRTIO_BLK_PROPERTIES = {
    "queue-size": "int", "num-queues": "int", "seg-max-adjust": "bool",
    "logical_block_size": "int", "physical_block_size": "int", "min_io_size": "int", "opt_io_size": "int",
    "cyls": "int", "heads": "int", "secs": "int", "lcyls": "int", "lheads": "int", "lsecs": "int",
    "discard": "bool", "write-zeroes": "bool", "config-wce": "bool", "event_idx": "bool",
    "indirect_desc": "bool", "packed": "bool", "request-merging": "bool",
    "disable-legacy": "onoffauto", "disable-modern": "bool", "write-cache": "onoffauto", "serial": "str",
}
_WORDS = {"bool": ("on", "off"), "onoffauto": ("on", "off", "auto")}
# The int properties' ranges as QEMU 7.2 accepts them (low, high, power of two), so a value it refuses is
# refused when the manifest is read, not as a NOT RUN cell.
INT_RANGES = {
    "queue-size": (4, 1024, True), "num-queues": (1, 1024, False),
    "logical_block_size": (512, 2 << 20, True), "physical_block_size": (512, 2 << 20, True),
    "min_io_size": (0, 1 << 25, False), "opt_io_size": (0, 1 << 30, False),
    "cyls": (1, 65535, False), "heads": (1, 255, False), "secs": (1, 255, False),
    "lcyls": (1, 65535, False), "lheads": (1, 255, False), "lsecs": (1, 63, False),
}


@dataclass(frozen=True)
class Drive:
    """A raw disk image: a virtio-blk PCI device (at ``pci_addr`` on bus 0), an IDE disk or floppy A:."""

    path: Path
    interface: Literal["virtio", "ide", "floppy"] = "virtio"
    pci_addr: str = "04.0"  # slot.function; virtio only
    bootindex: int | None = None
    blank: bool = False  # zero-filled by patchkit: no boot sector, so a bootindex cannot boot anything
    readonly: bool = False
    properties: tuple[tuple[str, str], ...] = ()  # virtio-blk-pci properties (VIRTIO_BLK_PROPERTIES)
    format: Literal["raw", "qcow2"] = "raw"  # qcow2: a run's overlay on a user's image (patchkit test --image)
    blkdebug: Path | None = None  # a blkdebug config file: the image is read through QEMU's blkdebug driver


def drive_id(spec: MachineSpec, path: Path) -> str:
    """The -drive id of the disk ``path`` in ``spec`` (for the monitor's qemu-io, e.g. blkdebug breakpoints)."""
    for n, drive in enumerate(spec.drives):
        if drive.path == path:
            return f"disk{n}"
    raise BootError(f"no disk {path.name} in the machine")


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
    machine: str = "pc"
    strict_boot: bool = True  # False: QEMU's default boot order (SeaBIOS drives every virtio disk)
    memory_mib: int = 128
    qemu: str = "qemu-system-x86_64"
    trace: bool = False  # log the guest code QEMU translates (patchkit.coverage.trace), for coverage


def rom_boot_spec(rom: Path, drives: tuple[Drive, ...], accel: str = "tcg") -> MachineSpec:
    """A machine whose virtio disks can only be booted through ``rom``."""
    return check_spec(MachineSpec(drives=drives, rom=rom, accel=accel))


def reference_spec(disk: Path, accel: str = "tcg", pci_addr: str = "04.0",
                   disk_format: Literal["raw", "qcow2"] = "raw") -> MachineSpec:
    """A machine where SeaBIOS boots ``disk`` natively (the reference path, no ROM)."""
    drive = Drive(disk, pci_addr=pci_addr, bootindex=0, format=disk_format)
    return check_spec(MachineSpec(drives=(drive,), accel=accel))


def check_spec(spec: MachineSpec) -> MachineSpec:
    """Reject specs that would make a ROM test pass without the ROM; return ``spec``."""
    if spec.accel not in ACCELS:
        raise BootError(f"unknown accelerator {spec.accel!r}: use one of {', '.join(ACCELS)}")
    if spec.machine not in MACHINES:
        raise BootError(f"unknown machine type {spec.machine!r}: use one of {', '.join(MACHINES)}")
    if not spec.drives:
        raise BootError("a boot test needs at least one disk")
    if spec.rom is not None:
        native = [d for d in spec.drives if d.interface == "virtio" and d.bootindex is not None and not d.blank]
        if native:
            raise BootError(
                f"virtio disk {native[0].path.name} has a bootindex while a ROM is under test: "
                "SeaBIOS would boot it natively and the test could pass without the ROM "
                "(only a blank disk, which has no boot sector, may carry one)"
            )
        if any(d.bootindex == 0 for d in spec.drives):
            raise BootError("bootindex 0 belongs to the ROM under test")
    for drive in spec.drives:
        _check_drive(spec.machine, drive)
    if sum(d.interface == "floppy" for d in spec.drives) > 1:
        raise BootError("only one floppy drive (A:) is supported")
    addrs = [d.pci_addr for d in spec.drives if d.interface == "virtio"] + ([spec.nic.pci_addr] if spec.nic else [])
    if len(addrs) != len(set(addrs)):
        raise BootError(f"two virtio devices share a PCI address: {addrs}")
    return spec


def slot_problem(machine: str, addr: str, of: str = "") -> str | None:
    """Why PCI address ``addr`` (slot.function on bus 0) cannot hold a disk (``of``: its name) on ``machine``."""
    slot = int(addr[:2], 16)
    if slot in RESERVED_SLOTS[machine] or slot > 0x1F:
        taken = ", ".join(f"{slot:02x}" for slot in RESERVED_SLOTS[machine])
        where = f"PCI slot {addr}" + (f" of {of}" if of else "")
        return f"{where} is not free on -machine {machine} (slots 00-1f; {taken} hold its own devices)"
    return None


def _check_drive(machine: str, drive: Drive) -> None:
    """A virtio drive's address and properties; other interfaces take neither."""
    if drive.interface != "virtio":
        if drive.properties:
            raise BootError(f"{drive.interface} disk {drive.path.name}: virtio-blk-pci properties need a virtio disk")
        return
    if not PCI_ADDR.fullmatch(drive.pci_addr):
        raise BootError(f"PCI address {drive.pci_addr!r} of {drive.path.name} is not slot.function (e.g. 04.0)")
    if problem := slot_problem(machine, drive.pci_addr, drive.path.name):
        raise BootError(problem)
    for name, value in drive.properties:
        if problem := property_problem(name, value):
            raise BootError(f"virtio disk {drive.path.name}: {problem}")


def property_problem(name: str, value: str) -> str | None:
    """Why virtio-blk-pci property ``name=value`` is refused (None when it is allowed)."""
    kind = VIRTIO_BLK_PROPERTIES.get(name)
    if kind is None:
        return (f"virtio-blk-pci property {name!r} is not one a configuration may set "
                f"(allowed: {', '.join(sorted(VIRTIO_BLK_PROPERTIES))}; bootindex, addr and romfile are decided "
                "by patchkit so that only the ROM under test can boot the guest disk)")
    if kind == "int":
        if not (value.isascii() and value.isdigit()):
            return f"virtio-blk-pci property {name} takes a number, got {value!r}"
        low, high, power_of_two = INT_RANGES[name]
        number = int(value)
        if not low <= number <= high or (power_of_two and number & (number - 1)):
            kind_of = "a power of two " if power_of_two else ""
            return f"virtio-blk-pci property {name} takes {kind_of}from {low} to {high} (QEMU's limits), got {value}"
    if kind in _WORDS and value not in _WORDS[kind]:
        return f"virtio-blk-pci property {name} takes {'/'.join(_WORDS[kind])}, got {value!r}"
    if kind == "str" and ("," in value or not value.isprintable()):
        return f"virtio-blk-pci property {name}: {value!r} may not hold commas or control characters"
    return None


def qemu_argv(spec: MachineSpec, *, monitor_fd: int | None) -> list[str]:
    """The full argv for ``spec`` (checked with check_spec first), its QMP monitor on the inherited
    connected socket ``monitor_fd``; None: the form run by hand (reproduce.sh), the human monitor
    multiplexed with the serial on the terminal (Ctrl-A c switches, Ctrl-A x quits)."""
    check_spec(spec)
    if monitor_fd is None:
        console = ["-chardev", "stdio,id=serial0,mux=on,signal=off", "-serial", "chardev:serial0",
                   "-mon", "chardev=serial0,mode=readline"]
    else:
        console = ["-chardev", "stdio,id=serial0,signal=off", "-serial", "chardev:serial0",
                   "-chardev", f"socket,id=qmp,fd={monitor_fd}", "-mon", "chardev=qmp,mode=control"]
    argv = [
        spec.qemu,
        "-nodefaults",
        "-machine", f"{spec.machine},graphics=off",
        "-accel", spec.accel,
        "-m", str(spec.memory_mib),
        "-vga", "std",
        "-display", "none",
        # Serial (SeaBIOS mirrors the text screen here) on QEMU's stdout.
        *console,
        "-chardev", f"file,id=dbg,path={SEABIOS_LOG}",
        "-device", "isa-debugcon,iobase=0x402,chardev=dbg",
        *(["-boot", "strict=on"] if spec.strict_boot else []),
        # Guest reboots and power-off stop the VM (status "shutdown") so the screen can still be taken.
        "-no-reboot",
        "-no-shutdown",
    ]
    ide_unit = 0
    for n, drive in enumerate(spec.drives):
        if drive.blkdebug is not None and drive.format == "qcow2":
            # raw on blkdebug on the qcow2: raw's requests (and blkdebug's events) are at the guest's offsets
            image = (f"file.driver=blkdebug,file.config={_escape(drive.blkdebug)},file.image.driver=qcow2,"
                     f"file.image.file.driver=file,file.image.file.filename={_escape(drive.path)},format=raw")
        elif drive.blkdebug is not None:
            image = (f"file.driver=blkdebug,file.config={_escape(drive.blkdebug)},file.image.driver=file,"
                     f"file.image.filename={_escape(drive.path)},format={drive.format}")
        else:
            image = f"file={_escape(drive.path)},format={drive.format}"
        argv += ["-drive", f"{image},if=none,id=disk{n}"
                 + (",readonly=on" if drive.readonly else "")]
        if drive.interface == "floppy":
            if spec.machine == "q35":  # q35 has no floppy controller of its own
                argv += ["-device", "isa-fdc"]
            argv += ["-device", f"floppy,drive=disk{n},unit=0"]
            if drive.bootindex is not None:  # the floppy controller carries its drives' boot indexes
                argv += ["-global", f"isa-fdc.bootindexA={drive.bootindex}"]
            continue
        if drive.interface == "virtio":
            bus = ",bus=pcie.0" if spec.machine == "q35" else ""
            device = f"virtio-blk-pci,drive=disk{n}{bus},addr={drive.pci_addr}"
            device += "".join(f",{name}={value}" for name, value in drive.properties)
        elif spec.machine == "q35":  # ICH9 AHCI: one disk per port
            device = f"ide-hd,drive=disk{n},bus=ide.{ide_unit},unit=0"
            ide_unit += 1
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
    if spec.trace:
        argv += trace_args(spec.memory_mib)
    return argv


def _escape(path: Path) -> str:
    """QEMU option values double their commas."""
    return str(path).replace(",", ",,")
