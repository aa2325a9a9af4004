"""Guest images without booting: disk layout, initramfs, probe log parsing, FreeDOS import errors."""

from __future__ import annotations

import ast
import gzip
import os
import stat
import struct
from pathlib import Path

import pytest
from conftest import REAL_STORE
from fixtures.guests import freedos_imported

import patchkit.guests.base
from patchkit.errors import GuestError, MissingInputError, PatchkitError
from patchkit.guests import GUEST_NAMES, HARNESS_NAMES, KEEP_SAN_NAMES, disk, fat, get_guest, guest_class
from patchkit.guests.base import check_token
from patchkit.guests.freedos import FreedosGuest, import_media, inputs_dir
from patchkit.guests.initramfs import Cpio
from patchkit.guests.probe import DATA_LBA, TOKEN_LBA, ProbeGuest, parse_probe_log, stamp
from patchkit.run import run
from patchkit.store import Store


def test_get_guest_knows_every_name_and_lists_them_otherwise(store: Store) -> None:
    assert [get_guest(n, store).name for n in GUEST_NAMES] == list(GUEST_NAMES)
    assert all(get_guest(n, store).store is store for n in GUEST_NAMES)
    known = ", ".join(GUEST_NAMES + KEEP_SAN_NAMES + HARNESS_NAMES)
    assert known.startswith("freedos, debian, probe, ") and "keepsan" in known and "probe-hold" in known
    with pytest.raises(PatchkitError, match="known guests are freedos, debian, probe"):
        get_guest("windows", store)
    for lookup in (lambda: get_guest("windows", store), lambda: guest_class("windows")):
        with pytest.raises(PatchkitError) as err:
            lookup()
        assert str(err.value) == f"unknown guest 'windows': known guests are {known}"
    assert [guest_class(n)(store).name for n in GUEST_NAMES] == list(GUEST_NAMES)


def test_the_guest_interface_imports_no_guest_kind() -> None:
    """guests/base.py is the interface every kind imports: it must not import a kind (the registry,
    patchkit/guests/__init__.py, does), or the kinds and the interface import each other in a circle."""
    base = Path(patchkit.guests.base.__file__)
    kinds = {p.stem for p in base.parent.glob("*.py") if p.stem not in ("__init__", "base")}
    assert {"debian", "debian_system", "freedos", "freedos_installed", "probe", "image"} <= kinds
    imported: set[str] = set()
    for node in ast.walk(ast.parse(base.read_text(), str(base))):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = ".".join(filter(None, ["patchkit.guests" if node.level else "", node.module]))  # `from .x`
            imported.add(module)
            imported.update(f"{module}.{alias.name}" for alias in node.names)
    assert "patchkit.errors" in imported  # the walk sees base.py's imports
    assert {name for name in imported if name.startswith("patchkit.guests")} == set()


@pytest.mark.parametrize("token", ["", "has space", "semi;colon", "x" * 41, "a>b"])
def test_tokens_that_could_break_batch_files_are_refused(token: str) -> None:
    with pytest.raises(PatchkitError, match="invalid run token"):
        check_token(token)


def test_missing_images_name_the_command_that_makes_them(store: Store) -> None:
    with pytest.raises(MissingInputError) as err:
        get_guest("debian", store).base_image()
    assert "patchkit guest build debian" in str(err.value)
    with pytest.raises(MissingInputError) as err:
        get_guest("freedos", store).base_image()
    assert "patchkit guest import freedos --media PATH" in str(err.value)


def test_chs_of_partition_boundaries_use_16_heads_63_sectors() -> None:
    assert disk.chs(0) == bytes([0, 1, 0])
    assert disk.chs(63) == bytes([1, 1, 0])  # cylinder 0, head 1, sector 1
    last = 32 * disk.CYLINDER_SECTORS - 1  # cylinder 31, head 15, sector 63
    assert disk.chs(last) == bytes([15, 63, 31])
    assert disk.chs(1024 * disk.CYLINDER_SECTORS) == bytes([15, 0xFF, 0xFF])  # saturated


