"""Where a boot's disks sit (a Layout, from a configuration and a guest), and the machine it makes."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from patchkit.guests import Guest
from patchkit.qemu.cmdline import Drive, MachineSpec, Nic, check_spec, reference_spec
from patchkit.qemu.faults import Hold, InjectError
from patchkit.series.model import Config, qemu_value
from patchkit.store import atomic_write

BLANK_DISK_BYTES = 8 << 20
BLKDEBUG_CONFIG = "blkdebug.conf"
NOT_VIRTIO = ("ide", "floppy", "aoe")  # guest disk places other than a virtio-blk slot


@dataclass(frozen=True)
class Layout:
    """Where the guest disk sits: a virtio PCI slot.function on bus 0, "ide" / "floppy" (bootindex 1),
    or "aoe" (served by vblade as e0.0 to a virtio-net NIC, see patchkit.qemu.aoe).

    ``blank_addrs`` adds zero-filled (non-bootable) virtio disks at those addresses;
    ``bios_addrs`` more of them with a bootindex after the ROM, so SeaBIOS drives them itself.
    ``boot_floppy`` is an image for A: (bootindex 1, booted from a copy in the run directory).
    ``machine``, ``strict_boot``, ``readonly`` and ``properties`` (of the guest's virtio disk)
    are a configuration's (see patchkit.qemu.cmdline), as are ``inject_error`` and ``hold``,
    which put the guest disk behind QEMU's blkdebug driver (its config is the run's blkdebug.conf).
    """

    guest_addr: str = "04.0"
    blank_addrs: tuple[str, ...] = ()
    boot_floppy: Path | None = None
    bios_addrs: tuple[str, ...] = ()
    machine: str = "pc"
    strict_boot: bool = True
    readonly: bool = False
    properties: tuple[tuple[str, str], ...] = ()
    blank_properties: tuple[tuple[str, str], ...] = ()  # of the blank disks (not the BIOS's)
    inject_error: InjectError | None = None
    hold: Hold | None = None

    @classmethod
    def for_cell(cls, config: Config, guest: Guest) -> Layout:
        """The layout of ``guest`` on ``config``: the guest's own plan wins for a disk that is not virtio."""
        plan = guest.sanboot
        return cls(guest_addr=plan.disk if plan.disk in NOT_VIRTIO else config.disk_addr,
                   blank_addrs=config.blank_disks, boot_floppy=guest.boot_floppy(), bios_addrs=config.bios_disks,
                   machine=config.machine, strict_boot=config.boot == "strict", readonly=config.readonly,
                   properties=tuple((k, qemu_value(v)) for k, v in config.virtio_blk),
                   blank_properties=tuple((k, qemu_value(v)) for k, v in config.blank_virtio_blk),
                   inject_error=config.inject_error, hold=config.hold or guest.hold)


def machine_spec(run_dir: Path, disk: Path, rom: Path | None, accel: str, layout: Layout,
                  nic: Nic | None, disk_format: Literal["raw", "qcow2"] = "raw") -> MachineSpec:
    """The machine for one run: the guest disk (and blank disks) placed per ``layout``."""
    if rom is None and not (layout.blank_addrs or layout.boot_floppy) and layout.guest_addr not in NOT_VIRTIO:
        return reference_spec(disk, accel, pci_addr=layout.guest_addr, disk_format=disk_format)
    drives: list[Drive] = []
    if layout.boot_floppy is not None:
        floppy = run_dir / "boot-floppy.img"
        shutil.copyfile(layout.boot_floppy, floppy)
        drives.append(Drive(floppy, interface="floppy", bootindex=1))
    first_busy = 1 + len(drives)  # SeaBIOS's disks come after the ROM (0) and A:
    for n, addr in enumerate((*layout.blank_addrs, *layout.bios_addrs)):
        blank = run_dir / f"blank-{addr.replace('.', '-')}.img"
        with open(blank, "wb") as f:
            f.truncate(BLANK_DISK_BYTES)
        busy = n >= len(layout.blank_addrs)
        drives.append(Drive(blank, pci_addr=addr, blank=True,
                            bootindex=first_busy + n - len(layout.blank_addrs) if busy else None,
                            properties=() if busy else layout.blank_properties))
    if layout.guest_addr in ("ide", "floppy"):
        drives.append(Drive(disk, interface="ide" if layout.guest_addr == "ide" else "floppy", bootindex=1,
                            readonly=layout.readonly, format=disk_format))
    elif layout.guest_addr != "aoe":  # an AoE disk is served by the run's target, not attached
        drives.append(Drive(disk, pci_addr=layout.guest_addr, bootindex=None if rom else 0, readonly=layout.readonly,
                            properties=layout.properties, format=disk_format,
                            blkdebug=_blkdebug_config(run_dir, layout)))
    return check_spec(MachineSpec(drives=tuple(drives), rom=rom, accel=accel, nic=nic, machine=layout.machine,
                                  strict_boot=layout.strict_boot))


def _blkdebug_config(run_dir: Path, layout: Layout) -> Path | None:
    """The run's blkdebug.conf for a layout that injects errors or holds a request (else None)."""
    if layout.inject_error is None and (layout.hold is None or layout.hold.via != "blkdebug"):
        return None
    text = ""
    if (fault := layout.inject_error) is not None:
        text = f'[inject-error]\nevent = "{fault.event}"\nerrno = "{fault.errno}"\n'
        text += f'sector = "{fault.sector}"\n' if fault.sector is not None else ""
        text += f'once = "{"on" if fault.once else "off"}"\n'
    path = run_dir / BLKDEBUG_CONFIG
    atomic_write(path, text)
    return path
