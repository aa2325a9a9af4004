"""FAT file access inside a partitioned image with mtools (``-i IMAGE@@OFFSET``), no mounting."""

from __future__ import annotations

import tempfile
from pathlib import Path

from patchkit.run import CommandError, run

MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1"}


def spec(image: Path, offset: int) -> str:
    """The mtools drive spec for the FAT file system at byte ``offset`` of ``image``."""
    return f"{image}@@{offset}"


def put(image: Path, offset: int, src: Path, name: str) -> None:
    """Copy host file ``src`` to ``name`` (path from the root) in the file system, replacing it."""
    run(["mcopy", "-o", "-i", spec(image, offset), src, f"::{name}"], env=MTOOLS_ENV)


def put_bytes(image: Path, offset: int, data: bytes, name: str) -> None:
    """Write ``data`` as file ``name`` in the file system, replacing it."""
    run(["mcopy", "-o", "-i", spec(image, offset), "-", f"::{name}"], env=MTOOLS_ENV, input=data)


def get(image: Path, offset: int, name: str) -> bytes | None:
    """The content of file ``name``, or None when it does not exist."""
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "file"
        try:
            run(["mcopy", "-n", "-i", spec(image, offset), f"::{name}", dest], env=MTOOLS_ENV)
        except CommandError:
            return None
        return dest.read_bytes()


def delete(image: Path, offset: int, name: str) -> None:
    """Delete file ``name`` from the file system."""
    run(["mdel", "-i", spec(image, offset), f"::{name}"], env=MTOOLS_ENV)

