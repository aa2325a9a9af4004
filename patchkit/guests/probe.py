"""The probe guest: patchkit's own boot-sector program testing the boot drive's INT 13h.

probe.asm is assembled at image build time with this module's disk layout. Every
data sector is stamped with its LBA so reads are checked; the write checks use a
scratch region at the end of the disk. The probe reports each check on COM1, a
throughput figure per transfer size, and writes a result sector the host checks.

The image directory also holds the keep-san floppy: the same program assembled to
test drive 0x80 (KeepSanProbeGuest). keep-san's users sanboot a disk that does not
boot, leave gPXE and boot something else that uses the SAN disk as drive 0x80.
"""

from __future__ import annotations

import functools
import hashlib
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from patchkit.guests import asm, disk
from patchkit.guests.base import Guest, Progress, Sanboot

RECIPE_VERSION = "5"
CYLINDERS = 32
TOTAL_SECTORS = CYLINDERS * disk.CYLINDER_SECTORS
TOKEN_LBA = 60
RESULT_LBA = 61
DATA_LBA = disk.PARTITION_START
SCRATCH_LBA = (CYLINDERS - 4) * disk.CYLINDER_SECTORS
WRITE_KEY = 0x5AA55AA5
WRITTEN_SECTORS = 6 + 6 + 1 + 8 + 64 + 127  # what probe.asm's write checks write
TOKEN_TAG = b"PKTOKEN "
BOOT_SIGNATURE_OFFSET = 510
SAN_DRIVE = 0x80  # the BIOS drive the keep-san floppy tests
FLOPPY_NAME = "keepsan-floppy.img"
AOE_FLOPPY_NAME = "aoe-keepsan-floppy.img"
FLOPPY_BYTES = 1474560  # 1.44 MB: 80 cylinders x 2 heads x 18 sectors
FLOPPY_TRACK_SECTORS = 18  # the loader reads its stage 2 from the first track
BIOS_TICK_HZ = 1193182 / 65536

_EVERY_DWORD = int.from_bytes(b"\x01\x00\x00\x00" * 128, "little")


@functools.cache
def _top_bytes(top: int) -> int:
    """The top bytes of a sector's dwords, (top + i) mod 256, in place (other bytes zero)."""
    return int.from_bytes(b"".join(bytes([0, 0, 0, (top + i) & 0xFF]) for i in range(128)), "little")


def stamp(lba: int, key: int = 0) -> bytes:
    """Sector ``lba``'s content as probe.asm checks it: dword i = ((lba xor key) + (i << 24)) mod 2**32."""
    value = lba ^ key
    return ((value & 0xFFFFFF) * _EVERY_DWORD + _top_bytes(value >> 24)).to_bytes(disk.SECTOR, "little")


def defines() -> dict[str, int]:
    """The layout constants probe.asm is assembled with."""
    return {
        "TOTAL_SECTORS": TOTAL_SECTORS, "TOKEN_LBA": TOKEN_LBA, "RESULT_LBA": RESULT_LBA,
        "DATA_LBA": DATA_LBA, "SCRATCH_LBA": SCRATCH_LBA,
    }


def floppy_defines() -> dict[str, int]:
    """The keep-san floppy's program: the same layout, tested on drive SAN_DRIVE."""
    return {**defines(), "TEST_DRIVE": SAN_DRIVE}


def aoe_floppy_defines() -> dict[str, int]:
    """The AoE keep-san floppy's program: drive SAN_DRIVE, without the reads past the end.

    gPXE's INT 13h passes such reads to an ATA-over-Ethernet disk unchecked and they
    succeed (upstream, outside the series): the virtio-blk driver is where the series checks them.
    """
    return {**floppy_defines(), "UNCHECKED_END": 1}


@dataclass
class ProbeReport:
    """What a probe run printed: passed and failed checks, and read throughput per transfer size."""

    checks: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    throughput_mb_s: dict[int, float] = field(default_factory=dict)
    geometry: tuple[int, int, int] | None = None  # cylinders, heads, sectors from AH=08
    notes: list[str] = field(default_factory=list)  # observations that are not failures


