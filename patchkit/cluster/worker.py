"""A worker's side of `patchkit test --cluster`: one boot per task, in the worker's own cache.

boot_task runs in a Dask worker's task thread; the worker has patchkit and QEMU and its own
PATCHKIT_CACHE. The files a task names are looked up there by content: the ROM in
``cluster/roms/<key>/``, the base image and the files beside it in ``images/<dir>/`` as a
local build leaves them. What is missing is fetched from the client (the dataset it
published for its run under the file's key; a key it has not published goes back in the
report's ``need``), checked against its key and installed read-only: a base image is never
written, each boot works on a copy or an overlay in its run directory. The boot is the local
one (patchkit.boot.run.boot_planned_async) in an event loop of the task's thread; the run's
stop event (set by a client that is interrupted) stops it and its QEMU. A worker that cannot
boot at all (no QEMU, KVM asked for and not usable, a task of another format) says so in the
report's ``cannot_boot``, and the client sends the cell to another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from patchkit.boot.run import BootOutcome, boot_planned_async
from patchkit.cluster import engine
from patchkit.cluster.blobs import Blob, Payload, install
from patchkit.cluster.task import FORMAT, BootReport, BootTask, pack_artifacts
from patchkit.errors import ClusterError, PatchkitError
from patchkit.guests import Guest, get_guest
from patchkit.guests.base import DISK_NAME
from patchkit.guests.image import ImageGuest
from patchkit.qemu.machine import qemu_version
from patchkit.store import Store, atomic_write, file_lock, sha256_file

FETCH_TIMEOUT = 600.0  # seconds for one file to arrive
FETCH_POLL = 2.0  # a fetch looks again for the dataset this often (the client republishes a lost one)
STOP_POLL = 1.0  # a boot looks at the run's stop event this often


def dataset_name(run: str, key: str) -> str:
    """The dataset a client publishes a blob under for its run."""
    return f"patchkit-{run}-blob-{key}"


def stop_event_name(run: str) -> str:
    """The Dask event a client sets to stop its run's boots."""
    return f"patchkit-{run}-stop"


class Stopped(Exception):
    """The client set the run's stop event: the boot was stopped."""


def boot_task(task: BootTask) -> BootReport:
    """Boot ``task`` on this worker; what happened, as a report (this never raises for a cell's problem)."""
    name, address = engine.this_worker()
    report = BootReport(worker=name, address=address)
    try:
        report.qemu_version = _able_to_boot(task)
    except PatchkitError as exc:
        report.cannot_boot = exc.message
        report.error = f"worker {report.who} could not boot {task.cell}: {exc}"
        return report
    try:
        prepared = _prepare(Store.from_environment(), task, report)  # the worker's own cache
        if prepared is None:
            return report
        guest, rom = prepared
        stopped = engine.event_checker(stop_event_name(task.run))
        if stopped():  # a task that was still queued when the client stopped its run
            raise Stopped
        outcome = asyncio.run(_boot(task, guest, rom, stopped))
    except Stopped:
        report.error = f"stopped on worker {report.who}: the client ended the run"
        return report
    except PatchkitError as exc:
        report.error = f"worker {report.who} could not boot {task.cell}: {exc}"
        return report
    report.passed, report.reason, report.accel = outcome.passed, outcome.reason, outcome.accel
    report.timings, report.notes, report.run_dir = outcome.timings, outcome.notes, str(outcome.run_dir)
    report.artifacts = pack_artifacts(outcome.run_dir)
    return report


def _able_to_boot(task: BootTask) -> str:
    """This worker's QEMU version; a PatchkitError when this worker cannot boot ``task`` whatever its cell (no
    QEMU, KVM asked for and not usable, a task of another format)."""
    if task.format != FORMAT:
        raise ClusterError(f"its patchkit runs tasks of format {FORMAT}, not {task.format}",
                           hint="install the client's patchkit version there")
    version = qemu_version()
    if task.accel == "kvm" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise ClusterError("KVM was asked for (--accel kvm) and /dev/kvm is not usable here")
    return version


