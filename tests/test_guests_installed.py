"""The freedos-installed guest: FAT boot sectors, importing installation images, the disk, native boots.

The boots here are SeaBIOS booting the disk itself (the reference path, which must
pass: SeaBIOS reports the partition table's 255 heads on this disk); the runs through
the series' ROM and the base ROM are in test_validate.py with the other guests.
Negative controls: a run disk without its token, and a partition table whose CHS
start misses the boot sector (the MBR reads by CHS only).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from conftest import REAL_STORE
from fixtures.guests import boot_native, freedos_imported, passed

from patchkit.errors import GuestError, MissingInputError
from patchkit.guests import fat, fatboot, get_guest
from patchkit.guests.freedos import BOOT_SECTOR, import_media, inputs_dir
from patchkit.guests.freedos_installed import (
    CYLINDER,
    DISK_CYLINDERS,
    DOS_START,
    FreedosInstalledGuest,
    chs,
    fat_layout,
    imported_boot_sector,
)
from patchkit.run import run
from patchkit.store import Store

OFFSET = DOS_START * 512


def _fresh_fat(tmp_path: Path, fat_type: int, kib: int, cluster: int) -> bytes:
    """The boot sector mkfs.fat writes for a file system of that type and size."""
    image = tmp_path / f"fat{fat_type}-{kib}.img"
    run(["mkfs.fat", "-F", str(fat_type), "-s", str(cluster), "-C", image, str(kib)])
    return image.read_bytes()[:512]


def _hard_disk(path: Path, fat_type: int, part_type: int, cluster: int, files: dict[str, bytes]) -> Path:
    """An installation-like image: MBR with one FAT partition at LBA 2048 holding ``files``."""
    sectors = 80 * 2048  # 80 MiB: FAT32 needs 65525 clusters
    with open(path, "wb") as f:
        f.truncate(sectors * 512)
        f.seek(446)
        f.write(bytes([0x80, 0, 0, 0, part_type, 0, 0, 0]) + struct.pack("<II", 2048, sectors - 2048))
        f.seek(510)
        f.write(b"\x55\xaa")
    run(["mkfs.fat", "-F", str(fat_type), "-s", str(cluster), "--offset=2048", path, str((sectors - 2048) // 2)])
    for name, data in files.items():
        fat.put_bytes(path, 2048 * 512, data, name)
    return path


@pytest.fixture
def freedos_boot_sector() -> bytes:
    """FreeDOS's boot sector from the real cache's import (read only), or skip."""
    freedos_imported()
    real = inputs_dir(REAL_STORE) / BOOT_SECTOR
    if not real.is_file():
        pytest.skip(f"FreeDOS's boot sector not imported ({real} missing): run "
                    "`patchkit guest import freedos --media PATH` again with FreeDOS boot media")
    return real.read_bytes()


@pytest.fixture
def installed(inputs_cache: Path, store: Store, freedos_boot_sector: bytes) -> FreedosInstalledGuest:
    guest = FreedosInstalledGuest(store)
    guest.build()
    return guest


# --- boot sectors ------------------------------------------------------------------------


def test_the_fat_type_comes_from_the_cluster_count(tmp_path: Path) -> None:
    assert fatboot.parse_bpb(_fresh_fat(tmp_path, 12, 1440, 1)).fat_type == 12
    assert fatboot.parse_bpb(_fresh_fat(tmp_path, 16, 16 * 1024, 2)).fat_type == 16
    assert fatboot.parse_bpb(_fresh_fat(tmp_path, 32, 64 * 1024, 1)).fat_type == 32
    with pytest.raises(GuestError, match="no 55AA"):
        fatboot.parse_bpb(bytes(512))
    with pytest.raises(GuestError, match="not a FAT boot sector"):
        fatboot.parse_bpb(bytes(510) + b"\x55\xaa")


def test_transplant_keeps_the_new_bpb_and_takes_jump_and_code(tmp_path: Path) -> None:
    code = bytearray(_fresh_fat(tmp_path, 16, 16 * 1024, 2))
    code[0x3E:0x1FE] = bytes([0x90]) * (0x1FE - 0x3E)
    fresh = _fresh_fat(tmp_path, 16, 20 * 1024, 2)
    moved = fatboot.transplant(bytes(code), fresh, 0x80)
    assert moved[:3] == code[:3] and moved[0x3E:] == code[0x3E:]
    assert moved[3:0x24] == fresh[3:0x24] and moved[0x24] == 0x80 and moved[0x25:0x3E] == fresh[0x25:0x3E]
    with pytest.raises(GuestError, match="boot code is for FAT16, the file system is FAT12"):
        fatboot.transplant(bytes(code), _fresh_fat(tmp_path, 12, 1440, 1), 0x80)
    code[0:3] = b"\xeb\x10\x90"
    with pytest.raises(GuestError, match="inside the FAT16 BPB"):
        fatboot.transplant(bytes(code), fresh, 0x80)


def test_layout_per_fat_type_and_fat32_is_refused(tmp_path: Path) -> None:
    assert fat_layout(_fresh_fat(tmp_path, 12, 1440, 1)) == (12, 0x01, 2, 8)
    assert fat_layout(_fresh_fat(tmp_path, 16, 16 * 1024, 2)) == (16, 0x06, 2, 2)
    with pytest.raises(GuestError, match="FAT32: the freedos-installed guest builds FAT12 or FAT16"):
        fat_layout(_fresh_fat(tmp_path, 32, 64 * 1024, 1))


def test_chs_in_255_heads() -> None:
    assert chs(63) == bytes([1, 1, 0])
    assert chs(CYLINDER) == bytes([0, 1, 1])  # cylinder 1, head 0, sector 1
    assert chs(300 * CYLINDER - 1) == bytes([254, 0x40 | 63, 0x2B])  # cylinder 299 = 0x12B
    assert chs(1100 * CYLINDER) == bytes([254, 0xFF, 0xFF])


# --- import ------------------------------------------------------------------------------


def test_the_guest_names_the_import_when_the_boot_sector_is_missing(tmp_path: Path, store: Store) -> None:
    with pytest.raises(MissingInputError, match="FreeDOS is not imported"):
        get_guest("freedos-installed", store).image_key()
    inputs_dir(store).mkdir(parents=True)
    for name in ("KERNEL.SYS", "COMMAND.COM"):
        (inputs_dir(store) / name).write_bytes(b"FreeDOS " + name.encode())
    with pytest.raises(MissingInputError, match="no FreeDOS boot sector imported") as err:
        imported_boot_sector(store)
    assert "patchkit guest import freedos --media PATH" in str(err.value)


def test_import_from_installation_images(installed: FreedosInstalledGuest, tmp_path: Path,
                                         freedos_boot_sector: bytes) -> None:
    real = inputs_dir(REAL_STORE)
    files = {name: (real / name).read_bytes() for name in ("KERNEL.SYS", "COMMAND.COM")}
    image = installed.base_image()
    own = Store(tmp_path / "own-cache")  # import into a cache of our own
    import_media(own, image)  # the FAT12 partition is the second entry, after a non-DOS one
    assert (inputs_dir(own) / BOOT_SECTOR).read_bytes()[0x3E:] == freedos_boot_sector[0x3E:]
    assert {n: (inputs_dir(own) / n).read_bytes() for n in files} == files
    for fat_type, part_type, cluster in ((16, 0x0E, 4), (32, 0x0C, 1)):  # made here from the floppy's files
        media = _hard_disk(tmp_path / f"hd{fat_type}.img", fat_type, part_type, cluster, files)
        messages: list[str] = []
        import_media(own, media, messages.append)
        assert {n: (inputs_dir(own) / n).read_bytes() for n in files} == files
        assert not (inputs_dir(own) / BOOT_SECTOR).exists()  # mkfs.fat's boot code is not FreeDOS's
        assert "not FreeDOS's" in messages[0]


# --- the disk ----------------------------------------------------------------------------


def test_disk_layout(installed: FreedosInstalledGuest, freedos_boot_sector: bytes) -> None:
    image = installed.base_image()
    assert os.path.getsize(image) == DISK_CYLINDERS * CYLINDER * 512
    assert os.stat(image).st_blocks * 512 < 4 << 20  # sparse
    with open(image, "rb") as f:
        mbr = f.read(512)
        f.seek(OFFSET)
        boot = f.read(512)
    assert b"MBR: Missing operating system" in mbr[:440] and mbr[510:] == b"\x55\xaa"
    utility, dos = mbr[446:462], mbr[462:478]
    assert utility[0] == 0 and utility[4] == 0xDA
    assert dos[0] == 0x80 and dos[4] == 0x01 and dos[1:4] == bytes([0, 1, 1])  # FAT12, CHS 1/0/1
    assert struct.unpack_from("<II", dos, 8) == (CYLINDER, 2 * CYLINDER)
    assert dos[5:8] == bytes([254, 63, 2])  # ends on cylinder 2, head 254, sector 63
    bpb = fatboot.parse_bpb(boot)
    assert (bpb.hidden, bpb.heads, bpb.sectors_per_track, boot[0x24]) == (CYLINDER, 255, 63, 0x80)
    assert boot[:3] == freedos_boot_sector[:3] and boot[0x3E:] == freedos_boot_sector[0x3E:]
    assert fat.get(image, OFFSET, "KERNEL.SYS") == (inputs_dir(REAL_STORE) / "KERNEL.SYS").read_bytes()


# --- native boots ------------------------------------------------------------------------


def test_seabios_boots_it_through_the_mbr_and_freedos_boot_sector(installed: FreedosInstalledGuest,
                                                                   tmp_path: Path) -> None:
    run_disk = installed.make_run_disk(tmp_path / "ok", "inst-ok-1")
    boot = boot_native(run_disk, installed.default_timeout)
    assert not boot.timed_out, boot.log[-2000:]
    assert passed(installed, boot, "inst-ok-1")
    assert "C: HD1, Pri[ 2], CHS=    1-0-1" in boot.log  # FreeDOS took the partition on cylinder 1
    assert installed.verify_disk(run_disk, "inst-ok-1") == []
    print(f"freedos-installed boot {boot.seconds:.1f} s")


def test_without_its_token_file_it_fails(installed: FreedosInstalledGuest, tmp_path: Path) -> None:
    run_disk = installed.make_run_disk(tmp_path / "notoken", "inst-notoken")
    fat.delete(run_disk, OFFSET, "TOKEN.BAT")
    boot = boot_native(run_disk, installed.default_timeout)
    assert "PATCHKIT-FAIL no TOKEN.BAT" in boot.log
    assert not passed(installed, boot, "inst-notoken")
    assert installed.verify_disk(run_disk, "inst-notoken")


def test_the_mbr_reads_by_chs(installed: FreedosInstalledGuest, tmp_path: Path) -> None:
    """A start CHS one cylinder off (the LBA field still right) makes the MBR miss the boot sector."""
    run_disk = installed.make_run_disk(tmp_path / "chs", "inst-chs")
    with open(run_disk, "r+b") as f:
        f.seek(462 + 1)
        f.write(chs(2 * CYLINDER))  # cylinder 2: inside the FAT, no 55AA there
    boot = boot_native(run_disk, 25)  # the MBR halts after its message (SeaBIOS may reach it late on a busy host)
    assert "MBR: Missing operating system" in boot.log
    assert not passed(installed, boot, "inst-chs")
