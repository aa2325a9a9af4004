"""`patchkit test --cluster ADDRESS`: a run's boots as tasks of a Dask cluster.

One task per boot (patchkit.cluster.task.BootTask, run by patchkit.cluster.worker.boot_task on
the worker the scheduler picks; each worker boots as many at once as it has threads). Files go
by content: a worker that lacks one says so (its report's ``need``); the client then scatters
the file's payload into the cluster, publishes it as a dataset named after the run and the
file's key, and submits the task again. A published file whose holder left the cluster is
scattered again. A worker that dies mid-boot: the scheduler runs its task elsewhere, and the
client records each cell once, when its task ends. A worker that cannot boot at all (its
report's ``cannot_boot``: no QEMU, ...) is left out from then on: its cells, and every cell sent
again, go only to the other workers of the moment (again to those present when all of them
left); a cell is not run only when no other worker is left. ^C or SIGTERM sets the run's stop
event (the workers stop those boots and their QEMUs), cancels what is queued and closes the
connection.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from patchkit.boot.run import BootOutcome
from patchkit.cluster.blobs import Blob, pack
from patchkit.cluster.engine import Cluster, Job, killed_worker
from patchkit.cluster.task import BootReport, BootTask, unpack_artifacts
from patchkit.cluster.worker import boot_task, dataset_name, stop_event_name
from patchkit.errors import ClusterError
from patchkit.guests.base import DISK_NAME
from patchkit.guests.image import ImageGuest
from patchkit.matrix import Cell
from patchkit.progress import Progress
from patchkit.store import sha256_file

WATCH = 1.0  # seconds between looks at published files whose holder left
MAX_ASKS = 5  # times a cell's task may come back needing files before the cell is given up
STOP_GRACE = 15.0  # after ^C: for the workers to stop the boots they were running
USER_IMAGE = "image"  # a user's image on a worker (its own name may be anything)


@dataclass(frozen=True)
class RemoteCell:
    """A cell and what it boots through: the ROM (None: SeaBIOS natively) and its content key."""

    cell: Cell
    rom: Path | None
    rom_key: str


@dataclass(frozen=True)
class BootOptions:
    """What `patchkit test` was asked for, the same for every cell."""

    root_path: str | None
    accel: str
    timeout: float | None
    stall_timeout: float


Record = Callable[[Cell, BootOutcome, str, str], None]  # the cell, its outcome, the worker's QEMU, the worker
NotRun = Callable[[Cell, str], None]  # the cell, why it could not run


class _Publisher:
    """The run's files in the cluster by content key: scattered and published when a worker asks."""

    def __init__(self, cluster: Cluster, run: str, sources: dict[str, Path]) -> None:
        self.cluster, self.run, self.sources = cluster, run, sources
        self.held: dict[str, Job[object]] = {}

    def publish(self, key: str) -> None:
        """Scatter the file with content ``key`` and publish it (again if its holder left)."""
        held = self.held.get(key)
        if held is not None and held.status == "finished":
            return
        if key not in self.sources:
            raise ClusterError(f"a worker asked for {key[:16]}…, which this run does not send")
        self.held[key] = self.cluster.publish(dataset_name(self.run, key), pack(self.sources[key]))

    def republish_lost(self) -> None:
        """Publish again every file whose holder left the cluster."""
        for key, held in list(self.held.items()):
            if held.status != "finished":
                self.publish(key)

    def close(self) -> None:
        for key in self.held:
            self.cluster.unpublish(dataset_name(self.run, key))
        self.held.clear()


def make_task(run: str, remote: RemoteCell, options: BootOptions) -> tuple[BootTask, dict[str, Path]]:
    """The task of one cell, and the local files behind its content keys."""
    guest, config = remote.cell.guest, remote.cell.config
    image = guest.base_image()
    image_key = guest.image_sha256()
    sources = {image_key: image}
    user = guest.spec if isinstance(guest, ImageGuest) else None
    if isinstance(guest, ImageGuest) and len(guest.chain) > 1:
        raise ClusterError(f"{guest.name}: a worker gets the image file alone, not its backing chain "
                           f"({guest.describe_chain()})",
                           hint=f"flatten it for the cluster: qemu-img convert -O qcow2 {image} flat.qcow2")
    beside: list[Blob] = []
    floppy = guest.boot_floppy()
    if floppy is not None:
        key = sha256_file(floppy)
        beside.append(Blob(key, floppy.name))
        sources[key] = floppy
    rom = None
    if remote.rom is not None:
        rom = Blob(remote.rom_key, remote.rom.name)
        sources[remote.rom_key] = remote.rom
    task = BootTask(run=run, cell=remote.cell.name, guest=guest.name, config=config,
                    image=Blob(image_key, USER_IMAGE if user else DISK_NAME),
                    image_dir=f"user-{image_key[:16]}" if user else guest.image_dir().name, rom=rom,
                    beside=tuple(beside), user_image=user, root_path=options.root_path, accel=options.accel,
                    timeout=options.timeout, stall_timeout=options.stall_timeout)
    return task, sources


