"""An append-only journal file: one JSON object a line, each written whole (one ``write`` on an ``O_APPEND``
descriptor, then ``fsync``); a torn last line (power lost mid-write) is ignored on read and closed before the
next record. The mailer's send journals are such files (patchkit.mailer.journal), and review/ reads them from here.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from patchkit.errors import MailError
from patchkit.store import file_lock


class JournalError(MailError):
    """The send journal could not be written."""

    def __init__(self, path: Path, exc: OSError) -> None:
        self.path = path
        self.reason = exc.strerror or str(exc)
        super().__init__(f"cannot write the send journal {path}: {self.reason}",
                         hint=f"free space in {path.parent} (or fix its permissions), then run again")


class JournalFile:
    """The journal at ``path``: append records, read them back."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def locked(self) -> Iterator[Self]:
        """Hold the journal's lock: one send of a series version at a time."""
        with file_lock(self.path.with_suffix(".lock")):
            yield self

    def append(self, record: dict[str, Any]) -> None:
        """Durably append one record (adds ``time``); JournalError when it cannot be written."""
        line = json.dumps({**record, "time": time.time()}, sort_keys=True) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = "\n" + line  # end a torn line first, so this record stays whole
                data = line.encode("utf-8")
                if os.write(fd, data) != len(data):
                    raise OSError(errno.ENOSPC, "short write", str(self.path))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise JournalError(self.path, exc) from exc

    def records(self) -> list[dict[str, Any]]:
        """All whole records, oldest first."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line: the write it belonged to never completed
        return out
