"""`patchkit test --cluster` on a real Dask scheduler and two workers, separate processes on 127.0.0.1.

Each worker starts with an empty PATCHKIT_CACHE of its own and fetches what it lacks from
the client. The cluster gives the verdicts a local run gives (v2's ROM: three cells failing
for different reasons), records them under the same keys plus the worker; a worker killed mid-boot has its
task run again on the other and the cell recorded once; the cells a worker without QEMU
takes go to the other, and it is named once (when no worker can boot, every cell is not
run, naming it); SIGTERM to the command stops the boots on the workers. No QEMU is left on
any worker, and every scheduler and worker is stopped when a test ends, also when it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fixtures.cli import run_patchkit, start_patchkit
from fixtures.guests import guest_or_skip
from fixtures.processes import reaped, signal_and_wait, wait_until
from fixtures.roms import SERIES

from patchkit import store
from patchkit.errors import PatchkitError
from patchkit.project import Project
from patchkit.validate import run_tests

pytestmark = pytest.mark.boot

DASK = Path(sys.executable).parent / "dask"
START_TIMEOUT = 60.0
STOP_GRACE = 10.0


def qemus_under(directory: Path) -> list[int]:
    """PIDs of QEMU processes whose working directory (their run directory) is under ``directory``."""
    pids = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and (proc / "exe").resolve().name.startswith("qemu-system") \
                    and Path(os.readlink(proc / "cwd")).is_relative_to(directory):
                pids.append(int(proc.name))
    return pids


@dataclass
class LocalCluster:
    """A scheduler and workers started as processes; each worker has its own cache under ``root``."""

    root: Path
    address: str = ""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 (the process writes it until it ends)
        with log:
            self.processes[name] = subprocess.Popen([str(DASK), *argv], stdin=subprocess.DEVNULL, stdout=log,
                                                    stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                                    cwd=self.root, start_new_session=True)

    def start_scheduler(self) -> None:
        info = self.root / "scheduler.json"
        self.start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                 "--scheduler-file", str(info)])
        wait_until(lambda: info.is_file() and info.stat().st_size > 0, "the scheduler's address file", START_TIMEOUT)
        self.address = json.loads(info.read_text())["address"]

    def start_worker(self, name: str, env: dict[str, str] | None = None) -> None:
        (self.root / name / "cache").mkdir(parents=True)
        self.start(name, ["worker", self.address, "--name", name, "--host", "127.0.0.1", "--nthreads", "1",
                          "--no-nanny", "--no-dashboard", "--death-timeout", "30",
                          "--local-directory", str(self.root / name)],
                   {"PATCHKIT_CACHE": str(self.cache(name)), **(env or {})})

    def cache(self, worker: str) -> Path:
        return self.root / worker / "cache"

    def wait_for_workers(self, count: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=START_TIMEOUT, set_as_default=False) as client:
            client.wait_for_workers(count, timeout=START_TIMEOUT)

    def kill(self, name: str) -> None:
        """SIGKILL: the worker gets no chance to clean up (its QEMU must die with it all the same)."""
        process = self.processes[name]
        process.kill()
        process.wait()

    def stop(self) -> None:
        """Workers, then the scheduler: SIGTERM, then SIGKILL after STOP_GRACE; every one reaped."""
        for name in sorted(self.processes, key=lambda n: n == "scheduler"):
            process = self.processes[name]
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(STOP_GRACE)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A scheduler on 127.0.0.1 (no workers yet); everything started is stopped afterwards, even on failure."""
    pytest.importorskip("distributed", reason="Dask distributed is not installed: pip install 'patchkit[cluster]'")
    started = LocalCluster(tmp_path / "cluster")
    started.root.mkdir()
    try:
        started.start_scheduler()
        yield started
    finally:
        started.stop()
        left = qemus_under(started.root)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert left == [], f"QEMU left running on the workers: {left}"


@pytest.fixture
def two_workers(cluster: LocalCluster) -> LocalCluster:
    for name in ("w1", "w2"):
        cluster.start_worker(name)
    cluster.wait_for_workers(2)
    return cluster


def recorded(project: Project) -> list[store.TestResult]:
    with project.store.results() as results:
        return results.for_series(SERIES)


