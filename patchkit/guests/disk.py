"""Raw disk images with an MBR partition table whose CHS values match the BIOS geometry.

Every guest disk uses 16 heads x 63 sectors and a whole number of cylinders. QEMU
guesses a virtio-blk disk's geometry from the partition table's end CHS, SeaBIOS
reports that geometry through INT 13h AH=08, and gPXE guesses its own from the last
partition's end: with the table written here all three agree, and FreeDOS sees no
"suspect partition". The probe's shaped disks write their tables for other geometries
(``heads`` and ``sectors_per_track`` arguments), as fdisk and DOS do for large disks.
"""

from __future__ import annotations

import struct
from pathlib import Path

SECTOR = 512
HEADS = 16
SECTORS_PER_TRACK = 63
CYLINDER_SECTORS = HEADS * SECTORS_PER_TRACK
PARTITION_START = SECTORS_PER_TRACK  # LBA 63: cylinder 0, head 1, sector 1

PART_FAT16 = 0x06
PART_DATA = 0xDA  # "non-FS data": the probe's stamped sectors


def chs(lba: int, heads: int = HEADS, sectors_per_track: int = SECTORS_PER_TRACK) -> bytes:
    """The 3-byte CHS encoding of ``lba`` (cylinders above 1023 saturate, as fdisk writes them)."""
    cylinder, rest = divmod(lba, heads * sectors_per_track)
    head, sector = divmod(rest, sectors_per_track)
    if cylinder > 1023:
        cylinder, head, sector = 1023, heads - 1, sectors_per_track - 1
    return bytes([head, ((cylinder >> 2) & 0xC0) | (sector + 1), cylinder & 0xFF])


def create(image: Path, cylinders: int) -> int:
    """Create a zero-filled image of ``cylinders`` whole cylinders; return its size in sectors."""
    sectors = cylinders * CYLINDER_SECTORS
    with open(image, "wb") as f:
        f.truncate(sectors * SECTOR)
    return sectors


def write_mbr(image: Path, boot_code: bytes, part_type: int, start: int, count: int, heads: int = HEADS,
              sectors_per_track: int = SECTORS_PER_TRACK) -> None:
    """Write boot code, one active primary partition (start, count in sectors) and the signature.

    The entry's CHS fields are written for ``heads`` x ``sectors_per_track``.
    """
    if len(boot_code) > 440:
        raise ValueError(f"MBR boot code is {len(boot_code)} bytes, at most 440 fit")
    geometry = (heads, sectors_per_track)
    entry = bytes([0x80]) + chs(start, *geometry) + bytes([part_type]) + chs(start + count - 1, *geometry)
    entry += struct.pack("<II", start, count)
    with open(image, "r+b") as f:
        f.seek(0)
        f.write(boot_code)
        f.seek(446)
        f.write(entry + bytes(48) + b"\x55\xaa")