def test_mbr_holds_one_active_partition_ending_on_a_cylinder(tmp_path: Path) -> None:
    image = tmp_path / "d.img"
    total = disk.create(image, 4)
    disk.write_mbr(image, b"\xeb\xfe", disk.PART_FAT16, 63, total - 63)
    mbr = image.read_bytes()[:512]
    assert mbr[:2] == b"\xeb\xfe" and mbr[510:] == b"\x55\xaa"
    entry = mbr[446:462]
    assert entry[0] == 0x80 and entry[4] == disk.PART_FAT16
    assert entry[5] == disk.HEADS - 1 and entry[6] & 0x3F == disk.SECTORS_PER_TRACK
    assert struct.unpack_from("<II", entry, 8) == (63, total - 63)
    assert os.path.getsize(image) == 4 * disk.CYLINDER_SECTORS * 512


def test_cpio_is_read_back_by_busybox(tmp_path: Path) -> None:
    cpio = Cpio()
    cpio.directory("bin")
    cpio.file("init", b"#!/bin/sh\necho hi\n", executable=True)
    cpio.file("bin/data", b"x" * 1001)
    archive = tmp_path / "a.cpio"
    archive.write_bytes(gzip.decompress(cpio.gzipped()))
    listing = run(["busybox", "cpio", "-t", "-F", archive]).stdout.decode().splitlines()
    assert [line for line in listing if not line.endswith(" blocks")] == ["bin", "init", "bin/data"]
    out = tmp_path / "out"
    out.mkdir()
    run(["busybox", "cpio", "-i", "-d", "-F", archive], cwd=out)
    assert (out / "bin/data").read_bytes() == b"x" * 1001
    assert (out / "init").stat().st_mode & 0o111


PROBE_LOG = (
    "\x1b[2JSeaBIOS\r\nBooting from Hard Disk..PROBE start drive 0x00000080\r\n"
    "PROBE ok ah41-extensions\r\nPROBE geometry 31 16 63\r\n"
    "PROBE FAIL ext-read-64k-boundary-8 data-mismatch-at-lba 0x00000d1f\r\n.\r\n"
    "PROBE ok last-sector\r\nPROBE note INT 13h returned with interrupts disabled\r\n"
    "PROBE tsc-kcycles-per-tick 100000\r\n"
    "PROBE tput 1 460 9 1000000\r\nPROBE tput 127 55245 9 0\r\nPATCHKIT-FAIL probe: 1 failures\r\n"
)


def test_probe_log_parses_checks_failures_geometry_and_throughput() -> None:
    report = parse_probe_log(PROBE_LOG)
    assert report.checks == ["ah41-extensions", "last-sector"]
    assert report.failures == ["ext-read-64k-boundary-8 data-mismatch-at-lba 0x00000d1f"]
    assert report.geometry == (31, 16, 63)
    assert report.notes == ["INT 13h returned with interrupts disabled"]
    # 460 sectors in 10 ticks by the TSC; the 127 line has no TSC figure: 9 BIOS ticks
    assert report.throughput_mb_s[1] == pytest.approx(460 * 512 / (10 / 18.2065) / 1e6, rel=1e-3)
    assert report.throughput_mb_s[127] == pytest.approx(55245 * 512 / (9 / 18.2065) / 1e6, rel=1e-3)


def test_probe_stamps_match_the_assembly_formula() -> None:
    sector = stamp(0x123456, 0x5AA55AA5)
    dwords = struct.unpack("<128I", sector)
    assert dwords[0] == 0x123456 ^ 0x5AA55AA5
    assert dwords[127] == ((0x123456 ^ 0x5AA55AA5) + (127 << 24)) & 0xFFFFFFFF


