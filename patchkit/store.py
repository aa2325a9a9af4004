"""patchkit's cache directory (``Store``): where inputs, trees, builds, images and results live.

The CLI builds one ``Store`` from ``$PATCHKIT_CACHE``, else ``$XDG_CACHE_HOME/patchkit``,
else ``~/.cache/patchkit``, and passes it down (tests pass ``Store(tmp_path)``). Nothing
in it is project content; nothing in the repository points into it.

Layout::

    upstream/<name>.git      bare mirror of a pinned upstream (patchkit vendor)
    trees/<name>/            the work tree the series is applied in (patchkit apply)
    builds/<key>/            build logs and checked ROMs, keyed by tree content + settings
    inputs/                  imported third-party media (FreeDOS kernel/shell, Debian .debs)
    images/<kind>-<hash>/    guest base images, keyed by content (never written after creation)
    runs/<id>/               per-run artifacts of `patchkit test`
    results.sqlite           test results keyed by revision, ROM, guest, configuration, image, QEMU, accelerator
    mail/<series>/journal    send-email journals
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import itertools
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from patchkit.errors import MissingInputError, PatchkitError

_CHUNK = 1 << 20  # bytes read (or zeros hashed) at a time
_SECTOR = 512  # sparse_digest's unit


@dataclass(frozen=True)
class Store:
    """The cache directory ``root`` and the places in it; built once (``from_environment``) and passed down.

    Nothing is created until something is written there.
    """

    root: Path

    @classmethod
    def from_environment(cls) -> Store:
        """``$PATCHKIT_CACHE``, else ``$XDG_CACHE_HOME/patchkit``, else ``~/.cache/patchkit``."""
        if env := os.environ.get("PATCHKIT_CACHE"):
            return cls(Path(env).expanduser())
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return cls(Path(xdg) / "patchkit")

    def mirror(self, name: str) -> Path:
        """The bare mirror of upstream ``name``."""
        return self.root / "upstream" / f"{name}.git"

    def imported_mirror(self, name: str) -> Path:
        """The mirror of upstream ``name`` once imported; MissingInputError when it has not been."""
        path = self.mirror(name)
        if not (path / "HEAD").is_file():
            raise MissingInputError(
                f"the {name} upstream is not imported ({path} is missing): run `patchkit vendor`",
                hint="`patchkit vendor` clones the pinned URL; `patchkit vendor --from PATH` imports a mirror offline",
            )
        return path

    def tree(self, name: str) -> Path:
        """A work tree (the series', or ``<upstream>.base`` / ``<series>.each-patch``)."""
        return self.root / "trees" / name

    @property
    def builds(self) -> Path:
        return self.root / "builds"

    @property
    def inputs(self) -> Path:
        """Imported third-party media, one directory per kind (``freedos``, ``debian``)."""
        return self.root / "inputs"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def cluster(self) -> Path:
        """What a cluster worker fetched by content (its ROMs, its lock)."""
        return self.root / "cluster"

    def mail(self, series: str) -> Path:
        """Send-email journals and imported replies of ``series``."""
        return self.root / "mail" / series

    @property
    def crash_log(self) -> Path:
        return self.root / "crash.log"

    def contains(self, path: Path) -> bool:
        """Whether ``path`` is in the cache (both resolved)."""
        root, target = self.root.resolve(), path.resolve()
        return target == root or root in target.parents

    def results(self) -> Results:
        """The results database, opened (a context manager: close it)."""
        return Results(self.root / "results.sqlite")


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` via a temporary file and os.replace (never a half file).

    An OSError without a file name (a full disk while writing) is raised again naming ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


_HELD: dict[tuple[str, int], int] = {}  # (lock path, thread) -> how many nested file_lock blocks hold it


@contextlib.contextmanager
def file_lock(path: Path, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing).

    Re-entrant within a thread: a block nested in one holding the same lock goes on
    (flock would otherwise wait for itself). ``waiting`` is called once when another
    process holds the lock, before waiting for it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with _flock(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, waiting):
        yield


@contextlib.contextmanager
def dir_lock(path: Path, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """file_lock on the directory ``path`` itself: nothing is added to it, and a file renamed into it
    (atomic_write) does not change what is locked."""
    with _flock(path, os.O_RDONLY | os.O_DIRECTORY, waiting):
        yield


@contextlib.contextmanager
def _flock(path: Path, flags: int, waiting: Callable[[], None] | None) -> Iterator[None]:
    key = (os.path.realpath(path), threading.get_ident())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    fd = os.open(path, flags, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def build_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``final``; move it into place on success.

    On failure the half-built directory is removed, so ``final`` either exists
    complete or not at all.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        yield tmp
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        else:
            final.unlink(missing_ok=True)  # a file in the way (a damaged cache entry)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def data_extents(fd: int) -> Iterator[tuple[int, int]]:
    """The data runs of the open file ``fd`` as (offset, length), in order; the rest of the file is holes (zeros).

    Found with SEEK_DATA / SEEK_HOLE, so a sparse file's holes are never read. A file system
    that cannot tell (EINVAL, EOPNOTSUPP) gives the rest of the file as one run. A run may
    hold zeros too (allocated but unwritten blocks). Reads must not rely on ``fd``'s position
    (it moves here): use os.pread.
    """
    size = os.fstat(fd).st_size
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                return
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise
            yield offset, size - offset
            return
        if start >= size:  # the file grew since fstat: its size then is what is walked
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end - start
        offset = end


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's content; the holes of a sparse file (a guest disk) are hashed without reading."""
    h = hashlib.sha256()
    zeros = memoryview(bytes(_CHUNK))
    with open(path, "rb") as f:
        fd = f.fileno()
        offset = 0
        for start, length in itertools.chain(data_extents(fd), [(os.fstat(fd).st_size, 0)]):
            while offset < start:  # a hole
                step = min(_CHUNK, start - offset)
                h.update(zeros[:step])
                offset += step
            while offset < start + length:
                chunk = os.pread(fd, min(_CHUNK, start + length - offset), offset)
                if not chunk:  # the file shrank under us
                    return h.hexdigest()
                h.update(chunk)
                offset += len(chunk)
    return h.hexdigest()


def sparse_digest(path: Path) -> str:
    """SHA-256 over a file's size and its non-zero 512-byte sectors with their offsets (equal digests: equal content).

    Only the data extents are read: a sparse disk image's holes cost nothing. The shaped probe
    images' content key, and how a run disk is checked against its image (guests/base.py).
    """
    h = hashlib.sha256(f"sparse {path.stat().st_size}\n".encode())
    zero = bytes(_SECTOR)
    with open(path, "rb") as f:
        fd = f.fileno()
        for start, length in data_extents(fd):
            offset, end = start - start % _SECTOR, start + length
            while offset < end:
                chunk = os.pread(fd, min(end - offset, _CHUNK), offset)
                if not chunk:  # the file shrank under us
                    break
                for n in range(0, len(chunk), _SECTOR):
                    sector = chunk[n:n + _SECTOR]
                    if sector != zero:
                        h.update((offset + n).to_bytes(8, "little") + sector)
                offset += len(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class ResultKey:
    """What a test result is about: change any of these and the result no longer applies."""

    series: str
    revision: str  # content hash of the series revision (Series.revision_hash()), or "reference"
    rom_sha256: str  # "" for --reference runs (SeaBIOS boots the disk)
    guest: str  # freedos | debian | probe | ...
    image_sha256: str
    qemu_version: str
    accel: str  # the accelerator that actually ran: kvm | tcg
    config: str = "pc"  # the series configuration (machine, disks, boot order) it ran on


@dataclass
class TestResult:
    """One recorded `patchkit test` outcome."""

    key: ResultKey
    passed: bool
    reason: str
    run_dir: str
    timings: dict[str, float] = field(default_factory=dict)
    rom_size: int = 0
    version: int = 0  # series version number the revision was tested as
    created: float = field(default_factory=time.time)
    worker: str = ""  # the cluster worker that booted it (patchkit test --cluster); "" for this machine


_COLUMNS = ("series", "revision", "rom_sha256", "guest", "image_sha256", "qemu_version", "accel", "config",
            "passed", "reason", "run_dir", "timings", "rom_size", "version", "created", "worker")


class Results:
    """The results database (sqlite, in the cache).

    A database from before configurations existed gains a ``config`` column on opening;
    its rows ran on what is now the implicit configuration "pc". One from before clusters
    gains a ``worker`` column: its rows ran on this machine ("").
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._guard():
            self._db = sqlite3.connect(self.path, timeout=30)
            self._create()

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """sqlite's errors as what the user can do about them (a full disk, a damaged database)."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "full" in str(exc):
                raise PatchkitError(f"no space left to write the results database {self.path} ({exc})",
                                    hint=f"free space in {self.path.parent}, then run again") from exc
            raise self._damaged(exc) from exc
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc

    def _damaged(self, exc: sqlite3.Error) -> PatchkitError:
        return PatchkitError(f"the results database {self.path} is damaged or unreadable ({exc})",
                             hint=f"move it aside (`mv {self.path} {self.path}.bad`): patchkit starts a new one, "
                                  "without the results recorded in it (test again what send-email needs)")

    def _create(self) -> None:
        with self._db:
            self._db.execute(
                """CREATE TABLE IF NOT EXISTS results (
                    series TEXT, revision TEXT, rom_sha256 TEXT, guest TEXT, image_sha256 TEXT,
                    qemu_version TEXT, accel TEXT, passed INTEGER, reason TEXT, run_dir TEXT,
                    timings TEXT, rom_size INTEGER, version INTEGER, created REAL,
                    config TEXT NOT NULL DEFAULT 'pc', worker TEXT NOT NULL DEFAULT '')"""
            )
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(results)")}
            if "config" not in columns:
                self._db.execute("ALTER TABLE results ADD COLUMN config TEXT NOT NULL DEFAULT 'pc'")
            if "worker" not in columns:
                self._db.execute("ALTER TABLE results ADD COLUMN worker TEXT NOT NULL DEFAULT ''")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, result: TestResult) -> None:
        k = result.key
        with self._guard(), self._db:
            self._db.execute(
                f"INSERT INTO results ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                (k.series, k.revision, k.rom_sha256, k.guest, k.image_sha256, k.qemu_version, k.accel, k.config,
                 int(result.passed), result.reason, result.run_dir,
                 json.dumps(result.timings), result.rom_size, result.version, result.created, result.worker),
            )

    def for_revision(self, series: str, revision: str) -> list[TestResult]:
        """All results for one series revision, newest first."""
        with self._guard():
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM results WHERE series=? AND revision=? ORDER BY created DESC",
                (series, revision),
            ).fetchall()
        return [self._row(r) for r in rows]

    def for_series(self, series: str) -> list[TestResult]:
        """All results for a series, newest first."""
        with self._guard():
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM results WHERE series=? ORDER BY created DESC", (series,)
            ).fetchall()
        return [self._row(r) for r in rows]

    def latest_by_guest(self, series: str, revision: str, config: str = "pc") -> dict[str, TestResult]:
        """The newest result per guest for one revision on one configuration."""
        return {guest: r for (c, guest), r in self.latest_by_cell(series, revision).items() if c == config}

    def latest_by_cell(self, series: str, revision: str) -> dict[tuple[str, str], TestResult]:
        """The newest result per (configuration, guest) for one revision."""
        latest: dict[tuple[str, str], TestResult] = {}
        for r in self.for_revision(series, revision):
            latest.setdefault((r.key.config, r.key.guest), r)
        return latest

    def durations(self, series: str) -> dict[tuple[str, str], float]:
        """Seconds (timings' total) the newest boot of each (configuration, guest) of ``series`` took, a
        passing one where there is one."""
        with self._guard():
            rows = self._db.execute("SELECT config, guest, timings FROM results WHERE series=? "
                                    "ORDER BY passed DESC, created DESC", (series,)).fetchall()
        durations: dict[tuple[str, str], float] = {}
        for config, guest, timings in rows:
            total = json.loads(timings).get("total")
            if isinstance(total, int | float):
                durations.setdefault((config, guest), float(total))
        return durations

    @staticmethod
    def _row(row: tuple[Any, ...]) -> TestResult:
        key = ResultKey(*row[:8])
        return TestResult(
            key=key, passed=bool(row[8]), reason=row[9], run_dir=row[10],
            timings=json.loads(row[11]), rom_size=row[12], version=row[13], created=row[14], worker=row[15],
        )


def result_to_json(result: TestResult) -> dict[str, Any]:
    """A JSON-ready dict of a result."""
    return asdict(result)
