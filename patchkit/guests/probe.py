"""The probe guest: patchkit's own boot-sector program testing the boot drive's INT 13h.

probe.asm is assembled at image build time with this module's disk layout. Every
data sector is stamped with its LBA so reads are checked; the write checks use a
scratch region at the end of the disk. The probe reports each check on COM1, a
throughput figure per transfer size, and writes a result sector the host checks. Its last
check fails if any INT 13h transfer returned with interrupts disabled (a BIOS returns the
caller's interrupt flag).

The image directory also holds the keep-san floppy: the same program assembled to
test drive 0x80 (KeepSanProbeGuest). keep-san's users sanboot a disk that does not
boot, leave gPXE and boot something else that uses the SAN disk as drive 0x80.

Variants (``ProbeGuest.variant``) each have their own image. A disk shape (SHAPES) is
a large sparse disk whose partition table is written for another geometry: the probe
then also checks that AH=08 reports the table's geometry and that CHS reads at the
table's C/H/S reach the sectors it means (what DOS boot code relies on), and above
2 TiB that AH=42 reaches sectors past 2^32. Only the regions the probe touches are
stamped and checked afterwards (ProbeLayout.stamped). The read-only variant expects
every write to fail with status 03 (write protected) and the disk to stay as built.
"""

from __future__ import annotations

import functools
import hashlib
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from patchkit.errors import PatchkitError
from patchkit.guests import asm, disk
from patchkit.guests.base import Guest, RequestCount, Sanboot
from patchkit.progress import Progress
from patchkit.qemu.faults import Hold
from patchkit.store import Store, sparse_digest

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
RESET_FLOPPY_NAME = "keepsan-reset-floppy.img"
LOADER_NAME = "bzloader"  # bzloader.asm assembled (gPXE names an embedded image by its file name)
# probe-hold's markers (probe.asm, HOLD_READ): at HOLD_READY the harness throttles the drive's
# reads to a byte per second (HOLD_THROTTLE) and presses a key; the probe's one-sector primer
# read passes and fills the throttle's bucket, so its read of HOLD_COUNT sectors at HOLD_LBA is
# held. At HOLD_RETURNED the harness lifts the throttle (HOLD_RELEASE: disabling it drains the
# drive, so the held request completes at once) and presses a key. Both are human-monitor
# commands (QMP: block_set_io_throttle) on the drive's id. blkdebug break/resume does not do:
# a driver that resets the device on its timeout then deadlocks QEMU 7.2 (the reset drains the
# request the breakpoint holds, and the monitor that would resume it no longer answers).
HOLD_READY = "PROBE hold-ready"
HOLD_RETURNED = "PROBE hold-returned"
HOLD_THROTTLE = "block_set_io_throttle {drive} 0 1 0 0 0 0"
HOLD_RELEASE = "block_set_io_throttle {drive} 0 0 0 0 0 0"
HOLD_LBA = DATA_LBA + 7000
HOLD_COUNT = 8
# probe-requests' markers (probe.asm, COUNT_REQUESTS): the harness counts the disk's read requests
# at each (RequestCount); between them the probe makes one 127-sector AH=42 read.
COUNT_BEFORE = "PROBE count-before"
COUNT_AFTER = "PROBE count-after"
_HELD_READ = re.compile(r"PROBE held-read-kcycles (\d+) (\d+)")
FLOPPY_BYTES = 1474560  # 1.44 MB: 80 cylinders x 2 heads x 18 sectors
FLOPPY_TRACK_SECTORS = 18  # the loader reads its stage 2 from the first track
BIOS_TICK_HZ = 1193182 / 65536
HI_MULT = 0x9E3779B9  # probe.asm: the stamp folds in an LBA's high dword times this
TWO_TIB = 1 << 32  # sectors: the first LBA AH=42 needs the DAP's high dword for
MAX_CYLINDER = 256 * 63  # sectors in the largest cylinder a BIOS geometry has
SHAPED_SCRATCH_LBA = 3 * MAX_CYLINDER  # past the reads of any geometry's second cylinder
SHAPED_STAMPED_END = SHAPED_SCRATCH_LBA + 2 * MAX_CYLINDER + 64  # past the writes of any geometry
TAIL_SECTORS = 128  # stamped at the end of a shaped disk


