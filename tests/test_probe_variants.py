"""The probe's variants: disk shapes (large sparse disks with their own partition geometry), read-only,
keep-san after a device reset (keepsan-reset) and the held read (probe-hold).

Images are built in seconds without allocating their size. Boots (TCG) show the ground
truth: SeaBIOS natively passes the shapes whose table geometry is its own translation
(128 or 255 heads, one diagnostic cylinder held back) and fails 2g-255x63, where it
reports 128 heads; gPXE v2 registers the device's 16 heads and fails the table checks;
a read-only disk refuses writes and stays as built; v2 is still inside the first INT 13h
call after an OS-style device reset long after the probe's one-second limit.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

import pytest
from fixtures.guests import boot_native, passed
from fixtures.roms import PROJECT_ROOT, SERIES

from patchkit.boot.run import boot_guest, boot_planned
from patchkit.errors import PatchkitError
from patchkit.guests import disk, get_guest
from patchkit.guests.probe import (
    HOLD_READY,
    HOLD_RELEASE,
    HOLD_RETURNED,
    HOLD_THROTTLE,
    RESULT_LBA,
    SHAPES,
    TWO_TIB,
    WRITE_KEY,
    WRITTEN_SECTORS,
    ProbeGuest,
    parse_probe_log,
    stamp,
)
from patchkit.qemu.console import Console
from patchkit.run import spawned
from patchkit.series.io import load_series
from patchkit.store import Store, sparse_digest

TABLE_CHECKS = ["table-geometry-heads", "table-geometry-sectors", "table-geometry-cylinders",
                "chs-read-partition-start", "chs-read-partition-end"]
MAX_ALLOCATED = 64 << 20  # bytes a shaped image may take on disk, whatever its size


def probe(store: Store, disk_shape: str | None = None, read_only: bool = False) -> ProbeGuest:
    guest = get_guest("probe", store).variant(disk_shape=disk_shape, read_only=read_only)
    assert isinstance(guest, ProbeGuest)
    return guest


def read_sector(image: Path, lba: int) -> bytes:
    with open(image, "rb") as f:
        f.seek(lba * disk.SECTOR)
        return f.read(disk.SECTOR)


# --- images -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SHAPES))
def test_shaped_images_are_sparse_with_the_shapes_partition_table(name: str, store: Store) -> None:
    shape = SHAPES[name]
    guest = probe(store, name)
    image = guest.build()
    size, allocated = os.path.getsize(image), os.stat(image).st_blocks * 512
    assert size == shape.sectors * disk.SECTOR
    assert allocated < MAX_ALLOCATED, f"{allocated} bytes allocated"
    entry = read_sector(image, 0)[446:462]
    cylinder = shape.heads * shape.sectors_per_track
    assert entry[1:4] == bytes([0, 1, 1])  # start: cylinder 1, head 0, sector 1
    assert struct.unpack_from("<I", entry, 8)[0] == cylinder
    end_cylinder = ((entry[6] & 0xC0) << 2) | entry[7]
    assert (entry[5], entry[6] & 0x3F) == (shape.heads - 1, shape.sectors_per_track)  # the table's geometry
    assert end_cylinder == min(1023, shape.sectors // cylinder - 1)  # saturated past 1024 cylinders
    assert read_sector(image, cylinder) == stamp(cylinder)  # the partition's first sector
    assert read_sector(image, shape.sectors - 1) == stamp(shape.sectors - 1)
    assert guest.image_sha256() == sparse_digest(image)


def test_above_2_tib_a_sector_differs_from_the_one_2_32_below(store: Store) -> None:
    image = probe(store, "3t-255x63").build()
    above = TWO_TIB + 1063
    assert read_sector(image, above) == stamp(above) != stamp(1063) == read_sector(image, 1063)
    assert stamp(TWO_TIB) != stamp(0)


def test_variants_have_their_own_images_and_the_default_is_the_probe(store: Store) -> None:
    default = get_guest("probe", store)
    assert default.variant() is not default and probe(store).image_name == "probe"
    guests = [probe(store), probe(store, read_only=True), *(probe(store, n) for n in SHAPES),
              probe(store, "8g-255x63", read_only=True)]
    assert [g.image_name for g in guests] == ["probe", "probe-ro", *(f"probe-{n}" for n in SHAPES),
                                              "probe-8g-255x63-ro"]
    assert len({g.image_key() for g in guests}) == len(guests)
    assert all(g.name == "probe" for g in guests)
    assert probe(store, "2g-255x63").build_command == "patchkit guest build probe --disk-shape 2g-255x63"
    assert default.disk_shapes == tuple(SHAPES)
    with pytest.raises(PatchkitError, match="no disk shape '9g': its shapes are 2g-255x63"):
        default.variant(disk_shape="9g")
    for name in ("keepsan", "debian"):
        with pytest.raises(PatchkitError, match="cannot run on a read-only disk"):
            get_guest(name, store).variant(read_only=True)


def test_sparse_digest_depends_on_content_not_allocation(tmp_path: Path) -> None:
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    for path in (a, b):
        with open(path, "wb") as f:
            f.truncate(1 << 30)
            f.seek(5000 * disk.SECTOR)
            f.write(stamp(5000))
    with open(b, "r+b") as f:  # zeros written: allocated, same content
        f.seek(1 << 20)
        f.write(bytes(1 << 20))
    assert os.stat(b).st_blocks > os.stat(a).st_blocks
    assert sparse_digest(a) == sparse_digest(b)
    with open(b, "r+b") as f:
        f.seek(9 * disk.SECTOR)
        f.write(b"x")
    assert sparse_digest(a) != sparse_digest(b)


def _as_the_probe_leaves_it(guest: ProbeGuest, run_disk: Path, token: str) -> None:
    """Write what a passing probe writes: its result sector and WRITTEN_SECTORS written sectors."""
    scratch = guest.layout.scratch
    with open(run_disk, "r+b") as f:
        f.seek(RESULT_LBA * disk.SECTOR)
        f.write(f"PROBE-DONE {token} failures=0".encode().ljust(disk.SECTOR, b"\0"))
        f.seek(scratch * disk.SECTOR)
        f.write(b"".join(stamp(lba, WRITE_KEY) for lba in range(scratch, scratch + WRITTEN_SECTORS)))


def test_shaped_run_disks_are_checked_in_every_stamped_region(tmp_path: Path, store: Store) -> None:
    guest = probe(store, "3t-255x63")
    guest.build()
    run_disk = guest.make_run_disk(tmp_path / "run", "t-1")
    assert os.stat(run_disk).st_blocks * 512 < MAX_ALLOCATED  # the copy stays sparse
    assert any("result sector" in p for p in guest.verify_disk(run_disk, "t-1"))  # never booted
    _as_the_probe_leaves_it(guest, run_disk, "t-1")
    assert guest.verify_disk(run_disk, "t-1") == []
    for start, _end in guest.layout.stamped[1:]:
        with open(run_disk, "r+b") as f:
            f.seek(start * disk.SECTOR)
            f.write(stamp(start + 1))
        assert guest.verify_disk(run_disk, "t-1") == [
            f"sector {start} holds neither its stamp nor the probe's written pattern"]
        with open(run_disk, "r+b") as f:
            f.seek(start * disk.SECTOR)
            f.write(stamp(start))


def test_a_read_only_run_disk_must_hold_no_result_and_no_written_sector(tmp_path: Path, store: Store) -> None:
    guest = probe(store, read_only=True)
    guest.build()
    run_disk = guest.make_run_disk(tmp_path / "run", "ro-1")
    assert guest.verify_disk(run_disk, "ro-1") == []
    _as_the_probe_leaves_it(guest, run_disk, "ro-1")
    assert guest.verify_disk(run_disk, "ro-1") == [
        "result sector 61 holds b'PROBE-DONE ro-1 failures=0', expected b'' (this probe writes nothing)",
        f"{WRITTEN_SECTORS} scratch sectors carry the written pattern, expected 0",
    ]


# --- boots: SeaBIOS natively (the ground truth) ----------------------------------------------


def _boot_natively(guest: ProbeGuest, tmp_path: Path, token: str, readonly: bool = False):
    guest.build()
    run_disk = guest.make_run_disk(tmp_path / token, token)
    boot = boot_native(run_disk, guest.default_timeout, readonly=readonly)
    assert not boot.timed_out, boot.log[-2000:]
    return run_disk, boot


@pytest.mark.boot
@pytest.mark.parametrize("name", ["2g-128x63", "8g-255x63", "3t-255x63"])
def test_seabios_passes_the_shapes_that_match_its_own_translation(name: str, tmp_path: Path, store: Store) -> None:
    guest = probe(store, name)
    run_disk, boot = _boot_natively(guest, tmp_path, f"{name}-1")
    report = parse_probe_log(boot.log)
    assert report.failures == []
    assert set(TABLE_CHECKS) <= set(report.checks)
    if name.startswith("3t"):
        assert {"ext-read-across-2t", "ext-read-above-2t", "ah48-size", "last-sector"} <= set(report.checks)
    assert "AH=08 holds back one cylinder of the table's geometry" in report.notes  # SeaBIOS's habit
    assert passed(guest, boot, f"{name}-1")
    assert guest.verify_disk(run_disk, f"{name}-1") == []


@pytest.mark.boot
def test_the_table_checks_catch_seabios_128_heads_on_a_255_head_table(tmp_path: Path, store: Store) -> None:
    # SeaBIOS translates a 2 GiB virtio disk to 519/128/63 whatever the table says; DOS boot
    # code would read C/H/S 1/0/1 (LBA 16065 by the table) at LBA 8064.
    guest = probe(store, "2g-255x63")
    _run_disk, boot = _boot_natively(guest, tmp_path, "seabios-255")
    report = parse_probe_log(boot.log)
    assert report.geometry == (519, 128, 63)
    assert report.failures == [
        "table-geometry-heads ah08-heads 0x00000080", "table-geometry-cylinders ah08-cylinders 0x00000207",
        "chs-read-partition-start sector-holds-lba 0x00001f80", "chs-read-partition-end status 0x00000001",
    ]
    assert not passed(guest, boot, "seabios-255")


@pytest.mark.boot
def test_seabios_refuses_writes_to_a_read_only_disk_with_another_status(tmp_path: Path, store: Store) -> None:
    # SeaBIOS 1.16 reports any virtio-blk error as 0x0c: the read-only probe wants 03, which
    # makes this the negative control of the status check; the disk stays as built.
    guest = probe(store, read_only=True)
    run_disk, boot = _boot_natively(guest, tmp_path, "ro-seabios", readonly=True)
    report = parse_probe_log(boot.log)
    writes = [c for c in report.checks + report.failures if "write" in c]
    assert len(writes) == 6 and all(w.endswith("write-status 0x0000000c") for w in writes), writes
    assert "ext-read-aligned-127" in report.checks and "PATCHKIT-FAIL probe: 6 failures" in boot.log
    assert guest.verify_disk(run_disk, "ro-seabios") == []


@pytest.mark.boot
def test_the_read_only_probe_fails_on_a_writable_disk(tmp_path: Path, store: Store) -> None:
    guest = probe(store, read_only=True)
    run_disk, boot = _boot_natively(guest, tmp_path, "ro-writable")
    report = parse_probe_log(boot.log)
    assert len(report.failures) == 6 and all("write-accepted" in f for f in report.failures)
    assert guest.verify_disk(run_disk, "ro-writable") == [
        f"{WRITTEN_SECTORS} scratch sectors carry the written pattern, expected 0"]


# --- boots through gPXE v2 --------------------------------------------------------------------


@pytest.mark.boot
def test_the_table_checks_catch_v2s_16_head_geometry(inputs_cache: Path, v2_rom: Path, store: Store) -> None:
    # Issue 9, defect 1: v2 registers the device's geometry (1024/16/63) over int13.c's guess
    # from the table, so C/H/S 1/0/1 reads LBA 1008 instead of the partition's first sector 16065.
    guest = probe(store, "2g-255x63")
    guest.build()
    guest.failure_markers = ("PATCHKIT-FAIL",)  # boot on to the verdict: the whole report
    outcome = boot_guest(guest, rom=v2_rom)
    assert not outcome.passed
    report = parse_probe_log((outcome.run_dir / "serial.log").read_text(errors="replace"))
    assert report.geometry == (1024, 16, 63)
    # The last failure is v2's interrupt flag (issue 18, defect 10: gPXE's INT 13h returned with IF clear).
    assert report.failures[:-1] == [
        "table-geometry-heads ah08-heads 0x00000010", "table-geometry-cylinders ah08-cylinders 0x00000400",
        "chs-read-partition-start sector-holds-lba 0x000003f0", "chs-read-partition-end sector-holds-lba 0x00000000",
    ]
    assert report.failures[-1].startswith("int13-returns-with-interrupts-enabled calls-returning-with-if-clear ")
    assert "PATCHKIT-FAIL probe: 5 failures" in outcome.reason


def _series_version() -> int:
    return load_series(PROJECT_ROOT / "series" / SERIES).version


@pytest.mark.boot
@pytest.mark.xfail(_series_version() == 2, strict=True,
                   reason="v2 registers the device's 16-head geometry (issue 9, defect 1): fixed in v3")
def test_the_series_rom_reads_a_255_head_table_as_dos_does(inputs_cache: Path, current_rom: Path,
                                                            store: Store) -> None:
    guest = probe(store, "2g-255x63")
    guest.build()
    outcome = boot_guest(guest, rom=current_rom)
    assert outcome.passed, f"{outcome.reason} (see {outcome.run_dir})"
    report = parse_probe_log((outcome.run_dir / "serial.log").read_text(errors="replace"))
    assert report.geometry == (261, 255, 63) and set(TABLE_CHECKS) <= set(report.checks)


# --- keep-san, then an OS-style device reset ----------------------------------------------------


def _keepsan_reset(store: Store) -> ProbeGuest:
    get_guest("probe", store).build()  # keepsan-reset boots the probe image's reset floppy
    guest = get_guest("keepsan-reset", store)
    assert isinstance(guest, ProbeGuest)
    return guest


@pytest.mark.boot
def test_v2_is_still_in_the_first_call_after_an_os_style_reset(inputs_cache: Path, v2_rom: Path,
                                                               store: Store) -> None:
    # Issue 9, defect 3: v2 sends the request to the reset device and waits for its timeout
    # (30 s nominal, ~77 s under TCG here) instead of failing at once; the probe's limit is a
    # second. The note before each call names the one the run is stuck in.
    outcome = boot_planned(_keepsan_reset(store), rom=v2_rom, stall_timeout=20)
    assert not outcome.passed and "no serial output for 20 s" in outcome.reason
    console = Console()
    console.feed((outcome.run_dir / "serial.log").read_bytes())
    probe_lines = [line.strip() for line in console.text.splitlines() if "PROBE" in line]
    assert probe_lines[1:] == [
        "PROBE ok read-before-reset", probe_lines[2], "PROBE ok virtio-reset",
        "PROBE note calling INT 13h for read-after-reset-fails-quickly"]
    assert probe_lines[2].startswith("PROBE note reset the virtio-blk device at PCI bus/devfn 0x00000020 io-base ")


@pytest.mark.boot
@pytest.mark.xfail(_series_version() == 2, strict=True,
                   reason="v2 waits for its request timeout on a reset device (issue 9, defect 3): fixed in v3")
def test_the_series_rom_fails_calls_to_a_reset_device_at_once(inputs_cache: Path, current_rom: Path,
                                                               store: Store) -> None:
    outcome = boot_planned(_keepsan_reset(store), rom=current_rom, stall_timeout=20)
    assert outcome.passed, f"{outcome.reason} (see {outcome.run_dir})"


# --- the held read ------------------------------------------------------------------------------


def _hmp(sock_path: Path, command: str) -> str:
    """Run ``command`` on QEMU's human monitor at ``sock_path``; its output up to the next prompt."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(sock_path))
        seen = b""
        while not seen.endswith(b"(qemu) "):
            seen += sock.recv(4096)
        sock.sendall(command.encode() + b"\n")
        seen = b""
        while not seen.endswith(b"(qemu) "):
            seen += sock.recv(4096)
        return seen.decode(errors="replace")