_LINE = re.compile(r"PROBE (ok|FAIL|note|tput|tsc-kcycles-per-tick|geometry) ?([^\r\n\x1b]*)")


def parse_probe_log(text: str) -> ProbeReport:
    """Parse the probe's serial output (escape codes and other lines are ignored)."""
    report = ProbeReport()
    kcycles_per_tick = 0
    samples: list[tuple[int, int, int, int]] = []
    for kind, rest in _LINE.findall(text):
        fields = rest.split()
        if kind == "ok" and fields:
            report.checks.append(fields[0])
        elif kind == "FAIL":
            report.failures.append(rest.strip())
        elif kind == "note":
            report.notes.append(rest.strip())
        elif kind == "geometry" and len(fields) == 3 and all(f.isdigit() for f in fields):
            report.geometry = (int(fields[0]), int(fields[1]), int(fields[2]))
        elif kind == "tsc-kcycles-per-tick" and fields and fields[0].isdigit():
            kcycles_per_tick = int(fields[0])
        elif kind == "tput" and len(fields) >= 3 and all(f.isdigit() for f in fields):
            size, sectors, ticks = (int(f) for f in fields[:3])
            samples.append((size, sectors, ticks, int(fields[3]) if len(fields) > 3 else 0))
    for size, sectors, ticks, kcycles in samples:
        if kcycles_per_tick and kcycles:
            seconds = kcycles / kcycles_per_tick / BIOS_TICK_HZ
        else:
            seconds = ticks / BIOS_TICK_HZ
        if seconds > 0:
            report.throughput_mb_s[size] = sectors * disk.SECTOR / seconds / 1e6
    return report


class ProbeGuest(Guest):
    """A real-mode INT 13h conformance and throughput probe."""

    name = "probe"
    default_timeout = 120.0
    failure_markers = ("PATCHKIT-FAIL", "PROBE FAIL")
    build_command = "patchkit guest build probe"

    def image_key(self) -> str:
        h = hashlib.sha256(RECIPE_VERSION.encode() + b"\0" + repr(sorted(aoe_floppy_defines().items())).encode())
        h.update(asm.sources_key("probe.asm").encode())
        return h.hexdigest()[:16]

    def _build_image(self, out: Path, progress: Progress) -> None:
        with tempfile.TemporaryDirectory(prefix="patchkit-probe-") as tmp:
            program = asm.assemble("probe.asm", Path(tmp) / "probe.bin", defines())
            floppy_program = asm.assemble("probe.asm", Path(tmp) / "probe-floppy.bin", floppy_defines())
            aoe_floppy_program = asm.assemble("probe.asm", Path(tmp) / "probe-aoe-floppy.bin", aoe_floppy_defines())
        stage2 = program[disk.SECTOR:]
        if len(stage2) > (TOKEN_LBA - 1) * disk.SECTOR:
            raise ValueError(f"probe program is {len(program)} bytes: it would overlap the token sector")
        progress("probe: writing the stamped disk")
        disk.create(out, CYLINDERS)
        disk.write_mbr(out, program[:440], disk.PART_DATA, DATA_LBA, TOTAL_SECTORS - DATA_LBA)
        with open(out, "r+b") as f:
            f.seek(disk.SECTOR)
            f.write(stage2)
            f.seek(DATA_LBA * disk.SECTOR)
            f.write(b"".join(stamp(lba) for lba in range(DATA_LBA, TOTAL_SECTORS)))
        progress("probe: writing the keep-san floppy")
        _write_floppy(out.with_name(FLOPPY_NAME), floppy_program)
        _write_floppy(out.with_name(AOE_FLOPPY_NAME), aoe_floppy_program)

    def _inject_token(self, disk_path: Path, token: str) -> None:
        sector = (TOKEN_TAG + token.encode()).ljust(disk.SECTOR, b"\0")
        with open(disk_path, "r+b") as f:
            f.seek(TOKEN_LBA * disk.SECTOR)
            f.write(sector)

    def verify_disk(self, disk_path: Path, token: str) -> list[str]:
        problems = []
        with open(disk_path, "rb") as f:
            f.seek(RESULT_LBA * disk.SECTOR)
            result = f.read(disk.SECTOR).rstrip(b"\0")
            f.seek(DATA_LBA * disk.SECTOR)
            data = f.read()
        expected = f"PROBE-DONE {token} failures=0".encode()
        if result != expected:
            problems.append(f"result sector {RESULT_LBA} holds {result[:80]!r}, expected {expected!r}")
        written = 0
        for lba in range(DATA_LBA, TOTAL_SECTORS):
            sector = data[(lba - DATA_LBA) * disk.SECTOR:(lba - DATA_LBA + 1) * disk.SECTOR]
            if sector == stamp(lba):
                continue
            if lba >= SCRATCH_LBA and sector == stamp(lba, WRITE_KEY):
                written += 1
                continue
            problems.append(f"sector {lba} holds neither its stamp nor the probe's written pattern")
            break
        if written != WRITTEN_SECTORS:
            problems.append(f"{written} scratch sectors carry the written pattern, expected {WRITTEN_SECTORS}")
        return problems