@dataclass(frozen=True)
class DiskShape:
    """A disk size and the geometry its partition table's CHS fields are written for."""

    name: str
    sectors: int
    heads: int
    sectors_per_track: int = 63


GIB = (1 << 30) // disk.SECTOR
SHAPES = {shape.name: shape for shape in (
    DiskShape("2g-255x63", 2 * GIB, 255),  # what fdisk and DOS write
    DiskShape("2g-128x63", 2 * GIB, 128),  # another head count (a wrong one reads other sectors)
    DiskShape("8g-255x63", 8 * GIB, 255),  # past 1024 cylinders: CHS clamps, the table's CHS saturates
    DiskShape("3t-255x63", 3 * 1024 * GIB, 255),  # past 2^32 sectors: AH=48 and AH=42 with 64-bit LBAs
)}


@dataclass(frozen=True)
class ProbeLayout:
    """Where a probe disk keeps what: its size, partition (and the geometry of its CHS fields), regions."""

    total: int
    heads: int
    sectors_per_track: int
    part_start: int
    part_count: int
    scratch: int  # the write checks write from here, up to stamped_end
    stamped_end: int  # DATA_LBA .. stamped_end is stamped
    stamped: tuple[tuple[int, int], ...]  # every stamped range [start, end), DATA_LBA's first

    def defines(self) -> dict[str, int]:
        """The layout constants probe.asm is assembled with."""
        return {"TOTAL_SECTORS": self.total, "TOKEN_LBA": TOKEN_LBA, "RESULT_LBA": RESULT_LBA, "DATA_LBA": DATA_LBA,
                "SCRATCH_LBA": self.scratch}


DEFAULT_LAYOUT = ProbeLayout(TOTAL_SECTORS, disk.HEADS, disk.SECTORS_PER_TRACK, DATA_LBA, TOTAL_SECTORS - DATA_LBA,
                             SCRATCH_LBA, TOTAL_SECTORS, ((DATA_LBA, TOTAL_SECTORS),))


def shaped_layout(shape: DiskShape) -> ProbeLayout:
    """A shaped disk: the partition starts at cylinder 1 head 0 sector 1 of the table's geometry.

    So a BIOS with another head count maps the start C/H/S to another sector (255x63: LBA 16065,
    which 16 heads place at LBA 1008). The partition ends on a cylinder boundary below 2^32
    sectors (MBR fields are 32 bits); its end CHS saturates past 1024 cylinders. Stamped: the
    reads' and writes' region, a track up to the sector the end CHS names, the disk's tail and,
    above 2 TiB, the sectors around 2^32.
    """
    cylinder = shape.heads * shape.sectors_per_track
    part_end = min(shape.sectors, TWO_TIB) // cylinder * cylinder
    chs_end = min(part_end, 1024 * cylinder) - 1  # the sector the partition's end CHS names
    stamped = [(DATA_LBA, SHAPED_STAMPED_END), (chs_end + 1 - shape.sectors_per_track, chs_end + 1),
               (shape.sectors - TAIL_SECTORS, shape.sectors)]
    if shape.sectors > TWO_TIB:
        stamped.insert(2, (TWO_TIB - 64, TWO_TIB + DATA_LBA + 2048))
    return ProbeLayout(shape.sectors, shape.heads, shape.sectors_per_track, cylinder, part_end - cylinder,
                       SHAPED_SCRATCH_LBA, SHAPED_STAMPED_END, tuple(stamped))


_EVERY_DWORD = int.from_bytes(b"\x01\x00\x00\x00" * 128, "little")


