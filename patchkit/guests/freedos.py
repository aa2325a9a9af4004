"""The FreeDOS guest: the user's FreeDOS kernel and shell on a syslinux-booted FAT16 disk.

`patchkit guest import freedos --media PATH` copies KERNEL.SYS and COMMAND.COM from
FreeDOS boot media (a floppy, or a hard-disk installation image: MBR and a FAT
partition) into inputs/freedos/, and FreeDOS's FAT boot sector as BOOTSECT.BIN when
the media has one (the freedos-installed guest boots through it). The image here
chain-loads the kernel with syslinux's chain.c32; AUTOEXEC.BAT reads the run token
from TOKEN.BAT, writes RESULT.TXT, copies a known file, prints the marker on COM1 and
powers off.
"""

from __future__ import annotations

import hashlib
import struct
import tempfile
from pathlib import Path
from typing import ClassVar

from patchkit.errors import GuestError, MissingInputError
from patchkit.guests import asm, bootdisk, debpkgs, disk, fat, fatboot
from patchkit.guests.base import Guest
from patchkit.progress import Progress, quiet
from patchkit.run import CommandError, run
from patchkit.store import Store, atomic_write

RECIPE_VERSION = "1"
CYLINDERS = 32  # 16.5 MB, FAT16
DOS_FILES = ("KERNEL.SYS", "COMMAND.COM")
BOOT_SECTOR = "BOOTSECT.BIN"  # FreeDOS's FAT boot sector from the media, when it has one
FREEDOS_LOADS = b"KERNEL  SYS"  # the file FreeDOS's boot sector loads (8.3 directory form)
FAT_PARTITIONS = (0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E)  # FAT12, FAT16 <32M, FAT16, FAT32 CHS/LBA, FAT16 LBA
IMPORT_COMMAND = "patchkit guest import freedos --media PATH"
PARTITION_OFFSET = disk.PARTITION_START * disk.SECTOR

SYSLINUX_CFG = """DEFAULT dos
PROMPT 0
TIMEOUT 0
LABEL dos
  COM32 chain.c32
  APPEND fs freedos=KERNEL.SYS
"""
CONFIG_SYS = "SWITCHES=/N\r\nFILES=20\r\nBUFFERS=20\r\nSHELL=C:\\COMMAND.COM C:\\ /E:512 /P\r\n"
AUTOEXEC_BAT = "\r\n".join([
    "@ECHO OFF",
    "IF NOT EXIST C:\\TOKEN.BAT GOTO NOTOKEN",
    "CALL C:\\TOKEN.BAT",
    "COPY C:\\KNOWN.TXT C:\\COPY.TXT >NUL",
    "ECHO PATCHKIT-RESULT %TOKEN%>C:\\RESULT.TXT",
    "ECHO PATCHKIT-PASS %TOKEN%>COM1",
    "C:\\POWEROFF.COM",
    ":NOTOKEN",
    "C:\\SETTLE.COM",
    "ECHO PATCHKIT-FAIL no TOKEN.BAT on C:>COM1",
    "C:\\POWEROFF.COM",
    "",
])
KNOWN_TXT = "".join(f"patchkit known line {i:04d}\r\n" for i in range(400)).encode()  # 11 KiB


def inputs_dir(store: Store) -> Path:
    """Where the imported FreeDOS files are kept."""
    return store.inputs / "freedos"


def dos_files(store: Store, work: Path) -> dict[str, Path | bytes]:
    """What every FreeDOS guest disk holds, KERNEL.SYS first: the imported system files, the
    configuration that runs the checks, the file they read, and the helper programs (assembled in ``work``)."""
    files: dict[str, Path | bytes] = {name: inputs_dir(store) / name for name in DOS_FILES}
    files.update({
        "FDCONFIG.SYS": CONFIG_SYS.encode(),
        "CONFIG.SYS": CONFIG_SYS.encode(),
        "AUTOEXEC.BAT": AUTOEXEC_BAT.encode(),
        "KNOWN.TXT": KNOWN_TXT,
        "POWEROFF.COM": asm.assemble("poweroff.asm", work / "POWEROFF.COM"),
        "SETTLE.COM": asm.assemble("settle.asm", work / "SETTLE.COM"),
    })
    return files