def _write_floppy(path: Path, program: bytes) -> None:
    """A 1.44 MB boot floppy: the program's boot sector (with its signature), then its stage 2."""
    stage2 = program[disk.SECTOR:]
    if len(stage2) > (FLOPPY_TRACK_SECTORS - 1) * disk.SECTOR:
        raise ValueError(f"probe program is {len(program)} bytes: its floppy loader reads one track only")
    with open(path, "wb") as f:
        f.write(program[:BOOT_SIGNATURE_OFFSET] + b"\x55\xaa" + stage2)
        f.truncate(FLOPPY_BYTES)
    path.chmod(0o444)  # like the disk: image files are never written after the build


class KeepSanProbeGuest(ProbeGuest):
    """The probe booted from its floppy after gPXE, testing the SAN disk gPXE kept as drive 0x80.

    It uses the probe's image (same name, same build command). Its run disk, for the
    virtio slot sanboot is given, is the probe disk without its boot signature: gPXE's
    int13_boot refuses it and sanboot returns, keeping the drive with `set keep-san 1`.
    boot_floppy() goes in the machine's A: drive.
    """

    name = "keepsan"
    sanboot = Sanboot(commands=("set keep-san 1",), exit_after_sanboot=True)

    @property
    def image_name(self) -> str:
        return ProbeGuest.name

    def make_run_disk(self, run_dir: Path, token: str) -> Path:
        disk_path = super().make_run_disk(run_dir, token)
        with open(disk_path, "r+b") as f:
            f.seek(BOOT_SIGNATURE_OFFSET)
            f.write(bytes(2))
        return disk_path

    def boot_floppy(self) -> Path:
        """The probe assembled to test drive SAN_DRIVE, on a boot floppy (read only: boot a copy)."""
        return self.base_image().with_name(FLOPPY_NAME)


class AoeKeepSanProbeGuest(KeepSanProbeGuest):
    """The keep-san probe for an AoE disk: `sanboot aoe:e0.0` with keep-san, then the probe from A:.

    This is patch 1's case. vblade serves the run disk to the series' NIC ROM (patchkit.qemu.aoe);
    the floppy leaves out the reads past the end (aoe_floppy_defines).
    """

    name = "keepsan-aoe"
    sanboot = Sanboot(commands=("set keep-san 1", "ifopen net0"), root_path="aoe:e0.0", disk="aoe",
                      exit_after_sanboot=True, nic_rom=True)

    def boot_floppy(self) -> Path:
        return self.base_image().with_name(AOE_FLOPPY_NAME)