@functools.cache
def _top_bytes(top: int) -> int:
    """The top bytes of a sector's dwords, (top + i) mod 256, in place (other bytes zero)."""
    return int.from_bytes(b"".join(bytes([0, 0, 0, (top + i) & 0xFF]) for i in range(128)), "little")


def stamp(lba: int, key: int = 0) -> bytes:
    """Sector ``lba``'s content as probe.asm checks it: dword i = ((lba xor key) + (i << 24)) mod 2**32.

    Above 2^32 the LBA's high dword times HI_MULT is xored in too: sectors N and N + 2^32 differ.
    """
    value = (lba ^ key ^ (lba >> 32) * HI_MULT) & 0xFFFFFFFF
    return ((value & 0xFFFFFF) * _EVERY_DWORD + _top_bytes(value >> 24)).to_bytes(disk.SECTOR, "little")


def defines() -> dict[str, int]:
    """The layout constants the default probe.asm is assembled with."""
    return DEFAULT_LAYOUT.defines()


def floppy_defines() -> dict[str, int]:
    """The keep-san floppy's program: the same layout, tested on drive SAN_DRIVE."""
    return {**defines(), "TEST_DRIVE": SAN_DRIVE}


def aoe_floppy_defines() -> dict[str, int]:
    """The AoE keep-san floppy's program: drive SAN_DRIVE, without the reads past the end.

    gPXE's INT 13h passes such reads to an ATA-over-Ethernet disk unchecked and they
    succeed (upstream, outside the series): the virtio-blk driver is where the series checks them.
    """
    return {**floppy_defines(), "UNCHECKED_END": 1}


def reset_floppy_defines() -> dict[str, int]:
    """The keep-san reset floppy's program: reset the virtio-blk device, then drive SAN_DRIVE must fail fast."""
    return {**floppy_defines(), "RESET_DEVICE": 1}


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
        ticks_taken = kcycles / kcycles_per_tick if kcycles_per_tick and kcycles else ticks  # TSC when measured
        seconds = ticks_taken / BIOS_TICK_HZ
        if seconds > 0:
            report.throughput_mb_s[size] = sectors * disk.SECTOR / seconds / 1e6
    return report