# v2 fails each for its own reason: q35-bare only on v2's interrupt flag (fixed by v4's patch 4/6).
V2_CONFIGS = ("q35-bare", "readonly", "queue-1024")


def test_the_cluster_gives_a_local_runs_verdicts_under_the_same_keys(inputs_cache: Path, project: Project,
                                                                     v2_rom: Path, two_workers: LocalCluster) -> None:
    guest_or_skip("probe", project.store)
    here = run_tests(project, ["all"], series_name=SERIES, configs=V2_CONFIGS, rom=v2_rom, accel="tcg", jobs=2,
                     reruns=0, progress=lambda _m: None)
    lines: list[str] = []
    there = run_tests(project, ["all"], series_name=SERIES, configs=V2_CONFIGS, rom=v2_rom, accel="tcg",
                      cluster=two_workers.address, reruns=0, progress=lines.append)

    def verdicts(results: list[store.TestResult]) -> dict[str, tuple[bool, str]]:
        """Pass or fail and the reason, without the run's own timings, token, and how many INT 13h calls
        returned with interrupts disabled (v2 returns its handler's flags; that count varies from run to run)."""
        volatile = r"\d+(\.\d+)? s\b|PATCHKIT-PASS \w+|(?<=calls-returning-with-if-clear )[0-9a-f]+"
        return {r.key.config: (r.passed, re.sub(volatile, "*", r.reason)) for r in results}

    assert verdicts(there) == verdicts(here)
    assert {c: v[0] for c, v in verdicts(there).items()} == {"q35-bare": False, "readonly": False, "queue-1024": False}
    assert "int13-returns-with-interrupts-enabled" in verdicts(there)["q35-bare"][1]
    assert {r.key for r in there} == {r.key for r in here}  # same series, revision, ROM, image, QEMU, accel, config
    assert {r.worker for r in here} == {""}
    assert {r.worker for r in there} == {"w1", "w2"}  # both idle when the cells were sent: each took some
    assert len(recorded(project)) == 6
    for result in there:
        run_dir = Path(result.run_dir)
        assert run_dir.parent == inputs_cache / "runs"
        assert {"serial.log", "screen.txt", "timings.json", "result.json", "qemu-cmdline.txt"} <= \
               {p.name for p in run_dir.iterdir()}
        assert json.loads((run_dir / "result.json").read_text())["worker"] == result.worker
        assert f"worker {result.worker}" in next(line for line in lines if result.run_dir in line)
    for worker in ("w1", "w2"):  # each fetched the probe's image and the ROM into its own empty cache
        assert any(line.startswith(f"note: worker {worker} ") and "images/probe-" in line for line in lines)
        assert (two_workers.cache(worker) / "cluster" / "roms").is_dir()
        assert list((two_workers.cache(worker) / "images").glob("probe-*/disk.img"))
        assert not (two_workers.cache(worker) / "results.sqlite").exists()


def boots_on(cluster: LocalCluster, workers: tuple[str, ...]) -> str | None:
    """The worker that is booting a QEMU now, if any."""
    return next((w for w in workers if qemus_under(cluster.cache(w))), None)


def test_a_worker_killed_mid_boot_has_its_task_run_again_on_the_other(inputs_cache: Path, project: Project,
                                                                      series_rom: Path,
                                                                      two_workers: LocalCluster) -> None:
    guest_or_skip("debian", project.store)
    outcome: list[list[store.TestResult]] = []
    lines: list[str] = []

    def run() -> None:
        outcome.append(run_tests(project, ["debian"], series_name=SERIES, rom=series_rom, accel="tcg",
                                 cluster=two_workers.address, progress=lines.append))

    client = threading.Thread(target=run)
    client.start()
    try:
        wait_until(lambda: boots_on(two_workers, ("w1", "w2")) is not None, "a QEMU booting on a worker")
        victim = boots_on(two_workers, ("w1", "w2"))
        assert victim is not None
        two_workers.kill(victim)
        wait_until(lambda: not qemus_under(two_workers.cache(victim)), "the killed worker's QEMU to die with it", 10)
    finally:
        client.join(300)
    assert not client.is_alive()
    [results] = outcome
    survivor = {"w1": "w2", "w2": "w1"}[victim]
    [result] = results
    assert result.passed and result.worker == survivor, result.reason
    assert [(r.key.guest, r.worker) for r in recorded(project)] == [("debian", survivor)]  # recorded once
    assert sum(line.startswith("PASS debian") for line in lines) == 1
    assert qemus_under(two_workers.root) == []


