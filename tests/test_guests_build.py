"""Building the Debian image from the downloaded packages, into an isolated cache."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import pytest
from conftest import REAL_STORE

from patchkit.guests import debpkgs, disk, fat
from patchkit.guests.debian import DebianGuest, known_content
from patchkit.run import run
from patchkit.store import Store

FAT_OFFSET = disk.PARTITION_START * disk.SECTOR


@pytest.fixture
def debian_debs(store: Store) -> Path:
    """The real cache's downloaded .debs, linked into the isolated cache (read only), or skip."""
    real = REAL_STORE.inputs / "debian"
    missing = [p.filename for p in debpkgs.DEBIAN_PINS if not (real / p.filename).is_file()]
    if missing:
        pytest.skip(f"Debian packages not downloaded ({', '.join(missing)}): run `patchkit guest build debian`")
    inputs = debpkgs.inputs_dir(store)
    inputs.mkdir(parents=True)
    for p in debpkgs.DEBIAN_PINS:
        os.symlink(real / p.filename, inputs / p.filename)
    return inputs


def test_debian_image_layout_and_initramfs(debian_debs: Path, tmp_path: Path, store: Store) -> None:
    messages: list[str] = []
    image = DebianGuest(store).build(messages.append)
    assert any("built in" in m for m in messages)
    data = image.read_bytes()
    assert len(data) % (disk.CYLINDER_SECTORS * disk.SECTOR) == 0
    assert data[510:512] == b"\x55\xaa" and data[446] == 0x80 and data[450] == disk.PART_FAT16
    assert struct.unpack_from("<I", data, 454)[0] == disk.PARTITION_START
    for name in ("LDLINUX.SYS", "LDLINUX.C32", "SYSLINUX.CFG", "VMLINUZ", "INITRD.GZ"):
        assert fat.get(image, FAT_OFFSET, name), name
    config = fat.get(image, FAT_OFFSET, "SYSLINUX.CFG")
    assert config is not None and b"console=ttyS0" in config
    assert fat.get(image, FAT_OFFSET, "KNOWN.BIN") == known_content()

    archive = tmp_path / "initrd.cpio"
    initrd = fat.get(image, FAT_OFFSET, "INITRD.GZ")
    assert initrd is not None
    archive.write_bytes(gzip.decompress(initrd))
    root = tmp_path / "root"
    root.mkdir()
    run(["busybox", "cpio", "-i", "-d", "-F", archive], cwd=root)
    order = (root / "modules.order").read_text().split()
    for before, after in [("virtio", "virtio_pci"), ("virtio_ring", "virtio_blk"), ("fat", "vfat"),
                          ("scsi_mod", "sd_mod"), ("libata", "ata_piix")]:
        assert order.index(before) < order.index(after), (before, after, order)
    assert all((root / "modules" / f"{m}.ko").is_file() for m in order)
    assert (root / "init").read_bytes().startswith(b"#!/bin/busybox sh")
    assert (root / "bin/busybox").stat().st_size > 500_000
