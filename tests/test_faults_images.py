"""A damaged guest image is refused (or rebuilt), blaming the image: never a result under its old hash.

The tests damage a private copy of the user's FreeDOS image (never the real one):
a changed byte in the MBR's boot code, and a truncated tail.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from fixtures.cli import run_patchkit
from fixtures.guests import guest_or_skip

from patchkit.guests import Guest
from patchkit.store import Store

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