def _wait_for(log: Path, marker: str, limit: float = 120) -> str:
    """The serial log once it holds ``marker`` (polling, at most ``limit`` seconds)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        text = log.read_text(errors="replace") if log.exists() else ""
        if marker in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"no {marker!r} in {log}")


@pytest.mark.boot
def test_the_held_read_probe_follows_the_harness_and_watches_its_buffer(tmp_path: Path, store: Store) -> None:
    # SeaBIOS natively: the harness throttles the drive, lifts the throttle a little later;
    # SeaBIOS has no timeout, so its call waits and succeeds (the negative control of
    # held-read-fails) and nothing changes the buffer once the call returned.
    guest = get_guest("probe-hold", store)
    guest.build()
    run_disk = guest.make_run_disk(tmp_path / "run", "hold-1")
    serial, monitor = tmp_path / "serial.log", tmp_path / "hmp.sock"
    drive = f"if=none,id=disk0,format=raw,file={run_disk}"
    argv = ["qemu-system-x86_64", "-nodefaults", "-accel", "tcg", "-m", "128", "-machine", "pc,graphics=off",
            "-display", "none", "-serial", f"file:{serial}", "-no-reboot",
            "-monitor", f"unix:{monitor},server=on,wait=off",
            "-drive", drive, "-device", "virtio-blk-pci,drive=disk0,addr=04.0,bootindex=0"]
    with spawned(argv, stderr_file=tmp_path / "qemu-stderr.log") as qemu:
        _wait_for(serial, HOLD_READY)
        _hmp(monitor, HOLD_THROTTLE.format(drive="disk0"))
        _hmp(monitor, "sendkey spc")
        time.sleep(2)  # the read is held meanwhile (SeaBIOS waits for it)
        _hmp(monitor, HOLD_RELEASE.format(drive="disk0"))
        _wait_for(serial, HOLD_RETURNED)
        _hmp(monitor, "sendkey spc")
        log = _wait_for(serial, "PATCHKIT-")
        qemu.wait(timeout=30)  # the probe powers off
    report = parse_probe_log(log)
    assert report.failures == ["held-read-fails no-error 0x00000000"]
    assert report.checks == ["held-read-primer", "held-read-canary-intact", "held-read-buffer-unchanged-after-return",
                             "int13-returns-with-interrupts-enabled"]
    assert "PATCHKIT-FAIL probe: 1 failures" in log
    assert guest.verify_disk(run_disk, "hold-1") == []
