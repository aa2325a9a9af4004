"""What travels between `patchkit test --cluster` and a worker: one boot's task and its report.

A task names its files by content (patchkit.cluster.blobs): the ROM (none for a --reference
boot), the guest's base image and the files beside it (a keep-san guest's boot floppy). The
guest itself is named, with the configuration it runs on: the worker makes the same variant
the client planned (patchkit.matrix.plan_cells). The report is the boot's outcome as a local
run records it, the worker that booted, its QEMU, and the run directory's artifacts (without
disk images) as a tar archive; or why the cell could not run there (and whether that is the
worker's own fault, so that another worker may boot it), or which files the worker needs first.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from patchkit.cluster.blobs import Blob, check_name
from patchkit.errors import ClusterError
from patchkit.guests.image import ImageSpec
from patchkit.series.model import Config
from patchkit.store import atomic_write

FORMAT = 1  # of tasks and reports: a worker refuses a task of another format
DISK_SUFFIXES = (".img", ".qcow2", ".raw")  # run disks and blank disks stay on the worker
ARTIFACTS_LIMIT = 64 << 20  # bytes of artifacts a report may carry


@dataclass(frozen=True)
class BootTask:
    """One cell to boot: the guest on a configuration, through a ROM, its files by content."""

    run: str  # the client's run: names the datasets its blobs are published under and its stop event
    cell: str  # config/guest, for messages
    guest: str
    config: Config
    image: Blob  # the base image, installed as images/<image_dir>/<image.name>
    image_dir: str
    rom: Blob | None = None  # None: SeaBIOS boots the disk natively (--reference)
    beside: tuple[Blob, ...] = ()  # files the guest reads beside its image (a boot floppy)
    user_image: ImageSpec | None = None  # a user's image (--image, a manifest's [[images]]) instead of a guest
    root_path: str | None = None
    accel: str = "auto"
    timeout: float | None = None
    stall_timeout: float = 60.0
    format: int = FORMAT

    def __post_init__(self) -> None:
        check_name(self.image_dir)

    @property
    def blobs(self) -> list[Blob]:
        return [*([self.rom] if self.rom else []), self.image, *self.beside]


@dataclass
class BootReport:
    """What a worker sends back for a task."""

    worker: str  # its name (its address when it has none)
    address: str
    need: list[str] = field(default_factory=list)  # content keys to publish first; the task then runs again
    error: str = ""  # the cell could not run on this worker, and why (no QEMU, a missing program, ...)
    cannot_boot: str = ""  # set with error when the worker itself cannot boot (no QEMU, ...): the cell may go elsewhere
    passed: bool = False
    reason: str = ""
    accel: str = ""
    qemu_version: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    run_dir: str = ""  # on the worker
    artifacts: bytes = b""  # tar.gz of the run directory, disk images left out
    fetched: list[str] = field(default_factory=list)  # the files this task fetched from the client

    @property
    def who(self) -> str:
        """The worker as messages name it."""
        return self.worker if self.worker == self.address else f"{self.worker} ({self.address})"


def pack_artifacts(run_dir: Path) -> bytes:
    """The run directory's files as tar.gz, without disk images (they stay on the worker)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(run_dir.iterdir()):
            if path.is_file() and not path.is_symlink() and path.suffix not in DISK_SUFFIXES:
                tar.add(path, arcname=path.name)
    data = buffer.getvalue()
    if len(data) > ARTIFACTS_LIMIT:
        raise ClusterError(f"the artifacts of {run_dir} are {len(data)} bytes packed: more than a report carries",
                           hint=f"they stay on the worker in {run_dir}")
    return data


def unpack_artifacts(report: BootReport, runs: Path) -> Path:
    """The report's artifacts in a new directory under ``runs`` (named as on the worker), its result.json
    pointing there and naming the worker."""
    name = check_name(Path(report.run_dir).name or "remote-run")
    local = runs / name
    n = 1
    while local.exists():
        n += 1
        local = runs / f"{name}-{n}"
    local.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(report.artifacts), mode="r:gz") as tar:
        for member in tar.getmembers():  # plain files with plain names only (pack_artifacts makes no other)
            source = tar.extractfile(member) if member.isfile() else None
            if source is None:
                raise ClusterError(f"the artifacts of {report.run_dir} hold {member.name!r}, which is not a file")
            with source:
                atomic_write(local / check_name(member.name), source.read())
    result = local / "result.json"
    record = json.loads(result.read_text()) if result.is_file() else {}
    record.update(run_dir=str(local), worker=report.worker, worker_address=report.address,
                  worker_run_dir=report.run_dir)
    result.write_text(json.dumps(record, indent=2) + "\n")
    return local