class ProbeGuest(Guest):
    """A real-mode INT 13h conformance and throughput probe (on a disk shape and/or read-only: variant())."""

    name = "probe"
    default_timeout = 120.0
    failure_markers: tuple[str, ...] = ("PATCHKIT-FAIL", "PROBE FAIL")
    build_command = "patchkit guest build probe"
    disk_shapes: ClassVar[tuple[str, ...]] = tuple(SHAPES)
    self_contained = True

    def __init__(self, store: Store, disk_shape: str | None = None, read_only: bool = False) -> None:
        super().__init__(store)
        if disk_shape is not None and disk_shape not in SHAPES:
            raise PatchkitError(f"the probe has no disk shape {disk_shape!r}: its shapes are {', '.join(SHAPES)}")
        self.disk_shape = disk_shape
        self.read_only = read_only
        self.layout = shaped_layout(SHAPES[disk_shape]) if disk_shape else DEFAULT_LAYOUT
        if self.is_variant:
            options = (f" --disk-shape {disk_shape}" if disk_shape else "") + (" --read-only" if read_only else "")
            self.build_command = f"patchkit guest build probe{options}"

    @property
    def is_variant(self) -> bool:
        return self.disk_shape is not None or self.read_only

    def variant(self, disk_shape: str | None = None, read_only: bool = False) -> Guest:
        """The probe on disk shape ``disk_shape`` (a name from SHAPES; None: the default disk), read-only or not."""
        return ProbeGuest(self.store, disk_shape, read_only)

    @property
    def image_name(self) -> str:
        parts = [self.name, *([self.disk_shape] if self.disk_shape else []), *(["ro"] if self.read_only else [])]
        return "-".join(parts)

    def program_defines(self) -> dict[str, int]:
        """What this probe's probe.asm is assembled with (the default: defines())."""
        extra = {"SHAPED": 1, "STAMPED_END": self.layout.stamped_end} if self.disk_shape else {}
        return {**self.layout.defines(), **extra, **({"READ_ONLY": 1} if self.read_only else {})}

    def image_key(self) -> str:
        floppies = [sorted(aoe_floppy_defines().items()), sorted(reset_floppy_defines().items())]
        h = hashlib.sha256(RECIPE_VERSION.encode() + b"\0" + repr(floppies).encode())
        h.update(asm.sources_key("probe.asm", "bzloader.asm").encode())
        if self.is_variant:
            h.update(repr((sorted(self.program_defines().items()), self.layout)).encode())
        return h.hexdigest()[:16]

    def _build_image(self, out: Path, progress: Progress) -> None:
        layout = self.layout
        with tempfile.TemporaryDirectory(prefix="patchkit-probe-") as tmp:
            program = asm.assemble("probe.asm", Path(tmp) / "probe.bin", self.program_defines())
            if not self.is_variant:
                floppy_program = asm.assemble("probe.asm", Path(tmp) / "probe-floppy.bin", floppy_defines())
                aoe_floppy_program = asm.assemble("probe.asm", Path(tmp) / "probe-aoe-floppy.bin",
                                                  aoe_floppy_defines())
                reset_floppy_program = asm.assemble("probe.asm", Path(tmp) / "probe-reset-floppy.bin",
                                                    reset_floppy_defines())
                loader = asm.assemble("bzloader.asm", Path(tmp) / LOADER_NAME,
                                      {"TOKEN_LBA": TOKEN_LBA, "DATA_LBA": DATA_LBA})
        stage2 = program[disk.SECTOR:]
        if len(stage2) > (TOKEN_LBA - 1) * disk.SECTOR:
            raise ValueError(f"probe program is {len(program)} bytes: it would overlap the token sector")
        progress(f"{self.image_name}: writing the stamped disk")
        with open(out, "wb") as f:
            f.truncate(layout.total * disk.SECTOR)  # sparse: only what is written below takes space
        disk.write_mbr(out, program[:440], disk.PART_DATA, layout.part_start, layout.part_count, layout.heads,
                       layout.sectors_per_track)
        with open(out, "r+b") as f:
            f.seek(disk.SECTOR)
            f.write(stage2)
            for start, end in layout.stamped:
                f.seek(start * disk.SECTOR)
                f.write(b"".join(stamp(lba) for lba in range(start, end)))
        if not self.is_variant:
            progress("probe: writing the keep-san floppy")
            _write_floppy(out.with_name(FLOPPY_NAME), floppy_program)
            _write_floppy(out.with_name(AOE_FLOPPY_NAME), aoe_floppy_program)
            _write_floppy(out.with_name(RESET_FLOPPY_NAME), reset_floppy_program)
            out.with_name(LOADER_NAME).write_bytes(loader)
            out.with_name(LOADER_NAME).chmod(0o444)

    def image_digest(self, image: Path) -> str:
        """A shaped image's hash covers its size and its non-zero sectors (it is sparse: never read it all)."""
        return sparse_digest(image) if self.disk_shape else super().image_digest(image)

    def _inject_token(self, disk_path: Path, token: str) -> None:
        sector = (TOKEN_TAG + token.encode()).ljust(disk.SECTOR, b"\0")
        with open(disk_path, "r+b") as f:
            f.seek(TOKEN_LBA * disk.SECTOR)
            f.write(sector)

    @property
    def writes_disk(self) -> bool:
        """Whether the probe writes its result and write checks (not on a read-only disk)."""
        return not self.read_only

    def verify_disk(self, disk_path: Path, token: str) -> list[str]:
        """The result sector, and every stamped region: each sector stamped, or written by a write check.

        A probe that does not write (writes_disk) must leave no result and no written sector.
        """
        problems = []
        with open(disk_path, "rb") as f:
            f.seek(RESULT_LBA * disk.SECTOR)
            result = f.read(disk.SECTOR).rstrip(b"\0")
            expected = f"PROBE-DONE {token} failures=0".encode() if self.writes_disk else b""
            if result != expected:
                problems.append(f"result sector {RESULT_LBA} holds {result[:80]!r}, expected {expected!r}"
                                + ("" if self.writes_disk else " (this probe writes nothing)"))
            written = 0
            for start, end in self.layout.stamped:
                f.seek(start * disk.SECTOR)
                data = f.read((end - start) * disk.SECTOR)
                if data == b"".join(stamp(lba) for lba in range(start, end)):
                    continue
                bad, count = _unstamped(data, start, self.layout.scratch)
                written += count
                if bad is not None:
                    problems.append(f"sector {bad} holds neither its stamp nor the probe's written pattern")
                    break
        wanted = WRITTEN_SECTORS if self.writes_disk else 0
        if written != wanted:
            problems.append(f"{written} scratch sectors carry the written pattern, expected {wanted}")
        return problems