def shadow_path(tmp_path: Path) -> str:
    """A PATH with everything of /usr/bin but QEMU's system emulators (and the virtualenv's bin first)."""
    shadow = tmp_path / "bin-without-qemu"
    shadow.mkdir()
    for program in Path("/usr/bin").iterdir():
        if not program.name.startswith("qemu-system"):
            os.symlink(program, shadow / program.name)
    return f"{Path(sys.executable).parent}:{shadow}"


def without_qemu(cluster: LocalCluster, tmp_path: Path) -> None:
    """Start worker w2, which finds no QEMU on its PATH."""
    cluster.start_worker("w2", {"PATH": shadow_path(tmp_path)})


def test_the_cells_a_worker_without_qemu_takes_go_to_the_other_worker_and_it_is_named_once(
        inputs_cache: Path, project: Project, series_rom: Path, cluster: LocalCluster, tmp_path: Path) -> None:
    guest_or_skip("probe", project.store)
    cluster.start_worker("w1")
    without_qemu(cluster, tmp_path)
    cluster.wait_for_workers(2)
    lines: list[str] = []
    configs = ("q35", "q35-bare", "queue-64", "disks-2")
    results = run_tests(project, ["all"], series_name=SERIES, configs=configs, rom=series_rom, accel="tcg",
                        cluster=cluster.address, progress=lines.append)
    assert sorted((r.key.config, r.passed, r.worker) for r in results) == sorted((c, True, "w1") for c in configs)
    assert sorted(r.key.config for r in recorded(project)) == sorted(configs)  # each once
    said = [line for line in lines if "cannot boot" in line or line.startswith("NOT RUN")]
    note = r"note: worker w2 \(tcp://127\.0\.0\.1:\d+\) cannot boot: program not found: qemu-system-x86_64; " \
           r"its cells go to the other workers"
    assert len(said) == 1 and re.fullmatch(note, said[0]), said
    assert not (cluster.cache("w2") / "runs").exists()


def test_when_no_worker_can_boot_every_cell_is_not_run_naming_the_worker(
        inputs_cache: Path, project: Project, series_rom: Path, cluster: LocalCluster, tmp_path: Path) -> None:
    guest_or_skip("probe", project.store)
    without_qemu(cluster, tmp_path)
    cluster.wait_for_workers(1)
    lines: list[str] = []
    configs = ("q35", "q35-bare")
    with pytest.raises(PatchkitError, match=r"2 cell\(s\) could not run"):
        run_tests(project, ["all"], series_name=SERIES, configs=configs, rom=series_rom, accel="tcg",
                  cluster=cluster.address, progress=lines.append)
    not_run = [line for line in lines if line.startswith("NOT RUN ")]
    assert sorted(line.split(":")[0] for line in not_run) == sorted(f"NOT RUN {c}/probe" for c in configs)
    for line in not_run:
        assert re.search(r"worker w2 \(tcp://127\.0\.0\.1:\d+\) could not boot \S+/probe: program not found: "
                         r"qemu-system-x86_64$", line.splitlines()[0]), line
    assert not any("its cells go to" in line for line in lines)
    assert recorded(project) == []
    assert not (cluster.cache("w2") / "runs").exists()


