"""Boot every guest with SeaBIOS natively under TCG (no option ROM) and check its verdicts.

Each guest has a negative control: a run disk without its token (or with corrupt
data) must fail the marker check and the host-side disk check, and removing the
file the guest wrote must fail the disk check. Boots are bounded by the guest's
default timeout; QEMU is always killed and reaped.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.guests import PROBE_CHECKS, Boot, boot_native, freedos_imported, passed

from patchkit.errors import MissingInputError
from patchkit.guests import debpkgs, disk, fat, get_guest
from patchkit.guests.base import Guest
from patchkit.guests.probe import DATA_LBA, TOKEN_LBA, parse_probe_log, stamp
from patchkit.store import Store, sha256_file

pytestmark = pytest.mark.boot

FAT_OFFSET = disk.PARTITION_START * disk.SECTOR


def _ready(name: str, store: Store) -> Guest:
    """The guest with its base image in ``store``: from the real cache (inputs_cache), built if its inputs are there."""
    guest = get_guest(name, store)
    if name == "freedos":
        freedos_imported()
    if name == "debian":
        missing = [p.filename for p in debpkgs.DEBIAN_PINS if not (debpkgs.inputs_dir(store) / p.filename).is_file()]
        try:
            guest.base_image()
        except MissingInputError:
            if missing:
                pytest.skip(f"Debian packages not downloaded ({', '.join(missing)}): run `patchkit guest build debian`")
    guest.build()
    return guest


def _boot(guest: Guest, tmp_path: Path, token: str, spoil=None) -> tuple[Path, Boot]:
    run_disk = guest.make_run_disk(tmp_path / token, token)
    if spoil is not None:
        spoil(run_disk)
    return run_disk, boot_native(run_disk, guest.default_timeout)


# --- probe ----------------------------------------------------------------------------


def test_probe_passes_every_int13_check_and_reports_throughput(tmp_path: Path, store: Store) -> None:
    guest = _ready("probe", store)
    base_sha = guest.image_sha256()
    run_disk, boot = _boot(guest, tmp_path, "probe-ok-1")
    report = parse_probe_log(boot.log)
    assert not boot.timed_out, boot.log[-2000:]
    assert report.failures == []
    assert report.checks == PROBE_CHECKS
    assert report.geometry is not None and report.geometry[1:] == (disk.HEADS, disk.SECTORS_PER_TRACK)
    assert sorted(report.throughput_mb_s) == [1, 8, 64, 127]
    assert passed(guest, boot, "probe-ok-1")
    assert guest.verify_disk(run_disk, "probe-ok-1") == []
    assert sha256_file(guest.base_image()) == base_sha  # the base is never written
    print(f"probe boot {boot.seconds:.1f} s, MB/s {report.throughput_mb_s}")


def test_probe_reports_a_sector_with_wrong_content(tmp_path: Path, store: Store) -> None:
    bad_lba = DATA_LBA + 3000 + 8 * 37  # the first sector of the 8-sector AH=42 read

    def corrupt(run_disk: Path) -> None:
        with open(run_disk, "r+b") as f:
            f.seek(bad_lba * disk.SECTOR)
            f.write(stamp(bad_lba + 1))

    guest = _ready("probe", store)
    run_disk, boot = _boot(guest, tmp_path, "probe-bad-1", corrupt)
    report = parse_probe_log(boot.log)
    assert report.failures == [f"ext-read-64k-boundary-8 data-mismatch-at-lba 0x{bad_lba:08x}"]
    assert "PATCHKIT-FAIL probe: 1 failures" in boot.log
    assert not passed(guest, boot, "probe-bad-1")
    assert guest.verify_disk(run_disk, "probe-bad-1")


def test_probe_without_its_token_fails(tmp_path: Path, store: Store) -> None:
    def drop_token(run_disk: Path) -> None:
        with open(run_disk, "r+b") as f:
            f.seek(TOKEN_LBA * disk.SECTOR)
            f.write(bytes(disk.SECTOR))

    guest = _ready("probe", store)
    run_disk, boot = _boot(guest, tmp_path, "probe-notoken", drop_token)
    assert "PATCHKIT-FAIL probe: no token" in boot.log
    assert not passed(guest, boot, "probe-notoken")
    assert guest.verify_disk(run_disk, "probe-notoken")


# --- FreeDOS --------------------------------------------------------------------------


def test_freedos_writes_its_result_and_copy_then_powers_off(inputs_cache: Path, tmp_path: Path, store: Store) -> None:
    guest = _ready("freedos", store)
    run_disk, boot = _boot(guest, tmp_path, "dos-ok-1")
    assert not boot.timed_out, boot.log[-2000:]  # POWEROFF.COM switched QEMU off
    assert passed(guest, boot, "dos-ok-1")
    assert guest.verify_disk(run_disk, "dos-ok-1") == []
    assert guest.verify_disk(run_disk, "dos-ok-2")  # another run's token
    fat.delete(run_disk, FAT_OFFSET, "RESULT.TXT")
    assert guest.verify_disk(run_disk, "dos-ok-1") == ["the guest wrote no RESULT.TXT"]
    print(f"freedos boot {boot.seconds:.1f} s")


def test_freedos_without_its_token_file_fails(inputs_cache: Path, tmp_path: Path, store: Store) -> None:
    guest = _ready("freedos", store)
    run_disk, boot = _boot(guest, tmp_path, "dos-notoken", lambda d: fat.delete(d, FAT_OFFSET, "TOKEN.BAT"))
    assert "PATCHKIT-FAIL no TOKEN.BAT" in boot.log
    assert not passed(guest, boot, "dos-notoken")
    assert guest.verify_disk(run_disk, "dos-notoken")


# --- Debian ---------------------------------------------------------------------------


def test_debian_reads_the_known_file_and_writes_its_result(inputs_cache: Path, tmp_path: Path, store: Store) -> None:
    guest = _ready("debian", store)
    run_disk, boot = _boot(guest, tmp_path, "deb-ok-1")
    assert not boot.timed_out, boot.log[-2000:]
    assert passed(guest, boot, "deb-ok-1")
    assert guest.verify_disk(run_disk, "deb-ok-1") == []
    fat.delete(run_disk, FAT_OFFSET, "RESULT.TXT")
    assert guest.verify_disk(run_disk, "deb-ok-1") == ["the guest wrote no RESULT.TXT"]
    print(f"debian boot {boot.seconds:.1f} s")


def test_debian_without_its_token_file_fails(inputs_cache: Path, tmp_path: Path, store: Store) -> None:
    guest = _ready("debian", store)
    run_disk, boot = _boot(guest, tmp_path, "deb-notoken", lambda d: fat.delete(d, FAT_OFFSET, "TOKEN.TXT"))
    assert "PATCHKIT-FAIL no TOKEN.TXT" in boot.log
    assert not passed(guest, boot, "deb-notoken")
    assert guest.verify_disk(run_disk, "deb-notoken")


def test_debian_finds_its_disk_behind_a_blank_virtio_disk(inputs_cache: Path, tmp_path: Path, store: Store) -> None:
    guest = _ready("debian", store)
    run_disk = guest.make_run_disk(tmp_path / "blank", "deb-blank-1")
    boot = boot_native(run_disk, guest.default_timeout, blank_at="03.0")  # the blank disk is vda
    assert "the guest disk is /dev/vdb1" in boot.log
    assert passed(guest, boot, "deb-blank-1")
    assert guest.verify_disk(run_disk, "deb-blank-1") == []
