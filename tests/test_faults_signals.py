"""Signals at controlled points of `patchkit test`: no QEMU, vblade or network namespace outlives it.

Each test starts the command as a separate process, waits until QEMU runs in the
run directory (and vblade serves the AoE disk), then sends a real signal. Whatever
a failing test leaves behind is killed by the test itself.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.cli import start_patchkit
from fixtures.guests import guest_or_skip
from fixtures.processes import kill_processes_in, processes_in, reaped, signal_and_wait, wait_until

from patchkit.qemu.aoe import aoe_target, aoe_unavailable
from patchkit.store import Store

pytestmark = pytest.mark.boot


def namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listing.splitlines() if line.startswith("patchkit-")}


def namespace_pids(netns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


@contextlib.contextmanager
def command(cache: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`patchkit ARGS` as its own process; anything it leaves running is killed afterwards."""
    try:
        with reaped(start_patchkit(*args, cache=cache, merged=False)) as proc:
            yield proc
    finally:
        kill_processes_in((cache / "runs").glob("*"))


def booting(cache: Path, proc: subprocess.Popen[str], wanted: int = 1) -> Path:
    """The run directory once ``wanted`` processes (QEMU, vblade) run there and the guest printed."""
    found: list[Path] = []

    def up() -> bool:
        assert proc.poll() is None, proc.communicate()
        logs = [log for log in (cache / "runs").glob("*/serial.log") if log.stat().st_size > 0]
        found[:] = [log.parent for log in logs if len(processes_in(log.parent)) >= wanted]
        return bool(found)

    wait_until(up, "QEMU to start and the guest to print")
    return found[0]


def test_sigterm_stops_qemu_like_ctrl_c(inputs_cache: Path, store: Store) -> None:
    guest_or_skip("debian", store)
    with command(inputs_cache, "test", "--reference", "--guest", "debian") as proc:
        run_dir = booting(inputs_cache, proc)
        out, err = signal_and_wait(proc)
        assert proc.returncode == 128 + signal.SIGTERM, out + err
        assert "Terminated." in err and "Traceback" not in err
        assert processes_in(run_dir) == []


def test_qemu_dies_with_a_killed_patchkit(inputs_cache: Path, store: Store) -> None:
    guest_or_skip("debian", store)
    with command(inputs_cache, "test", "--reference", "--guest", "debian") as proc:
        run_dir = booting(inputs_cache, proc)
        proc.kill()
        proc.wait()
        wait_until(lambda: processes_in(run_dir) == [], "QEMU to die with patchkit", limit=30)


@pytest.fixture
def aoe_ready(inputs_cache: Path, store: Store) -> None:
    if (reason := aoe_unavailable()) is not None:
        pytest.skip(reason)
    guest_or_skip("probe", store)


def test_sigterm_during_an_aoe_boot_leaves_no_vblade_or_namespace(aoe_ready: None, inputs_cache: Path,
                                                                  base_rom: Path) -> None:
    before = namespaces()
    with command(inputs_cache, "test", "--rom", str(base_rom), "--guest", "keepsan-aoe", "--accel", "tcg") as proc:
        run_dir = booting(inputs_cache, proc, wanted=2)  # QEMU (inside `ip netns exec`) and vblade
        out, err = signal_and_wait(proc)
        assert proc.returncode == 128 + signal.SIGTERM, out + err
        assert processes_in(run_dir) == []
        assert namespaces() <= before


def test_a_killed_aoe_boot_is_cleaned_up_by_the_next_run(aoe_ready: None, inputs_cache: Path,
                                                        base_rom: Path, tmp_path: Path) -> None:
    before = namespaces()
    with command(inputs_cache, "test", "--rom", str(base_rom), "--guest", "keepsan-aoe", "--accel", "tcg") as proc:
        run_dir = booting(inputs_cache, proc, wanted=2)
        [left] = namespaces() - before
        try:
            proc.kill()
            proc.wait()
            wait_until(lambda: processes_in(run_dir) == [] and namespace_pids(left) == [],
                       "QEMU and vblade to die with patchkit", limit=30)
            assert left in namespaces()  # nothing could delete it: patchkit was killed
            disk = tmp_path / "disk.img"
            disk.write_bytes(bytes(1 << 20))
            with aoe_target(disk, tmp_path):  # the next run's target
                assert left not in namespaces()
        finally:
            if left in namespaces():
                subprocess.run(["ip", "netns", "delete", left], check=False)
