"""A bootable syslinux hard disk: MBR, one FAT16 partition, ldlinux, a config, files.

Made from the pinned syslinux packages (their mbr.bin, their mtools installer,
their .c32 modules), with mkfs.fat and mtools: no mounting, no root.
"""

from __future__ import annotations

from pathlib import Path

from patchkit.guests import disk, fat
from patchkit.guests.debpkgs import extract
from patchkit.run import run

BIOS_MODULES = Path("usr/lib/syslinux/modules/bios")


def syslinux_root(debs: dict[str, Path], dest: Path) -> Path:
    """Unpack the syslinux and syslinux-common packages under ``dest``."""
    extract(debs["syslinux"], dest)
    extract(debs["syslinux-common"], dest)
    return dest


def make(
    image: Path,
    cylinders: int,
    label: str,
    root: Path,
    config: str,
    modules: tuple[str, ...],
    files: dict[str, Path | bytes],
) -> int:
    """Build the disk at ``image``; return the partition's byte offset.

    ``root`` is the unpacked syslinux packages, ``config`` the syslinux.cfg text,
    ``modules`` the .c32 files copied beside ldlinux, ``files`` name -> source.
    """
    total = disk.create(image, cylinders)
    start, count = disk.PARTITION_START, total - disk.PARTITION_START
    mbr = (root / "usr/lib/syslinux/mbr/mbr.bin").read_bytes()[:440]
    disk.write_mbr(image, mbr, disk.PART_FAT16, start, count)
    offset = start * disk.SECTOR
    run([
        "mkfs.fat", "-F", "16", "-n", label, "-h", str(start),
        "-g", f"{disk.HEADS}/{disk.SECTORS_PER_TRACK}", "-D", "0x80",
        f"--offset={start}", image, str(count * disk.SECTOR // 1024),
    ])
    run([root / "usr/bin/syslinux", "--install", "--offset", str(offset), image], env=fat.MTOOLS_ENV)
    fat.put_bytes(image, offset, config.encode(), "SYSLINUX.CFG")
    for module in modules:
        fat.put(image, offset, root / BIOS_MODULES / module, module.upper())
    for name, source in files.items():
        if isinstance(source, bytes):
            fat.put_bytes(image, offset, source, name)
        else:
            fat.put(image, offset, source, name)
    return offset
