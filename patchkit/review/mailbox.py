"""Reading messages from what users have: mbox files, maildirs, single saved mails, directories.

- a maildir (a directory with ``cur/`` or ``new/``): every message in it;
- another directory: every regular file in it (sorted), each read as below;
- a file starting with an mbox ``From `` line (``b4 mbox``, ``git format-patch --stdout``,
  a folder exported by a mail client): every message in it, split on ``From <who> <date>`` lines;
- any other file: one message (``.eml`` as mail clients save them).

Only regular files (or symlinks to them) of at most MAX_BYTES are read: a FIFO or a device
would block or never end.

Each message comes with where it was found (``file``, ``file#N`` for the Nth of an
mbox), so problems can name it.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_SEPARATOR = re.compile(rb"^From \S+ .*\d")
MAX_BYTES = 256 << 20  # a mail file or mailbox read at most: beyond, it is refused (memory)


@dataclass(frozen=True)
class RawMail:
    """One message's bytes and where it came from."""

    where: str
    data: bytes


@dataclass(frozen=True)
class ReadProblem:
    """A path that could not be read as mail."""

    where: str
    problem: str


def read_paths(paths: list[Path]) -> tuple[list[RawMail], list[ReadProblem]]:
    """All messages found in ``paths``, in order, and the paths that gave none."""
    mails: list[RawMail] = []
    problems: list[ReadProblem] = []
    for path in paths:
        for item in _read(path):
            if isinstance(item, RawMail):
                mails.append(item)
            else:
                problems.append(item)
    return mails, problems


def _read(path: Path) -> Iterator[RawMail | ReadProblem]:
    if not path.exists():
        yield ReadProblem(str(path), "no such file or directory")
    elif path.is_dir() and ((path / "cur").is_dir() or (path / "new").is_dir()):
        yield from _maildir(path)
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            yield ReadProblem(str(path), "an empty directory (not a maildir: no cur/ or new/)")
        for f in files:
            yield from _read(f)
    else:
        data = read_regular(path)
        if isinstance(data, ReadProblem):
            yield data
        elif data.startswith(b"From ") and not data.startswith(b"From: "):
            yield from _mbox(path, data)
        elif not data.strip():
            yield ReadProblem(str(path), "empty file")
        else:
            yield RawMail(str(path), data)


def read_regular(path: Path, limit: int = MAX_BYTES) -> bytes | ReadProblem:
    """The bytes of regular file ``path`` (a symlink to one is fine), at most ``limit``: a FIFO would block
    and /dev/zero never end, so anything else is a ReadProblem, and so is a larger file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return ReadProblem(str(path), f"cannot be read: {exc.strerror}")
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                    else "not a regular file")
            return ReadProblem(str(path), f"{kind}: only regular files are read as mail")
        too_big = ReadProblem(str(path), f"larger than {limit >> 20} MiB: not read (split the mailbox)")
        if os.fstat(fd).st_size > limit:
            return too_big
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            return ReadProblem(str(path), f"cannot be read: {exc.strerror}")
    if len(data) > limit:
        return too_big
    return data


def _maildir(path: Path) -> Iterator[RawMail | ReadProblem]:
    """A maildir's messages (cur/ and new/), by their keys: the file names up to maildir's ``:`` info."""
    files = sorted((f.name.split(":")[0], f) for sub in ("cur", "new") if (path / sub).is_dir()
                   for f in (path / sub).iterdir() if not f.name.startswith("."))
    if not files:
        yield ReadProblem(str(path), "an empty maildir")
    for key, f in files:
        data = read_regular(f)
        where = f"{path}/{key}"
        yield ReadProblem(where, data.problem) if isinstance(data, ReadProblem) else RawMail(where, data)


def _mbox(path: Path, data: bytes) -> Iterator[RawMail]:
    """Split an mbox on its ``From <sender> <date>`` lines (``>From `` in bodies unquoted one level).

    No blank line is required before a separator: b4 writes none after a message
    that does not end with an empty line.
    """
    lines = data.split(b"\n")
    start: int | None = None
    count = 0
    for i, line in enumerate([*lines, b"From end 0"]):
        if _SEPARATOR.match(line):
            if start is not None:
                body = lines[start:i]
                while body and body[-1] == b"":
                    body.pop()
                count += 1
                yield RawMail(f"{path}#{count}", b"\n".join(_unquote_from(body)) + b"\n")
            start = i + 1


def _unquote_from(lines: list[bytes]) -> list[bytes]:
    out = []
    for line in lines:
        stripped = line.lstrip(b">")
        out.append(line[1:] if stripped.startswith(b"From ") and line.startswith(b">") else line)
    return out
