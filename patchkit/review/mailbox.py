"""Reading messages from what users have: mbox files, maildirs, single saved mails, directories.

- a maildir (a directory with ``cur/`` or ``new/``): every message in it;
- another directory: every regular file in it (sorted), each read as below;
- a file starting with an mbox ``From `` line (``b4 mbox``, ``git format-patch --stdout``,
  a folder exported by a mail client): every message in it, split on ``From <who> <date>`` lines;
- any other file: one message (``.eml`` as mail clients save them).

Each message comes with where it was found (``file``, ``file#N`` for the Nth of an
mbox), so problems can name it.
"""

from __future__ import annotations

import mailbox
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_SEPARATOR = re.compile(rb"^From \S+ .*\d")


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
        try:
            data = path.read_bytes()
        except OSError as exc:
            yield ReadProblem(str(path), f"cannot be read: {exc.strerror}")
            return
        if data.startswith(b"From ") and not data.startswith(b"From: "):
            yield from _mbox(path, data)
        elif not data.strip():
            yield ReadProblem(str(path), "empty file")
        else:
            yield RawMail(str(path), data)


def _maildir(path: Path) -> Iterator[RawMail | ReadProblem]:
    box = mailbox.Maildir(path, factory=None, create=False)
    keys = sorted(box.keys())
    if not keys:
        yield ReadProblem(str(path), "an empty maildir")
    for key in keys:
        try:
            with box.get_file(key) as f:
                yield RawMail(f"{path}/{key}", f.read())
        except OSError as exc:
            yield ReadProblem(f"{path}/{key}", f"cannot be read: {exc.strerror}")


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
