"""The debian-system guest: the installed disk's layout, its run overlays, and its own checks.

Building the image takes mmdebstrap as root and ~2 minutes: `patchkit setup` (or
`patchkit guest build debian-system`) does it once; these tests skip without it.
The boots through the series' ROM and the base ROM are in test_validate.py with the
other guests; here SeaBIOS boots it natively without its token (the negative control
of the guest's own check).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from fixtures.guests import boot_native

from patchkit.errors import MissingInputError
from patchkit.guests.debian_system import (
    DISK_BYTES,
    GRUB_DIR,
    KERNEL_ABI,
    ROOT_START,
    DebianSystemGuest,
    root_uuid,
    token_offset,
)
from patchkit.run import run
from patchkit.store import Store, sha256_file

pytestmark = pytest.mark.boot


@pytest.fixture
def system(inputs_cache: Path, store: Store) -> DebianSystemGuest:
    guest = DebianSystemGuest(store)
    try:
        guest.base_image()
    except MissingInputError as exc:
        pytest.skip(f"{exc.message}: run `patchkit setup` (as root)")
    return guest


def _ext4(image: Path, command: str) -> str:
    return run(["debugfs", "-R", command, f"{image}?offset={ROOT_START * 512}"]).stdout.decode(errors="replace")


def test_disk_layout(system: DebianSystemGuest) -> None:
    image = system.base_image()
    with open(image, "rb") as f:
        mbr = f.read(512)
        core = f.read(512)
    boot_img = (system.image_dir() / "packages.txt").read_text()
    assert f"linux-image-{KERNEL_ABI} 6.1.176-1" in boot_img and "grub-pc-bin 2.06-13+deb12u2" in boot_img
    assert image.stat().st_size == DISK_BYTES
    assert mbr[510:] == b"\x55\xaa" and b"GRUB " in mbr[:440]  # boot.img's messages
    assert struct.unpack_from("<Q", mbr, 0x5C)[0] == 1 and mbr[0x64] == 0xFF
    root, token = mbr[446:462], mbr[462:478]
    assert root[0] == 0x80 and root[4] == 0x83 and struct.unpack_from("<I", root, 8)[0] == ROOT_START
    assert token[4] == 0xDA and struct.unpack_from("<I", token, 8)[0] * 512 == token_offset()
    assert struct.unpack_from("<QHH", core, 512 - 12)[0::2] == (2, 0x820)  # diskboot.img loads the rest
    uuid = root_uuid(system.image_key())
    stats = _ext4(image, "stats")
    assert f"Filesystem UUID:          {uuid}" in stats
    grub_cfg = _ext4(image, "cat /boot/grub/grub.cfg")
    assert f"search --no-floppy --fs-uuid --set=root {uuid}" in grub_cfg and f"root=UUID={uuid} " in grub_cfg
    assert "normal.mod" in _ext4(image, "ls -l /boot/grub/i386-pc")
    assert f"UUID={uuid} / ext4" in _ext4(image, "cat /etc/fstab")
    assert "patchkit-check.service" in _ext4(image, "ls -l /etc/systemd/system/multi-user.target.wants")
    assert "virtio_blk" in _ext4(image, "cat /etc/initramfs-tools/modules")
    assert GRUB_DIR.startswith("usr/lib/grub")


def test_a_run_disk_is_an_overlay_with_the_token(system: DebianSystemGuest, tmp_path: Path) -> None:
    before = system.image_sha256()
    overlay = system.make_run_disk(tmp_path / "run", "sys-tok-1")
    raw = tmp_path / "run.raw"
    run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", overlay, raw])
    with open(raw, "rb") as f:
        f.seek(token_offset())
        assert f.read(18) == b"PKTOKEN sys-tok-1\n"
    assert system.verify_disk(overlay, "sys-tok-1") == ["the guest wrote no /var/lib/patchkit/result"]
    assert sha256_file(system.base_image()) == before  # the base image is only read


def test_without_its_token_the_check_fails_and_powers_off(system: DebianSystemGuest, tmp_path: Path) -> None:
    overlay = system.make_run_disk(tmp_path / "notoken", "sys-notoken")
    run(["qemu-io", "-f", "qcow2", "-c", f"write -q -z {token_offset()} 512", overlay])
    raw = tmp_path / "notoken.raw"  # boot_native boots raw disks
    run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", overlay, raw])
    boot = boot_native(raw, system.default_timeout)
    assert "PATCHKIT-FAIL debian-system: no token on /dev/vda2" in boot.log, boot.log[-3000:]
    assert not boot.timed_out  # it powered off
