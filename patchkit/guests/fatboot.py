"""FAT boot sectors: which FAT a BIOS parameter block describes, and moving boot code onto another BPB.

A DOS boot sector is a jump, the BPB (the file system's shape and the disk's
geometry) and boot code that reads the BPB. Installing DOS's boot code on a new
file system keeps that file system's BPB and takes the jump and the code from the
original, which is what `SYS` does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from patchkit.errors import GuestError

SECTOR = 512
# Where the boot code starts (the end of the BPB) for FAT12/16 and for FAT32.
CODE_START = {12: 0x3E, 16: 0x3E, 32: 0x5A}
DRIVE_FIELD = {12: 0x24, 16: 0x24, 32: 0x40}  # BIOS drive number in the BPB


@dataclass(frozen=True)
class Bpb:
    """The fields of a BIOS parameter block that decide the FAT type and the disk address."""

    bytes_per_sector: int
    sectors_per_cluster: int
    reserved: int
    fats: int
    root_entries: int
    total_sectors: int
    fat_sectors: int
    sectors_per_track: int
    heads: int
    hidden: int

    @property
    def clusters(self) -> int:
        """Data clusters, from which DOS decides the FAT type."""
        root = (self.root_entries * 32 + self.bytes_per_sector - 1) // self.bytes_per_sector
        data = self.total_sectors - self.reserved - self.fats * self.fat_sectors - root
        return data // self.sectors_per_cluster

    @property
    def fat_type(self) -> int:
        """12, 16 or 32 (Microsoft's rule: by the cluster count alone)."""
        if self.clusters < 4085:
            return 12
        return 16 if self.clusters < 65525 else 32


def parse_bpb(sector: bytes) -> Bpb:
    """The BPB of a boot sector; GuestError when it is not a FAT boot sector."""
    if len(sector) != SECTOR or sector[510:] != b"\x55\xaa":
        raise GuestError("not a boot sector (no 55AA signature at its end)")
    bps, spc, reserved, fats, root, total16, _media, fat16 = struct.unpack_from("<HBHBHHBH", sector, 0x0B)
    spt, heads, hidden, total32 = struct.unpack_from("<HHII", sector, 0x18)
    fat32 = struct.unpack_from("<I", sector, 0x24)[0]
    bpb = Bpb(bps, spc, reserved, fats, root, total16 or total32, fat16 or fat32, spt, heads, hidden)
    if bps != SECTOR or spc == 0 or spc & (spc - 1) or not reserved or not fats or not bpb.fat_sectors:
        raise GuestError(f"not a FAT boot sector with 512-byte sectors (bytes/sector {bps}, sectors/cluster {spc}, "
                         f"reserved {reserved}, FATs {fats}, FAT size {bpb.fat_sectors})")
    if bpb.clusters <= 0:
        raise GuestError("not a FAT boot sector: its BPB leaves no data clusters")
    return bpb


def transplant(code_from: bytes, bpb_from: bytes, drive: int) -> bytes:
    """``bpb_from`` (a fresh file system's boot sector) carrying ``code_from``'s jump and boot code.

    Both must be of the same FAT type; the drive number field is set to ``drive``.
    """
    fat = parse_bpb(code_from).fat_type
    target = parse_bpb(bpb_from).fat_type
    if fat != target:
        raise GuestError(f"the boot code is for FAT{fat}, the file system is FAT{target}")
    start = CODE_START[fat]
    if code_from[0] == 0xEB:
        lands = 2 + code_from[1]
    elif code_from[0] == 0xE9:
        lands = 3 + struct.unpack_from("<h", code_from, 1)[0]
    else:
        raise GuestError(f"the boot sector does not start with a jump (byte 0x{code_from[0]:02x})")
    if lands < start:
        raise GuestError(f"the boot sector's jump lands at 0x{lands:x}, inside the FAT{fat} BPB (ends at 0x{start:x})")
    sector = bytearray(bpb_from)
    sector[0:3] = code_from[0:3]
    sector[start:] = code_from[start:]
    sector[DRIVE_FIELD[fat]] = drive
    return bytes(sector)
