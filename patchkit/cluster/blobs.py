"""Files a cluster worker gets from the client by content: the ROM, a guest's base image, files beside it.

A blob is named by its content key: the SHA-256 a local run records (for a shaped probe disk,
the guest's sparse digest). Its payload is the file's size and its data extents, so the holes
of a sparse disk are never read or sent. The worker writes a payload to a new sparse file,
checks the key before anything uses it, and moves it into place read-only. No Dask here.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from patchkit.errors import ClusterError
from patchkit.store import data_extents

CHUNK = 1 << 20
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}")  # a file or directory name a task may give


@dataclass(frozen=True)
class Blob:
    """A file by content: its key and the name it is installed under."""

    key: str
    name: str

    def __post_init__(self) -> None:
        check_name(self.name)


@dataclass(frozen=True)
class Payload:
    """A file's content as sent: its size and its data extents (offset, bytes); the rest reads as zeros."""

    size: int
    extents: tuple[tuple[int, bytes], ...]

    @property
    def data_bytes(self) -> int:
        return sum(len(data) for _, data in self.extents)


def check_name(name: str) -> str:
    """``name`` if it is a plain file name (no path, no dot-dot); ClusterError otherwise."""
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise ClusterError(f"a cluster task names the file {name!r}: only plain names are accepted")
    return name


def pack(path: Path) -> Payload:
    """The payload of ``path``: its data extents (store.data_extents), the holes left out."""
    extents: list[tuple[int, bytes]] = []
    with open(path, "rb") as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        for offset, length in data_extents(fd):
            data = b"".join(os.pread(fd, min(CHUNK, offset + length - at), at)
                            for at in range(offset, offset + length, CHUNK))
            if data:
                extents.append((offset, data))
            if len(data) < length:  # the file shrank under us
                break
    return Payload(size, tuple(extents))


def install(payload: Payload, dest: Path, key: str, digest: Callable[[Path], str]) -> Path:
    """Write ``payload`` to ``dest`` (sparse, read-only) once ``digest`` of it is ``key``.

    The file is written beside ``dest`` and moved into place only when it matches, so
    ``dest`` is either the blob or untouched. ClusterError when the content does not match.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.truncate(payload.size)
            for offset, data in payload.extents:
                f.seek(offset)
                f.write(data)
        found = digest(tmp)
        if found != key:
            raise ClusterError(f"{dest.name} arrived with content key {found[:16]}…, not {key[:16]}…: not used",
                               hint="the client's file changed while it was sent, or the transfer was damaged: "
                                    "run again")
        tmp.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return dest