def boot_on_cluster(cluster: Cluster, cells: Sequence[RemoteCell], options: BootOptions, *, runs: Path,
                    record: Record, not_run: NotRun, progress: Progress) -> None:
    """Boot ``cells`` on ``cluster``; each ends in ``record`` or ``not_run``, once, its artifacts in ``runs``."""
    run = secrets.token_hex(6)
    tasks: list[tuple[RemoteCell, BootTask]] = []
    sources: dict[str, Path] = {}
    for remote in cells:
        task, files = make_task(run, remote, options)
        tasks.append((remote, task))
        sources.update(files)
    publisher = _Publisher(cluster, run, sources)
    asks = [0] * len(tasks)
    sent = [0] * len(tasks)
    pending: dict[Job[BootReport], int] = {}
    unable: dict[str, str] = {}  # the workers that cannot boot, by address: "worker W cannot boot: why"
    told: set[str] = set()  # those the user was told about
    refused: dict[int, str] = {}  # a cell's error from the last worker that could not boot it
    held: dict[int, set[str]] = {}  # a pending cell's task restricted to these workers (those that can boot)

    def send(n: int) -> bool:
        """Submit cell ``n``'s task, not to the workers that cannot boot; False (the cell not run) when no other
        worker is left."""
        on = None
        if unable:
            on = cluster.workers() - unable.keys()
            if not on:
                why = refused.get(n) or f"no worker that can boot it is left ({'; '.join(unable.values())})"
                not_run(tasks[n][0].cell, why)
                return False
            held[n] = on
        sent[n] += 1
        pending[cluster.submit(boot_task, tasks[n][1], key=f"patchkit-{run}-{n}-{sent[n]}", on=on)] = n
        return True

    def send_stranded() -> None:
        """Send again the cells held for workers that have all left the cluster."""
        present = cluster.workers()
        for job, n in [(j, n) for j, n in pending.items() if n in held and not j.done()]:
            if not held[n] & present:
                cluster.cancel([job])
                del pending[job], held[n]
                send(n)

    try:
        for n in range(len(tasks)):
            send(n)
        while pending:
            cluster.wait_any(list(pending), WATCH)
            publisher.republish_lost()
            if held:
                send_stranded()
            for job in [j for j in pending if j.done()]:
                n = pending.pop(job)
                held.pop(n, None)
                remote = tasks[n][0]
                report = _report(job, remote, not_run)
                if report is None:
                    continue
                if report.cannot_boot:
                    refused[n] = report.error
                    unable.setdefault(report.address, f"worker {report.who} cannot boot: {report.cannot_boot}")
                    if send(n) and report.address not in told:
                        told.add(report.address)
                        progress(f"note: {unable[report.address]}; its cells go to the other workers")
                elif report.need:
                    asks[n] += 1
                    if asks[n] > MAX_ASKS:
                        not_run(remote.cell, f"worker {report.who} still lacked files after {MAX_ASKS} tries")
                        continue
                    for key in report.need:
                        publisher.publish(key)
                    send(n)
                elif report.error:
                    not_run(remote.cell, report.error)
                else:
                    for fetched in report.fetched:
                        progress(f"note: worker {report.who} fetched {fetched} from this machine")
                    local = unpack_artifacts(report, runs)
                    record(remote.cell, BootOutcome(report.passed, report.reason, report.accel, local,
                                                    report.timings, report.notes),
                           report.qemu_version, report.worker)
    except BaseException:  # ^C, SIGTERM, a bug: the workers stop this run's boots before the client leaves
        if not cluster.connected():
            raise  # the scheduler is gone: nothing to tell the workers through it
        cluster.set_event(stop_event_name(run))
        cluster.wait_all(list(pending), STOP_GRACE)
        cluster.cancel(list(pending))
        raise
    finally:
        publisher.close()


def _report(job: Job[BootReport], remote: RemoteCell, not_run: NotRun) -> BootReport | None:
    """The report of a finished task; None (and the cell not run, with why) when the task itself failed."""
    if job.status == "finished":
        return job.result()
    exc = job.exception() if job.status == "error" else None
    if exc is None:
        not_run(remote.cell, f"its task ended {job.status} on the cluster")
    elif (died := killed_worker(exc)) is not None:
        not_run(remote.cell, f"every worker that took its task died ({died})")
    else:
        not_run(remote.cell, f"its task failed on the cluster: {type(exc).__name__}: {exc}")
    return None
