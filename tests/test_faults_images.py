"""A damaged guest image is refused (or rebuilt), blaming the image: never a result under its old hash.

The tests damage a private copy of the user's FreeDOS image (never the real one), or a
probe image built in the test's cache: a changed byte in the MBR's boot code, and a
truncated tail. Run disks are checked by their sparse digest once the image's is known.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from fixtures.cli import run_patchkit
from fixtures.guests import guest_or_skip

from patchkit.errors import GuestError
from patchkit.guests import Guest, get_guest
from patchkit.guests.base import SPARSE_NAME
from patchkit.store import Store, sparse_digest

pytestmark = pytest.mark.boot

@pytest.fixture
def own_image(inputs_cache: Path, store: Store) -> Guest:
    """The FreeDOS guest with its base image copied into the test's cache (the copy may be damaged)."""
    linked = inputs_cache / "images"
    real = linked.resolve()
    guest = guest_or_skip("freedos", store)
    linked.unlink()
    linked.mkdir()
    name = guest.image_dir().name
    subprocess.run(["cp", "-a", "--sparse=always", str(real / name), str(linked / name)], check=True)
    return guest


def damage(image: Path, how: str) -> None:
    image.chmod(0o644)
    if how == "mbr-byte":
        with open(image, "r+b") as f:
            f.seek(0x10)
            byte = f.read(1)
            f.seek(0x10)
            f.write(bytes([byte[0] ^ 0xFF]))
    else:
        with open(image, "r+b") as f:
            f.truncate(os.path.getsize(image) - 512 * 63)
    image.chmod(0o444)


def recorded(store: Store) -> list:
    if not (store.root / "results.sqlite").exists():
        return []
    with store.results() as results:
        return results.for_series("gpxe-virtio-blk")


@pytest.mark.parametrize("how", ["mbr-byte", "truncated"])
def test_a_damaged_image_is_refused_and_nothing_recorded(own_image: Guest, store: Store, how: str) -> None:
    image = own_image.base_image()
    damage(image, how)
    done = run_patchkit("test", "--reference", "--guest", "freedos")
    assert done.returncode == 1, done.stdout
    assert f"the freedos guest image {image} is damaged" in done.stdout
    assert "patchkit guest build freedos" in done.stdout
    assert "PASS" not in done.stdout and "FAIL" not in done.stdout
    assert recorded(store) == []


def test_guest_build_replaces_a_damaged_image(own_image: Guest, store: Store) -> None:
    image = own_image.base_image()
    damage(image, "mbr-byte")
    built = run_patchkit("guest", "build", "freedos")
    assert built.returncode == 0, built.stdout
    assert "damaged" in built.stdout
    done = run_patchkit("test", "--reference", "--guest", "freedos")
    assert done.returncode == 0, done.stdout
    assert "PASS freedos" in done.stdout
    [result] = recorded(store)
    assert result.passed and result.key.image_sha256 == own_image.image_sha256()


@pytest.mark.parametrize("how", ["mbr-byte", "truncated"])
def test_damage_is_found_once_run_disks_are_checked_by_their_sparse_digest(own_image: Guest, tmp_path: Path,
                                                                           how: str) -> None:
    image = own_image.base_image()
    (image.parent / SPARSE_NAME).unlink(missing_ok=True)  # the private copy as built before sparse digests
    own_image.make_run_disk(tmp_path / "intact", "intact")  # its SHA-256 matched: its sparse digest is known now
    damage(image, how)
    with pytest.raises(GuestError, match=f"the freedos guest image {image} is damaged"):
        own_image.make_run_disk(tmp_path / "damaged", "damaged")
    assert not (tmp_path / "damaged" / "freedos.img").exists()


def test_a_new_image_records_its_sparse_digest_and_damage_is_still_found(store: Store, tmp_path: Path) -> None:
    guest = get_guest("probe", store)
    image = guest.build()
    assert (image.parent / SPARSE_NAME).read_text() == sparse_digest(image) + "\n"
    guest.make_run_disk(tmp_path / "intact", "intact")
    damage(image, "mbr-byte")
    with pytest.raises(GuestError, match=f"the probe guest image {image} is damaged"):
        guest.make_run_disk(tmp_path / "damaged", "damaged")
