"""The freedos-installed guest: FreeDOS booting the way an installation on a hard disk does.

No syslinux: the BIOS (here gPXE's INT 13h) runs our CHS-only MBR (chs-mbr.asm), which
reads the active partition's first sector at the cylinder/head/sector the partition
table gives; that is FreeDOS's own FAT boot sector, taken from the imported media and
put on a fresh file system with its BPB (hidden sectors, 255 heads x 63 sectors, drive
0x80), and it loads KERNEL.SYS, which runs CONFIG.SYS, COMMAND.COM and the same
AUTOEXEC.BAT as the freedos guest.

The geometry is a deliberate choice. The disk is a 4 GiB sparse file, just past the
size (129 x 1024 x 63 sectors) from which SeaBIOS's LBA-assisted translation reports
255 heads, and its partition table is in 255 x 63 CHS, as DOS FDISK writes it there. The DOS
partition starts on cylinder 1 (LBA 16065; cylinder 0 holds a small non-DOS partition,
as OEM installations had), so the MBR's CHS read finds the boot sector only when INT
13h uses the partition table's geometry. QEMU's virtio-blk reports 16 heads: a ROM
that hands that to INT 13h reads LBA 1008 instead, and the MBR says "Missing operating
system".

The file system's FAT type follows the boot sector: FreeDOS's FAT boot code is built
for one FAT type, so a boot floppy's boot sector gives a FAT12 partition, a FAT16
installation image's a FAT16 one.
"""

from __future__ import annotations

import hashlib
import struct
import tempfile
from pathlib import Path
from typing import ClassVar

from patchkit.errors import GuestError, MissingInputError
from patchkit.guests import asm, fat, fatboot
from patchkit.guests.freedos import (
    AUTOEXEC_BAT,
    BOOT_SECTOR,
    CONFIG_SYS,
    DOS_FILES,
    IMPORT_COMMAND,
    FreedosGuest,
    dos_files,
    inputs_dir,
)
from patchkit.progress import Progress
from patchkit.run import run
from patchkit.store import Store

RECIPE_VERSION = "1"
SECTOR = 512
HEADS = 255
SECTORS_PER_TRACK = 63
CYLINDER = HEADS * SECTORS_PER_TRACK  # 16065 sectors, 7.8 MiB
DISK_CYLINDERS = 520  # 4.0 GiB: from 129 x 1024 x 63 sectors SeaBIOS translates to 255 heads, the table's
UTILITY_TYPE = 0xDA  # non-FS data: the small partition on cylinder 0 that DOS ignores
DOS_START = CYLINDER  # cylinder 1, head 0, sector 1
# Per FAT type: partition type, size in cylinders, sectors per cluster (a cluster count well inside the type).
FAT_LAYOUT = {12: (0x01, 2, 8), 16: (0x06, 2, 2)}
MBR_SOURCE = "chs-mbr.asm"
MBR_FAILURE = "MBR: "  # chs-mbr.asm's messages all start so
# FreeDOS's kernel says so when INT 13h's geometry (AH=08) disagrees with the partition table's CHS.
SUSPECT_PARTITION = "suspect partition"


def chs(lba: int) -> bytes:
    """The partition-table CHS bytes of ``lba`` in 255 x 63 geometry (saturated past cylinder 1023)."""
    cylinder, rest = divmod(lba, CYLINDER)
    head, sector = divmod(rest, SECTORS_PER_TRACK)
    if cylinder > 1023:
        cylinder, head, sector = 1023, HEADS - 1, SECTORS_PER_TRACK - 1
    return bytes([head, ((cylinder >> 2) & 0xC0) | (sector + 1), cylinder & 0xFF])


def partition_entry(active: bool, part_type: int, start: int, count: int) -> bytes:
    """One 16-byte MBR partition entry with CHS and LBA addresses."""
    return (bytes([0x80 if active else 0]) + chs(start) + bytes([part_type]) + chs(start + count - 1)
            + struct.pack("<II", start, count))