def import_media(store: Store, media: Path, progress: Progress = quiet) -> Path:
    """Copy KERNEL.SYS, COMMAND.COM and FreeDOS's boot sector from FreeDOS media into the cache.

    The media is a FreeDOS boot floppy or a hard-disk image with a FAT partition. Its
    boot sector is kept only when it is FreeDOS's (it loads KERNEL.SYS); otherwise a
    boot sector from an earlier import is removed, as it would not match these files.
    """
    if not media.is_file():
        raise GuestError(f"FreeDOS media {media} does not exist or is not a file")
    offset = _fat_offset(media)
    found: dict[str, bytes] = {}
    for name in DOS_FILES:
        data = fat.get(media, offset, name)
        if not data:
            raise GuestError(
                f"{media} has no {name} in its root directory: not FreeDOS boot media",
                hint="use a FreeDOS boot floppy or disk image",
            )
        found[name] = data
    if not any(b"FreeDOS" in data for data in found.values()):
        raise GuestError(f"{media}: KERNEL.SYS and COMMAND.COM are not FreeDOS's (no 'FreeDOS' in either)")
    for name, data in found.items():
        atomic_write(inputs_dir(store) / name, data)
    with open(media, "rb") as f:
        f.seek(offset)
        boot = f.read(fatboot.SECTOR)
    if FREEDOS_LOADS in boot:
        atomic_write(inputs_dir(store) / BOOT_SECTOR, boot)
        kept = f" and its FAT{fatboot.parse_bpb(boot).fat_type} boot sector"
    else:
        (inputs_dir(store) / BOOT_SECTOR).unlink(missing_ok=True)
        kept = " (its boot sector is not FreeDOS's: the freedos-installed guest needs media that has one)"
    progress(f"freedos: imported {', '.join(DOS_FILES)}{kept} from {media} into {inputs_dir(store)}")
    return inputs_dir(store)


def _fat_offset(media: Path) -> int:
    """Byte offset of the FAT file system: 0 for a floppy, else a FAT partition's (the active one first)."""
    with open(media, "rb") as f:
        sector = f.read(512)
    candidates = [0]
    if len(sector) == 512 and sector[510:] == b"\x55\xaa":
        entries = [sector[446 + 16 * n:462 + 16 * n] for n in range(4)]
        entries.sort(key=lambda entry: entry[0] != 0x80)
        for entry in entries:
            start = struct.unpack_from("<I", entry, 8)[0]
            if entry[4] in FAT_PARTITIONS and start:
                candidates.append(start * disk.SECTOR)
    for offset in candidates:
        try:
            run(["minfo", "-i", fat.spec(media, offset)], env=fat.MTOOLS_ENV)
        except CommandError:
            continue
        return offset
    raise GuestError(f"{media} holds no FAT file system (neither a FAT floppy nor a disk with a FAT partition)")


class FreedosGuest(Guest):
    """FreeDOS booted from the disk, checking DOS file I/O through INT 13h."""

    name = "freedos"
    default_timeout = 90.0
    build_command = IMPORT_COMMAND
    partition_offset: ClassVar[int] = PARTITION_OFFSET  # where the DOS file system (C:) starts

    def rebuild_command(self) -> str:
        return f"patchkit guest build {self.name}"  # the media is imported already

    def image_key(self) -> str:
        h = hashlib.sha256()
        for part in (RECIPE_VERSION, debpkgs.pins_key(debpkgs.SYSLINUX_PINS), SYSLINUX_CFG, CONFIG_SYS, AUTOEXEC_BAT):
            h.update(part.encode() + b"\0")
        h.update(asm.sources_key("poweroff.asm", "settle.asm").encode())
        for name in DOS_FILES:
            path = inputs_dir(self.store) / name
            if not path.is_file():
                raise MissingInputError(
                    f"FreeDOS is not imported ({path} missing)",
                    hint=f"run `{IMPORT_COMMAND}` with a FreeDOS boot floppy or disk image",
                )
            h.update(hashlib.sha256(path.read_bytes()).digest())
        return h.hexdigest()[:16]

    def _build_image(self, out: Path, progress: Progress) -> None:
        debs = debpkgs.fetch(self.store, debpkgs.SYSLINUX_PINS, progress)
        with tempfile.TemporaryDirectory(prefix="patchkit-freedos-") as tmp:
            work = Path(tmp)
            syslinux = bootdisk.syslinux_root(debs, work / "syslinux")
            files = dos_files(self.store, work)
            progress("freedos: writing the disk")
            bootdisk.make(
                out, CYLINDERS, "FREEDOS", syslinux, SYSLINUX_CFG,
                ("chain.c32", "libcom32.c32", "libutil.c32"), files,
            )

    def _inject_token(self, disk_path: Path, token: str) -> None:
        fat.put_bytes(disk_path, self.partition_offset, f"SET TOKEN={token}\r\n".encode(), "TOKEN.BAT")

    def verify_disk(self, disk_path: Path, token: str) -> list[str]:
        problems = []
        result = fat.get(disk_path, self.partition_offset, "RESULT.TXT")
        if result is None:
            problems.append("the guest wrote no RESULT.TXT")
        elif result.strip() != f"PATCHKIT-RESULT {token}".encode():
            problems.append(f"RESULT.TXT is {result[:80]!r}, expected 'PATCHKIT-RESULT {token}'")
        copy = fat.get(disk_path, self.partition_offset, "COPY.TXT")
        if copy is None:
            problems.append("the guest did not COPY KNOWN.TXT to COPY.TXT")
        elif copy.rstrip(b"\x1a") != KNOWN_TXT:
            problems.append(f"COPY.TXT differs from KNOWN.TXT ({len(copy)} bytes, expected {len(KNOWN_TXT)})")
        return problems
