"""A running QEMU under QMP control, with its serial console.

``async with Machine(spec, run_dir) as m:`` starts QEMU in ``run_dir`` (command
line in qemu-cmdline.txt, stderr in qemu-stderr.log, serial in serial.log), connects
QMP and reads the console. The monitor is a socket pair made before QEMU starts: QEMU
inherits one end (``-chardev socket,fd=N``), the QMP client talks on the other at once,
with no socket file to wait for. State changes come as QMP events (``wait_status``) and the
process's end through a pidfd, neither polled. Leaving the block always stops QEMU:
QMP ``quit``, then SIGTERM, then SIGKILL, and the process is reaped, also on ^C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import socket
import subprocess
import time
from collections.abc import Callable, Collection
from pathlib import Path
from types import TracebackType

from qemu.qmp import EventListener, QMPClient, Runstate
from qemu.qmp.error import QMPError

from patchkit.errors import BootError
from patchkit.qemu.cmdline import MachineSpec, check_spec, qemu_argv
from patchkit.qemu.console import Console
from patchkit.run import CommandTimeout, run, spawned
from patchkit.store import atomic_write

CONNECT_TIMEOUT = 10.0  # for QEMU's QMP greeting after it started
VERSION_TIMEOUT = 30.0  # for `qemu --version`: a hanging binary must not hang patchkit
QUIT_TIMEOUT = 5.0
# QEMU queues keys and paces them: a key takes 2 x its hold time (press, release). The careful pace; the
# echo of each command is checked.
KEY_HOLD_MS = 20
# QMP events after which the run state may have changed (a KVM internal error is a STOP, then the status
# "internal-error"; a power-off under -no-shutdown is SHUTDOWN, then STOP).
STATE_EVENTS = ("SHUTDOWN", "STOP", "GUEST_PANICKED")
EXITED = "exited"  # wait_status's answer when the QEMU process ended first (no QMP status has this name)
# The monitor was a socket patchkit passed to QEMU: a hand-run has none to inherit.
RERUN_NOTE = ("# to run this by hand, replace `-chardev socket,id=qmp,fd=N -mon chardev=qmp,mode=control` "
              "with `-qmp stdio` (or drop it)\n")

# Characters gPXE commands need, as QEMU key codes (qcodes).
_SHIFTED = {":": "semicolon", "_": "minus", "+": "equal", '"': "apostrophe", "?": "slash", "|": "backslash"}
_PLAIN = {" ": "spc", "-": "minus", ".": "dot", "/": "slash", "=": "equal", ",": "comma", ";": "semicolon",
          "'": "apostrophe", "\\": "backslash", "\n": "ret"}


def qemu_version(qemu: str = "qemu-system-x86_64") -> str:
    """The version QEMU reports (e.g. "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"); BootError when it cannot say."""
    try:
        out = run([qemu, "--version"], timeout=VERSION_TIMEOUT).stdout.decode("utf-8", "replace")
    except CommandTimeout:
        raise BootError(f"{qemu} --version did not answer within {VERSION_TIMEOUT:g} s (it was stopped)",
                        hint="check the QEMU installation (`qemu-system-x86_64 --version` by hand)") from None
    lines = out.strip().splitlines()
    if not lines:
        raise BootError(f"{qemu} --version printed no version", hint="check the QEMU installation")
    return lines[0].removeprefix("QEMU emulator version ").strip()


def _forget_answer(asking: set[asyncio.Task[object]]) -> Callable[[asyncio.Task[object]], None]:
    """A done callback: drop the finished question from ``asking``; its error, if no one awaits it any more,
    is read here (the asker gave up on it) rather than reported as never retrieved."""
    def done(task: asyncio.Task[object]) -> None:
        asking.discard(task)
        if not task.cancelled():
            task.exception()
    return done


def keys_for(char: str) -> list[str]:
    """The qcodes pressed together to type ``char`` on a US keyboard."""
    if char.isascii() and (char.isdigit() or char.islower()):
        return [char]
    if char.isascii() and char.isupper():
        return ["shift", char.lower()]
    if char in _PLAIN:
        return [_PLAIN[char]]
    if char in _SHIFTED:
        return ["shift", _SHIFTED[char]]
    raise BootError(f"cannot type {char!r} into the guest")


def typable(text: str) -> bool:
    """Whether type_text can type ``text`` (keys_for knows each character)."""
    try:
        for char in text:
            keys_for(char)
    except BootError:
        return False
    return True


class Machine:
    """One QEMU process for ``spec``, its QMP connection and its serial console."""

    def __init__(self, spec: MachineSpec, run_dir: Path) -> None:
        self.spec = spec
        self.run_dir = run_dir
        self.console: Console  # created on entry, in the run directory
        self.started = 0.0  # time.monotonic() when QEMU was started
        self._qmp = QMPClient("patchkit")
        self._stack = contextlib.ExitStack()
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._exited = asyncio.Event()  # set when the QEMU process has ended
        self.shutdown_reason = ""  # the SHUTDOWN event's reason once heard (e.g. guest-reset, guest-shutdown)
        self._asking: set[asyncio.Task[object]] = set()  # QMP questions in flight (see _ask)

    async def __aenter__(self) -> Machine:
        check_spec(self.spec)  # a spec refused leaves nothing behind
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.console = Console(self.run_dir / "serial.log")
        monitor, qemu_end = socket.socketpair()
        self._stack.callback(monitor.close)  # (the QMP client closes it when it disconnects; twice is harmless)
        try:
            # Only QEMU keeps qemu_end open once started: when QEMU exits, the monitor reads end of file.
            with qemu_end:
                argv = qemu_argv(self.spec, monitor_fd=qemu_end.fileno())
                atomic_write(self.run_dir / "qemu-cmdline.txt", shlex.join(argv) + "\n" + RERUN_NOTE)
                self.started = time.monotonic()
                self._proc = self._stack.enter_context(
                    spawned(argv, stderr_file=self.run_dir / "qemu-stderr.log", cwd=self.run_dir,
                            pass_fds=(qemu_end.fileno(),)))
                self._watch_exit(self._proc.pid)
            assert self._proc.stdout is not None
            self._reader = asyncio.create_task(self.console.read_from(self._proc.stdout))
            await self._connect(monitor)
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._stop()

    def elapsed(self) -> float:
        """Seconds since QEMU was started."""
        return time.monotonic() - self.started

    def running(self) -> bool:
        """Whether the QEMU process is still alive."""
        return self._proc is not None and self._proc.poll() is None

    async def status(self) -> str:
        """QMP query-status: "running", "paused", "shutdown", "internal-error", ..."""
        reply = await self._ask("query-status")
        assert isinstance(reply, dict)
        return str(reply["status"])

    async def wait_status(self, wanted: Collection[str], timeout: float | None = None) -> str | None:
        """Wait until QMP query-status says one of ``wanted``; that status, EXITED when the QEMU process
        ends first, None after ``timeout`` seconds.

        The status is asked at once, then once after each event of STATE_EVENTS, which a listener of this
        wait's own hears from before the first question: no change is missed, and concurrent waits each
        see every event.
        """
        listener = EventListener(STATE_EVENTS)
        with self._qmp.listen(listener):
            watch = asyncio.create_task(self._status_among(wanted, listener))
            exited = asyncio.create_task(self._exited.wait())
            try:
                done, _ = await asyncio.wait((watch, exited), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                watch.cancel()
                exited.cancel()
        if watch in done:
            return watch.result()
        return EXITED if exited in done else None

    async def _status_among(self, wanted: Collection[str], listener: EventListener) -> str:
        """Ask the status until it is one of ``wanted``, again after each event ``listener`` hears; EXITED
        once QEMU has ended, if the monitor closed first."""
        try:
            while (status := await self.status()) not in wanted:
                event = await listener.get()
                if event.get("event") == "SHUTDOWN" and isinstance(data := event.get("data"), dict):
                    self.shutdown_reason = str(data.get("reason", ""))
        except (QMPError, OSError, EOFError):  # the monitor closed: QEMU is exiting
            await self._exited.wait()
            return EXITED
        return status

    async def screendump(self, path: Path) -> bool:
        """Save the VGA screen as PNG; False if QEMU could not (e.g. it already exited)."""
        if not self.running():
            return False
        try:
            await asyncio.wait_for(self._ask("screendump", {"filename": str(path), "format": "png"}), 10)
        except (QMPError, OSError, TimeoutError):
            return False
        return path.is_file()

    async def hmp(self, command: str) -> str:
        """A human monitor command (e.g. ``qemu-io disk0 "break read_aio tag"``); what the monitor answered."""
        reply = await self._ask("human-monitor-command", {"command-line": command})
        return str(reply)

    async def read_requests(self, drive: str) -> int | None:
        """How many read requests the guest made of the -drive ``drive`` so far (QMP query-blockstats'
        rd_operations); None when QEMU reports no such drive."""
        reply = await self._qmp.execute("query-blockstats")
        for entry in reply if isinstance(reply, list) else []:
            if isinstance(entry, dict) and entry.get("device") == drive:
                return int(entry.get("stats", {}).get("rd_operations", 0))
        return None

    async def send_key(self, *qcodes: str, hold_ms: int = KEY_HOLD_MS) -> None:
        """Press ``qcodes`` together, then release them ``hold_ms`` later (e.g. send_key("ctrl", "b"))."""
        keys = [{"type": "qcode", "data": q} for q in qcodes]
        await self._ask("send-key", {"keys": keys, "hold-time": hold_ms})

    async def type_text(self, text: str, hold_ms: int = KEY_HOLD_MS) -> None:
        """Type ``text`` ("\\n" is Enter): every key is sent at once, QEMU queues them in order and paces
        them ``hold_ms`` apart. The caller checks the echo: a guest that reads keys too slowly loses some."""
        presses = [keys_for(char) for char in text]  # an untypable character fails before any key is sent
        await asyncio.gather(*(self.send_key(*keys, hold_ms=hold_ms) for keys in presses))

    async def _ask(self, command: str, arguments: dict[str, object] | None = None) -> object:
        """QMP ``command``'s answer. A caller that stops waiting (cancelled, timed out) does not take the
        question back: its answer is still read, in order (a cancelled qemu.qmp execute forgets its id, and
        the answer that comes anyway is logged "Unknown ID '__qmp#N', message dropped")."""
        asking: asyncio.Task[object] = asyncio.create_task(self._qmp.execute(command, arguments))
        self._asking.add(asking)
        asking.add_done_callback(_forget_answer(self._asking))
        return await asyncio.shield(asking)

    async def _connect(self, monitor: socket.socket) -> None:
        """Talk QMP on our end of the monitor's socket pair: QEMU greets on it once it is up."""
        try:
            await asyncio.wait_for(self._qmp.connect(monitor), CONNECT_TIMEOUT)
        except (QMPError, OSError, EOFError, TimeoutError) as exc:  # e.g. QEMU quit over a bad option
            if await self._wait_exit(2.0):
                raise self._startup_error() from exc
            raise BootError(f"cannot talk to QEMU over QMP ({type(exc).__name__}: {exc})",
                            hint=f"QEMU's messages are in {self.run_dir / 'qemu-stderr.log'}") from exc

    async def _stop(self) -> None:
        """QMP quit and wait a little; then the process helper terminates, kills and reaps."""
        try:
            if self._asking:  # answers still to come to questions their askers gave up on
                await asyncio.wait(set(self._asking), timeout=QUIT_TIMEOUT)
            if self.running() and self._qmp.runstate == Runstate.RUNNING:
                with contextlib.suppress(QMPError, OSError, TimeoutError, EOFError):
                    await asyncio.wait_for(self._ask("quit"), QUIT_TIMEOUT)
                await self._wait_exit(QUIT_TIMEOUT)
            with contextlib.suppress(QMPError, OSError, EOFError):
                await self._qmp.disconnect()
            if self._reader is not None and not self.running():
                # QEMU is gone: the console reads what is left, up to end of file.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._reader), 2)
        finally:
            self._stack.close()
            if self._reader is not None and not self._reader.done():
                self._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reader
            self.console.close()

    def _watch_exit(self, pid: int) -> None:
        """Set ``_exited`` when process ``pid`` ends: its pidfd becomes readable (running() then reaps it)."""
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(pid)

        def ended() -> None:
            loop.remove_reader(pidfd)
            self._exited.set()

        def close() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)

        loop.add_reader(pidfd, ended)
        self._stack.callback(close)

    async def _wait_exit(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for QEMU to end; whether it has."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._exited.wait(), timeout)
        return not self.running()

    def stderr_tail(self, lines: int = 10) -> str:
        """The last lines QEMU wrote to its stderr (qemu-stderr.log), or ""."""
        log = self.run_dir / "qemu-stderr.log"
        text = log.read_text(errors="replace") if log.is_file() else ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def _startup_error(self) -> BootError:
        """QEMU exited before it could be controlled: its own message says why."""
        return BootError(f"QEMU exited at start-up:\n{self.stderr_tail() or '(no output)'}",
                         hint=f"the command line is in {self.run_dir / 'qemu-cmdline.txt'}")

