"""The QEMU machine lifecycle on a real QEMU (TCG): QMP control, screenshots, always stopped and reaped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import stat
from pathlib import Path

import pytest

from patchkit.boot.session import SHUTDOWN_GRACE
from patchkit.errors import BootError
from patchkit.qemu.cmdline import Drive, MachineSpec, reference_spec
from patchkit.qemu.console import Console
from patchkit.qemu.machine import EXITED, Machine, keys_for, qemu_version

pytestmark = pytest.mark.boot


def blank_disk(path: Path) -> Path:
    with open(path, "wb") as f:
        f.truncate(1 << 20)
    return path


def gone(pid: int) -> bool:
    """The process no longer exists (it was reaped, not left a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_machine_runs_under_qmp_and_is_stopped_after(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"

    async def scenario() -> tuple[int, str, bool, Console]:
        async with Machine(reference_spec(blank_disk(tmp_path / "blank.img")), run_dir) as machine:
            assert machine._proc is not None
            pid = machine._proc.pid
            wait = await machine.console.wait_for(["No bootable device"], timeout=60)
            assert wait.matched, wait.reason
            status = await machine.status()
            shot = await machine.screendump(run_dir / "end.png")
        return pid, status, shot, machine.console

    pid, status, shot, console = asyncio.run(scenario())
    screen = console.screen()
    assert status == "running"
    assert shot and (run_dir / "end.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "SeaBIOS" in screen and "No bootable device" in screen
    assert gone(pid)
    assert (run_dir / "qemu-cmdline.txt").read_text().startswith("qemu-system-x86_64 ")
    reread = Console()
    reread.feed((run_dir / "serial.log").read_bytes())  # serial.log keeps the raw bytes
    assert "No bootable device" in reread.text and reread.text == console.text
    assert (run_dir / "seabios.log").read_text(errors="replace").strip()  # SeaBIOS's debug port


def test_an_error_inside_the_block_still_stops_qemu(tmp_path: Path) -> None:
    pids = []

    async def scenario() -> None:
        async with Machine(reference_spec(blank_disk(tmp_path / "blank.img")), tmp_path / "run") as machine:
            assert machine._proc is not None
            pids.append(machine._proc.pid)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(scenario())
    assert gone(pids[0])


def test_the_monitor_is_an_inherited_socket_with_no_file_to_wait_for(tmp_path: Path) -> None:
    run_dir = tmp_path / ("d" * 60) / ("e" * 60)  # longer than a UNIX socket path may be: no matter now

    async def scenario() -> tuple[str, str, list[Path]]:
        async with Machine(reference_spec(blank_disk(tmp_path / "blank.img")), run_dir) as machine:
            assert machine._proc is not None
            status = await machine.status()  # QMP answers as soon as the machine is entered
            fd = re.search(r"socket,id=qmp,fd=(\d+)", (run_dir / "qemu-cmdline.txt").read_text())
            assert fd, "no monitor descriptor on QEMU's command line"
            monitor = os.readlink(f"/proc/{machine._proc.pid}/fd/{fd[1]}")
            sockets = [f for f in run_dir.rglob("*") if stat.S_ISSOCK(f.lstat().st_mode)]
        return status, monitor, sockets

    status, monitor, sockets = asyncio.run(scenario())
    assert status in ("running", "paused")
    assert monitor.startswith("socket:")  # QEMU holds the pair's other end under that number
    assert sockets == []


def test_qemu_failing_at_start_up_is_a_boot_error_with_its_message(tmp_path: Path) -> None:
    spec = MachineSpec(drives=(Drive(tmp_path / "missing.img"),))

    async def scenario() -> None:
        async with Machine(spec, tmp_path / "run"):
            pass

    with pytest.raises(BootError, match="QEMU exited at start-up") as info:
        asyncio.run(scenario())
    assert "missing.img" in str(info.value)


def test_a_state_change_wakes_every_wait_for_it(tmp_path: Path) -> None:
    async def scenario() -> tuple[str | None, list[str | None]]:
        async with Machine(reference_spec(blank_disk(tmp_path / "blank.img")), tmp_path / "run") as machine:
            # Negative control: nothing changes, so the wait ends by its timeout.
            quiet = await machine.wait_status(("shutdown",), timeout=0.5)
            waits = [asyncio.create_task(machine.wait_status(("shutdown",), SHUTDOWN_GRACE)) for _ in range(2)]
            await asyncio.sleep(0)  # both waits listen before the event
            await machine._qmp.execute("system_reset")  # under -no-reboot a reset stops the VM: SHUTDOWN, STOP
            return quiet, list(await asyncio.gather(*waits))

    quiet, woken = asyncio.run(scenario())
    assert quiet is None
    assert woken == ["shutdown", "shutdown"]  # neither wait took the other's event


def test_the_power_off_wait_ends_when_qemu_is_killed_from_outside(tmp_path: Path) -> None:
    async def scenario() -> tuple[str | None, bool]:
        async with Machine(reference_spec(blank_disk(tmp_path / "blank.img")), tmp_path / "run") as machine:
            assert machine._proc is not None
            wait = asyncio.create_task(machine.wait_status(("shutdown",), SHUTDOWN_GRACE))
            await asyncio.sleep(0)
            os.kill(machine._proc.pid, signal.SIGKILL)  # no QMP event comes: only the process's end
            return await wait, machine.running()

    outcome, running = asyncio.run(scenario())
    assert outcome == EXITED
    assert not running


def test_keys_for_typing_gpxe_commands() -> None:
    assert keys_for("s") == ["s"]
    assert keys_for("S") == ["shift", "s"]
    assert keys_for(":") == ["shift", "semicolon"]
    assert keys_for("_") == ["shift", "minus"]
    assert keys_for(".") == ["dot"]
    assert keys_for(" ") == ["spc"]
    assert keys_for("\n") == ["ret"]
    with pytest.raises(BootError, match="cannot type"):
        keys_for("\u00e9")


def test_qemu_version_is_reported() -> None:
    assert qemu_version()[0].isdigit()


def test_a_cancelled_question_leaves_no_unanswered_reply(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A wait cancelled while its QMP question is in flight (the session's status watcher at a guest's end) let
    qemu.qmp drop the answer with "Unknown ID '__qmp#00024', message dropped." among the verdicts."""

    async def scenario() -> None:
        async with Machine(reference_spec(blank_disk(tmp_path / "blank.img")), tmp_path / "run") as machine:
            for _ in range(20):
                asking = asyncio.create_task(machine.status())
                await asyncio.sleep(0)  # the question is sent, its answer not read yet
                asking.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asking
            assert await machine.status() == "running"  # the connection still answers in order

    with caplog.at_level(logging.WARNING, logger="qemu.qmp"):
        asyncio.run(scenario())
    assert not [r.getMessage() for r in caplog.records if "Unknown ID" in r.getMessage()]
