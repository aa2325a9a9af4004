"""The store's file helpers: a sparse file's data extents and its SHA-256 (holes hashed as zeros, never read)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from patchkit.store import data_extents, sha256_file

MIB = 1 << 20


def write_file(path: Path, size: int, runs: list[tuple[int, bytes]]) -> Path:
    """A file of ``size`` bytes holding ``runs`` (offset, data); the rest is never written (holes)."""
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in runs:
            f.seek(offset)
            f.write(data)
    return path


def extents(path: Path) -> list[tuple[int, int]]:
    with open(path, "rb") as f:
        return list(data_extents(f.fileno()))


@pytest.mark.parametrize(("size", "runs", "expected"), [
    pytest.param(8 * MIB, [(2 * MIB, b"\x01" * MIB), (5 * MIB, b"\x02" * MIB)], [(2 * MIB, MIB), (5 * MIB, MIB)],
                 id="holes-at-start-middle-end"),
    pytest.param(3 * MIB, [(0, b"\x03" * MIB), (2 * MIB, b"\x04" * MIB)], [(0, MIB), (2 * MIB, MIB)],
                 id="data-at-start-and-end"),
    pytest.param(4 * MIB + 100, [(4 * MIB, b"\x05" * 100)], [(4 * MIB, 100)], id="data-ending-mid-block-at-eof"),
    pytest.param(0, [], [], id="empty"),
    pytest.param(4 * MIB, [], [], id="all-hole"),
    pytest.param(3 * MIB + 100, [(0, bytes(range(256)) * (12 * 1024) + b"\x06" * 100)], [(0, 3 * MIB + 100)],
                 id="all-data"),
])
def test_data_extents_are_the_written_runs(tmp_path: Path, size: int, runs: list[tuple[int, bytes]],
                                           expected: list[tuple[int, int]]) -> None:
    path = write_file(tmp_path / "disk.img", size, runs)
    if sum(len(data) for _, data in runs) < size and os.stat(path).st_blocks * 512 >= size:
        pytest.skip(f"{tmp_path} does not keep holes in sparse files: nothing to walk around")
    assert extents(path) == expected
    content = path.read_bytes()
    assert sha256_file(path) == hashlib.sha256(content).hexdigest()  # the holes count as zeros
    with open(path, "rb") as f:
        for offset, length in data_extents(f.fileno()):  # the data, read where the extents say
            assert os.pread(f.fileno(), length, offset) == content[offset:offset + length]


def test_a_file_growing_while_walked_is_walked_to_its_size_at_the_start(tmp_path: Path) -> None:
    path = write_file(tmp_path / "disk.img", 2 * MIB, [(0, b"\x01" * MIB)])
    with open(path, "rb") as f, open(path, "r+b") as w:
        walk = data_extents(f.fileno())
        assert next(walk) == (0, MIB)
        w.seek(3 * MIB)
        w.write(b"\x02" * MIB)
        w.flush()
        assert list(walk) == []