def test_when_the_only_worker_that_can_boot_dies_its_cells_are_not_run_and_the_run_ends(
        inputs_cache: Path, project: Project, series_rom: Path, cluster: LocalCluster, tmp_path: Path) -> None:
    guest_or_skip("debian", project.store)
    guest_or_skip("probe", project.store)
    cluster.start_worker("w1")
    without_qemu(cluster, tmp_path)
    cluster.wait_for_workers(2)
    lines: list[str] = []
    errors: list[PatchkitError] = []

    def run() -> None:
        try:
            run_tests(project, ["debian", "probe"], series_name=SERIES, rom=series_rom, accel="tcg",
                      cluster=cluster.address, progress=lines.append)
        except PatchkitError as exc:
            errors.append(exc)

    client = threading.Thread(target=run)
    client.start()
    try:
        wait_until(lambda: any(" cannot boot: " in line for line in lines) and qemus_under(cluster.cache("w1")),
                   "w2 named and a QEMU booting on w1")
        cluster.kill("w1")
        wait_until(lambda: not qemus_under(cluster.cache("w1")), "the killed worker's QEMU to die with it", 10)
    finally:
        client.join(300)
    assert not client.is_alive()
    [error] = errors
    assert "could not run" in error.message
    not_run = [line for line in lines if line.startswith("NOT RUN ")]
    assert not_run  # at least the cell w1 was booting
    for line in not_run:  # w2's own message for a cell it took, else one naming the workers that cannot boot
        assert re.search(r"worker w2 \(tcp://127\.0\.0\.1:\d+\) (could not boot pc/\w+|cannot boot): "
                         r"program not found: qemu-system-x86_64\)?$", line.splitlines()[0]), line
    assert len(not_run) + len(recorded(project)) == 2
    assert all(r.passed and r.worker == "w1" for r in recorded(project))


def test_sigterm_to_the_command_stops_the_boots_on_the_workers(inputs_cache: Path, project: Project,
                                                              series_rom: Path, two_workers: LocalCluster) -> None:
    guest_or_skip("debian", project.store)
    with reaped(start_patchkit("test", "--guest", "debian", "--rom", series_rom, "--accel", "tcg",
                               "--cluster", two_workers.address, cache=inputs_cache)) as command:
        wait_until(lambda: boots_on(two_workers, ("w1", "w2")) is not None, "a QEMU booting on a worker")
        out, _ = signal_and_wait(command)
    assert command.returncode == 143, out
    assert qemus_under(two_workers.root) == []  # stopped before the command ended
    assert recorded(project) == []


def test_a_scheduler_killed_mid_run_ends_the_command_with_one_clear_line(inputs_cache: Path, project: Project,
                                                                        series_rom: Path,
                                                                        cluster: LocalCluster) -> None:
    # Issue 23, item 7: exit 3 with Dask's tracebacks after ~35 s.
    guest_or_skip("debian", project.store)
    cluster.start_worker("w1")
    cluster.wait_for_workers(1)
    with reaped(start_patchkit("test", "--guest", "debian", "--rom", series_rom, "--accel", "tcg",
                               "--cluster", cluster.address, cache=inputs_cache)) as command:
        wait_until(lambda: boots_on(cluster, ("w1",)) is not None, "a QEMU booting on the worker")
        cluster.kill("scheduler")
        out, _ = command.communicate(timeout=120)
    wait_until(lambda: not qemus_under(cluster.cache("w1")), "the worker's boot to end on its own", 300)
    assert command.returncode == 1, out
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: lost the connection to the Dask scheduler at {cluster.address}"], out
    assert "Traceback" not in out and recorded(project) == []


@pytest.mark.parametrize(("address", "message"), [
    ("not-a-url", "--cluster 'not-a-url' is not a scheduler's address"),
    ("tcp://127.0.0.1:1", "cannot reach the scheduler at tcp://127.0.0.1:1 (Connection refused)"),
    ("SMTP", "is not a Dask scheduler (it answered '220 mail')"),
])
def test_a_wrong_cluster_address_is_one_line_at_once(inputs_cache: Path, series_rom: Path, address: str,
                                                     message: str) -> None:
    pytest.importorskip("distributed", reason="Dask distributed is not installed: pip install 'patchkit[cluster]'")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        if address == "SMTP":  # something else listens there
            address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
            greeter = threading.Thread(target=lambda: server.accept()[0].sendall(b"220 mail.example ESMTP\r\n"))
            greeter.start()
        done = run_patchkit("test", "--guest", "debian", "--rom", series_rom, "--cluster", address,
                            cache=inputs_cache, timeout=30)  # it took 60 s or more
    assert done.returncode == 1, done.stdout
    assert message in done.stdout and "Traceback" not in done.stdout, done.stdout