def test_probe_image_is_read_only_and_run_disks_get_the_token(tmp_path: Path, store: Store) -> None:
    guest = ProbeGuest(store)
    base = guest.build()
    assert stat.S_IMODE(base.stat().st_mode) == 0o444
    before = guest.image_sha256()
    disk_path = guest.make_run_disk(tmp_path / "run", "abc-1")
    data = disk_path.read_bytes()
    assert data[TOKEN_LBA * 512:TOKEN_LBA * 512 + 13] == b"PKTOKEN abc-1"
    assert data[DATA_LBA * 512:(DATA_LBA + 1) * 512] == stamp(DATA_LBA)
    assert guest.image_sha256() == before == run(["sha256sum", base]).stdout.decode().split()[0]
    # never booted: the host-side checks must fail
    assert guest.verify_disk(disk_path, "abc-1")


# --- FreeDOS import ----------------------------------------------------------------------


def _floppy(path: Path, files: dict[str, bytes]) -> Path:
    run(["mkfs.fat", "-C", path, "1440"])
    for name, data in files.items():
        fat.put_bytes(path, 0, data, name)
    return path


def test_import_refuses_a_missing_file(tmp_path: Path, store: Store) -> None:
    with pytest.raises(GuestError, match="does not exist"):
        import_media(store, tmp_path / "nope.img")


def test_import_refuses_media_without_a_fat_file_system(tmp_path: Path, store: Store) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(bytes(range(256)) * 5760)
    with pytest.raises(GuestError, match="no FAT file system"):
        import_media(store, junk)


def test_import_refuses_fat_media_without_freedos_files(tmp_path: Path, store: Store) -> None:
    media = _floppy(tmp_path / "empty.img", {"README.TXT": b"hello"})
    with pytest.raises(GuestError, match=r"no KERNEL\.SYS"):
        import_media(store, media)
    assert not inputs_dir(store).exists()


def test_import_refuses_a_kernel_and_shell_that_are_not_freedos(tmp_path: Path, store: Store) -> None:
    media = _floppy(tmp_path / "other.img", {"KERNEL.SYS": b"MZ other kernel", "COMMAND.COM": b"MZ other shell"})
    with pytest.raises(GuestError, match="not FreeDOS"):
        import_media(store, media)


def test_import_from_a_floppy_and_from_a_partitioned_disk(inputs_cache: Path, tmp_path: Path) -> None:
    real = freedos_imported()
    files = {name: (real / name).read_bytes() for name in ("KERNEL.SYS", "COMMAND.COM")}
    media = _floppy(tmp_path / "fd.img", files)
    # import into a cache of our own: the real inputs are only read
    own = Store(tmp_path / "own-cache")
    import_media(own, media)
    assert {p.name: p.read_bytes() for p in inputs_dir(own).iterdir()} == files
    key = FreedosGuest(own).image_key()
    hard_disk = FreedosGuest(own).build()  # MBR + FAT16 partition: importable media as well
    (inputs_dir(own) / "KERNEL.SYS").unlink()
    import_media(own, hard_disk)
    assert (inputs_dir(own) / "KERNEL.SYS").read_bytes() == files["KERNEL.SYS"]
    assert FreedosGuest(own).image_key() == key
    (inputs_dir(own) / "COMMAND.COM").write_bytes(files["COMMAND.COM"] + b"changed")
    assert FreedosGuest(own).image_key() != key  # new inputs, new image


def test_real_cache_untouched_by_unit_tests(store: Store) -> None:
    assert os.environ["PATCHKIT_CACHE"] != str(REAL_STORE.root)
    assert store.root != REAL_STORE.root


def test_guest_cli_lists_missing_images_with_their_commands_and_builds_probe() -> None:
    from click.testing import CliRunner

    from patchkit.cli import cli

    runner = CliRunner()
    listing = runner.invoke(cli, ["guest", "list"])
    assert listing.exit_code == 0
    assert "`patchkit guest import freedos --media PATH`" in listing.output
    assert "`patchkit guest build debian`" in listing.output
    built = runner.invoke(cli, ["guest", "build", "probe"])
    assert built.exit_code == 0, built.output
    assert "probe: " in built.output and "sha256" in built.output
    failed = runner.invoke(cli, ["guest", "import", "freedos", "--media", "/nonexistent/floppy.img"])
    assert isinstance(failed.exception, GuestError)