def imported_boot_sector(store: Store) -> bytes:
    """FreeDOS's boot sector from the imported media; MissingInputError saying how to get it."""
    path = inputs_dir(store) / BOOT_SECTOR
    if not path.is_file():
        raise MissingInputError(
            f"no FreeDOS boot sector imported ({path} missing)",
            hint=f"run `{IMPORT_COMMAND}` with FreeDOS boot media whose boot sector is FreeDOS's (a FreeDOS boot "
                 "floppy or installation image; imports made before this guest existed did not keep it)",
        )
    return path.read_bytes()


def fat_layout(boot: bytes) -> tuple[int, int, int, int]:
    """FAT type, partition type, cylinders and sectors per cluster for FreeDOS boot sector ``boot``."""
    fat_type = fatboot.parse_bpb(boot).fat_type
    if fat_type not in FAT_LAYOUT:
        raise GuestError(f"the imported FreeDOS boot sector is for FAT{fat_type}: the freedos-installed guest "
                         f"builds FAT{' or FAT'.join(str(t) for t in FAT_LAYOUT)} partitions only",
                         hint=f"run `{IMPORT_COMMAND}` with a FreeDOS boot floppy or a FAT16 installation image")
    return (fat_type, *FAT_LAYOUT[fat_type])


class FreedosInstalledGuest(FreedosGuest):
    """FreeDOS from a CHS MBR and its own FAT boot sector on a 255-head disk: DOS's INT 13h path."""

    name = "freedos-installed"
    partition_offset: ClassVar[int] = DOS_START * SECTOR
    failure_markers = (*FreedosGuest.failure_markers, MBR_FAILURE, SUSPECT_PARTITION)

    def image_key(self) -> str:
        super().image_key()  # the kernel and shell are imported (MissingInputError otherwise)
        h = hashlib.sha256()
        for part in (RECIPE_VERSION, CONFIG_SYS, AUTOEXEC_BAT, repr(FAT_LAYOUT), str(DISK_CYLINDERS)):
            h.update(part.encode() + b"\0")
        h.update(asm.sources_key(MBR_SOURCE, "poweroff.asm", "settle.asm").encode())
        h.update(imported_boot_sector(self.store))
        for name in DOS_FILES:
            h.update(hashlib.sha256((inputs_dir(self.store) / name).read_bytes()).digest())
        return h.hexdigest()[:16]

    def _build_image(self, out: Path, progress: Progress) -> None:
        boot = imported_boot_sector(self.store)
        fat_type, part_type, cylinders, cluster = fat_layout(boot)
        count = cylinders * CYLINDER
        with tempfile.TemporaryDirectory(prefix="patchkit-freedos-installed-") as tmp:
            work = Path(tmp)
            mbr = asm.assemble(MBR_SOURCE, work / "mbr.bin")
            progress(f"{self.name}: writing a 4 GiB sparse disk, FAT{fat_type} partition on cylinder 1")
            with open(out, "wb") as f:
                f.truncate(DISK_CYLINDERS * CYLINDER * SECTOR)
                f.write(mbr)
                f.seek(446)
                f.write(partition_entry(False, UTILITY_TYPE, SECTORS_PER_TRACK, CYLINDER - SECTORS_PER_TRACK))
                f.write(partition_entry(True, part_type, DOS_START, count))
                f.write(bytes(32) + b"\x55\xaa")
            run(["mkfs.fat", "-F", str(fat_type), "-s", str(cluster), "-n", "FREEDOS", "-h", str(DOS_START),
                 "-g", f"{HEADS}/{SECTORS_PER_TRACK}", "-D", "0x80", f"--offset={DOS_START}", out,
                 str(count * SECTOR // 1024)])
            with open(out, "r+b") as f:
                f.seek(self.partition_offset)
                fresh = f.read(SECTOR)
                f.seek(self.partition_offset)
                f.write(fatboot.transplant(boot, fresh, 0x80))
            for name, source in dos_files(self.store, work).items():
                if isinstance(source, bytes):
                    fat.put_bytes(out, self.partition_offset, source, name)
                else:
                    fat.put(out, self.partition_offset, source, name)