def _unstamped(data: bytes, start: int, scratch: int) -> tuple[int | None, int]:
    """The first sector of ``data`` (from LBA ``start``) neither stamped nor written, and how many are written."""
    written = 0
    for n in range(len(data) // disk.SECTOR):
        lba = start + n
        sector = data[n * disk.SECTOR:(n + 1) * disk.SECTOR]
        if sector == stamp(lba):
            continue
        if lba >= scratch and sector == stamp(lba, WRITE_KEY):
            written += 1
            continue
        return lba, written
    return None, written


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
    disk_shapes: ClassVar[tuple[str, ...]] = ()

    def variant(self, disk_shape: str | None = None, read_only: bool = False) -> Guest:
        """None: the floppy's program tests the default disk only (Guest.variant's refusal)."""
        return Guest.variant(self, disk_shape, read_only)

    @property
    def image_name(self) -> str:
        return ProbeGuest.name

    def make_run_disk(self, run_dir: Path, token: str) -> Path:
        disk_path = super().make_run_disk(run_dir, token)
        with open(disk_path, "r+b") as f:
            f.seek(BOOT_SIGNATURE_OFFSET)
            f.write(bytes(2))
        return disk_path

    def boot_floppy(self) -> Path | None:
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


class KeepSanResetProbeGuest(KeepSanProbeGuest):
    """keep-san, then the probe from A: resets the virtio-blk device as an OS driver taking it over does.

    Drive 0x80 (gPXE's kept drive) must then fail INT 13h reads and writes with status AAh (drive
    not ready; issue 18, defect 4: v3 returns 04) within about a second each (issue 9, defect 3:
    v2 waits for its request timeout). The probe reads its token before the reset and writes
    nothing to the disk.
    """

    name = "keepsan-reset"

    @property
    def writes_disk(self) -> bool:
        return False

    def boot_floppy(self) -> Path:
        return self.base_image().with_name(RESET_FLOPPY_NAME)


class KeepSanBootProbeGuest(KeepSanProbeGuest):
    """keep-san, then gPXE boots an image that reads the kept drive (issue 18, defect 1).

    `set keep-san 1`, a sanboot of the probe disk without its boot signature returns with the
    drive kept, then `imgexec bzloader` runs patchkit's tiny bzImage (bzloader.asm, embedded in
    the ROM under test: embedded_image()). gPXE shuts its devices down before it jumps to a
    kernel, as before memdisk or an installer; the loader's real-mode setup then reads drive
    0x80 (AH=42, AH=48, AH=02) and checks the token and the stamps, prints the success marker and
    powers off. A driver that let its device go with the others fails a call, or the machine
    resets (a triple fault stops QEMU: -no-reboot). It writes nothing to the disk.
    """

    name = "keepsan-boot"
    sanboot = Sanboot(commands=("set keep-san 1",), exit_after_sanboot=True, after_sanboot=f"imgexec {LOADER_NAME}",
                      embedded=LOADER_NAME)

    @property
    def writes_disk(self) -> bool:
        return False

    def boot_floppy(self) -> None:
        return None

    def embedded_image(self) -> Path:
        """The loader, beside the probe's image (read only)."""
        return self.base_image().with_name(LOADER_NAME)


class HoldReadProbeGuest(ProbeGuest):
    """The probe for a run whose disk holds a request back (the timeout cell, issue 9 defect 2).

    Its own image (the default disk, the program assembled with HOLD_READ): it reads its token,
    prints HOLD_READY and waits for a key; the harness throttles the drive (HOLD_THROTTLE) and
    presses a key; after a primer read the probe's read of HOLD_COUNT sectors at HOLD_LBA must
    fail (the driver's timeout) without touching the canary sector after its buffer; at
    HOLD_RETURNED the harness lifts the throttle (HOLD_RELEASE) and presses a key, and the buffer
    must stay as the call left it for about 3 s. Then the held call's status must have been 80h
    (timed out) and a later read must fail with AAh (drive not ready), the statuses the cover
    promises (issue 18, defect 4). It writes nothing to the disk. Without a harness that acts on
    the markers it fails ("hold-key-from-harness no-key") after a minute. figures() reports how long
    the held call took (``held_read_s``).
    """

    name = "probe-hold"
    build_command = "patchkit guest build probe-hold"
    hold: ClassVar[Hold | None] = Hold(at=HOLD_READY, release=HOLD_RETURNED, via="throttle")  # acted on at its markers

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.build_command = HoldReadProbeGuest.build_command

    @property
    def is_variant(self) -> bool:
        return True

    @property
    def image_name(self) -> str:
        return self.name

    @property
    def writes_disk(self) -> bool:
        return False

    def program_defines(self) -> dict[str, int]:
        return {**super().program_defines(), "HOLD_READ": 1}

    def variant(self, disk_shape: str | None = None, read_only: bool = False) -> Guest:
        """None: the held read is checked on the default disk (Guest.variant's refusal)."""
        return Guest.variant(self, disk_shape, read_only)

    def figures(self, serial: str) -> dict[str, float]:
        """``held_read_s``: how long the held call took before it returned, as the probe measured it (TSC
        kcycles over kcycles a BIOS tick, at 18.2 ticks a second)."""
        if (found := _HELD_READ.search(serial)) is None or int(found.group(2)) == 0:
            return {}
        return {"held_read_s": round(int(found.group(1)) / int(found.group(2)) / BIOS_TICK_HZ, 2)}


class RequestsProbeGuest(HoldReadProbeGuest):
    """The probe counting virtio requests per INT 13h call (the cover: "normally one").

    Its own image (the default disk, the program assembled with COUNT_REQUESTS): it reads its
    token, prints COUNT_BEFORE and waits for a key; the harness reads the disk's request count
    and presses a key; the probe reads 127 sectors with one AH=42 call (checked), prints
    COUNT_AFTER and waits; the harness counts again. The run fails unless that call took one
    request. It writes nothing to the disk.
    """

    name = "probe-requests"
    build_command = "patchkit guest build probe-requests"
    hold = None
    count = RequestCount(before=COUNT_BEFORE, after=COUNT_AFTER, expected=1)

    def __init__(self, store: Store) -> None:
        ProbeGuest.__init__(self, store)
        self.build_command = RequestsProbeGuest.build_command

    def program_defines(self) -> dict[str, int]:
        return {**ProbeGuest.program_defines(self), "COUNT_REQUESTS": 1}

    def figures(self, serial: str) -> dict[str, float]:
        return {}