def _prepare(store: Store, task: BootTask, report: BootReport) -> tuple[Guest, Path | None] | None:
    """The guest and ROM of ``task`` with their files in this cache, fetching what is missing.

    None when the client has yet to publish some (their keys are in ``report.need``).
    """
    images = store.images / task.image_dir
    guest = None if task.user_image else get_guest(task.guest, store).variant(disk_shape=task.config.disk_shape,
                                                                             read_only=task.config.readonly)
    image_digest = guest.image_digest if guest is not None else sha256_file
    rom_path = store.cluster / "roms" / task.rom.key / task.rom.name if task.rom else None
    wanted: list[tuple[Blob, Path, Callable[[Path], str]]] = [(task.image, images / task.image.name, image_digest)]
    wanted += [(blob, images / blob.name, sha256_file) for blob in task.beside]
    if task.rom is not None and rom_path is not None:
        wanted.append((task.rom, rom_path, sha256_file))
    with file_lock(store.cluster / ".fetch.lock"):
        missing = [(blob, path, digest) for blob, path, digest in wanted if not _present(blob, path, digest)]
        report.need = [blob.key for blob, _, _ in missing if engine.dataset(dataset_name(task.run, blob.key)) is None]
        if report.need:
            return None
        for blob, path, digest in missing:
            payload = _fetch(task.run, blob)
            install(payload, path, blob.key, digest)
            atomic_write(_recorded(path), blob.key + "\n")
            where = path.relative_to(store.root)
            report.fetched.append(f"{where} ({payload.data_bytes:,} bytes of data)")
    if task.user_image is not None:
        spec = replace(task.user_image, path=images / task.image.name, name=task.user_image.guest_name,
                       image_dirs=(), backing_anywhere=False)
        user = ImageGuest(store, spec)
        if len(user.chain) > 1:  # a client sends one file: a backing file would be one of this machine's
            raise ClusterError(f"{task.guest}: the image sent names a backing file ({user.chain[1].path}): refused")
        return user, rom_path
    assert guest is not None
    if task.image.name != DISK_NAME:
        raise ClusterError(f"the {task.guest} guest's image must be sent as {DISK_NAME}, not {task.image.name}")
    guest.pin_image_dir(images)
    return guest, rom_path


def _recorded(path: Path) -> Path:
    """Where a file's content key is recorded (for a base image: what Guest.image_sha256 reads)."""
    return path.with_name(f"{path.name}.sha256")


def _present(blob: Blob, path: Path, digest: Callable[[Path], str]) -> bool:
    """Whether ``path`` holds ``blob``: its recorded key, or for a small file its content, is the blob's."""
    if not path.is_file():
        return False
    recorded = _recorded(path)
    if recorded.is_file():
        return recorded.read_text().strip() == blob.key
    return path.stat().st_size <= 4 << 20 and digest(path) == blob.key


def _fetch(run: str, blob: Blob) -> Payload:
    """The payload of ``blob`` from the client; the dataset is looked up again while waiting, since the
    client publishes a blob again when the worker holding it left."""
    deadline = time.monotonic() + FETCH_TIMEOUT
    while time.monotonic() < deadline:
        published = engine.dataset(dataset_name(run, blob.key))
        if published is None:
            break
        with contextlib.suppress(TimeoutError):
            payload = engine.fetch(published, FETCH_POLL)
            if not isinstance(payload, Payload):
                raise ClusterError(f"the client sent {type(payload).__name__} for {blob.name}, not its content")
            return payload
    raise ClusterError(f"{blob.name} ({blob.key[:16]}…) could not be fetched from the client",
                       hint="the client stopped publishing it, or the worker holding it left: run again")


async def _boot(task: BootTask, guest: Guest, rom: Path | None, stopped: Callable[[], bool]) -> BootOutcome:
    """The local boot of ``guest``; Stopped (its QEMU stopped) once ``stopped()`` says so."""
    boot = asyncio.create_task(boot_planned_async(guest, rom=rom, config=task.config, root_path=task.root_path,
                                                  accel=task.accel, timeout=task.timeout,
                                                  stall_timeout=task.stall_timeout))
    while True:
        done, _ = await asyncio.wait({boot}, timeout=STOP_POLL)
        if done:
            return boot.result()
        if await asyncio.to_thread(stopped):
            boot.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await boot
            raise Stopped
