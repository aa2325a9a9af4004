"""One QEMU boot driven as gPXE's user does (or left to SeaBIOS), judged by the serial markers.

A ROM run boots a machine where the guest's virtio disk can only be booted through
the ROM (see patchkit.qemu.cmdline) and drives gPXE: Ctrl-B for the
"Press Ctrl-B" banner (typed ahead once SeaBIOS starts gPXE), then `sanboot ROOT-PATH`
typed at the `gPXE>` prompt, fast, its echo checked as it comes (a garbled line is
cleared and typed again slowly). The ROM is the mailed one: only the typing is fast. A
reference run lets SeaBIOS boot the same disk natively.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qemu.qmp import QMPError

from patchkit.guests import Guest
from patchkit.qemu.cmdline import MachineSpec
from patchkit.qemu.console import Pattern, Wait
from patchkit.qemu.faults import Hold
from patchkit.qemu.machine import KEY_HOLD_MS, Machine
from patchkit.store import atomic_write

STEP_TIMEOUT = 30.0  # for one gPXE prompt step (banner, prompt, echo), within the overall timeout
SHUTDOWN_GRACE = 10.0  # after the success marker, time for the guest to power off
GPXE_RETURN_GRACE = 1.0  # after a failure marker, time for sanboot to return to gPXE's prompt
# Keys for gPXE go at a fast pace first (QEMU spaces keys 2 x the hold time). A command whose echo shows
# anything else, or does not show up in ECHO_WAIT (plus the keys' own time), lost or garbled a key: its line
# is cleared and the command typed again at the next pace, the careful KEY_HOLD_MS last.
TYPING_HOLDS_MS = (1, 2)
FAST_HOLD_MS = 2  # single keys (Ctrl-B, Enter)
ECHO_WAIT = 1.5
ECHO_CHECK = 0.05  # how often a partial echo is compared with the command while it comes
BANNER_KEY_WAIT = 0.5  # for the prompt after Ctrl-B, before pressing it again
# Before typing again: shift and ctrl pressed alone (a lost release leaves the BIOS thinking one is held
# down), then gPXE's line editor to the line's start and deleting to its end.
CLEAR_LINE = (("shift",), ("ctrl",), ("ctrl", "a"), ("ctrl", "k"))

# What gPXE and SeaBIOS print (facts about their output, matched as substrings).
GPXE_POST_BANNER = "Press Ctrl-B to configure gPXE"
GPXE_BANNER = "Press Ctrl-B for the gPXE command line"
GPXE_PROMPT = "gPXE>"
EMPTY_PROMPT_LINE = re.compile(rf"\A{GPXE_PROMPT}\s*\Z")  # the cursor's line once cleared
GPXE_SANBOOT_FAILED = "Could not boot from"  # sanboot_cmd.c, when sanboot returns
BOOT_MARKERS = ("Booting from BIOS drive", "Booting from SAN device", "Booting from INT 13", "Booting from Hard Disk",
                "Booting from Floppy")
NO_BOOT_DEVICE = "No bootable device"
BOOTING_FROM = "Booting from"  # SeaBIOS's line before it runs a boot sector
SANBOOT_LINE = f"{GPXE_PROMPT} sanboot "  # the command line typed at gPXE's prompt
BLKDEBUG_CONFIG = "blkdebug.conf"
MONITOR_TIMEOUT = 5.0  # for one monitor command
SEABIOS_DISK_BOOT = "Booting from Hard Disk"  # SeaBIOS booting a disk itself
SEABIOS_ROM_BOOT = "Booting from ROM"  # SeaBIOS starting the ROM's boot entry (gPXE)
MONITOR_TIMEOUT = 5.0  # for one monitor command


@dataclass(frozen=True)
class Script:
    """What to type at the gPXE prompt."""

    root_path: str
    commands: list[str]  # before sanboot
    exit_after_sanboot: bool
    refusal: re.Pattern[str] | None = None  # sanboot must return with a message matching this
    failure: re.Pattern[str] | None = None  # the guest must report a failure matching this
    hold: Hold | None = None  # a request to hold back at the guest's markers
    after_sanboot: str = "exit"  # typed once sanboot returned (exit_after_sanboot)


class _Failed(Exception):
    """A boot step did not see what it waited for (the message is the verdict's reason)."""


class Session:
    """One QEMU boot: drive gPXE or SeaBIOS, watch the markers, keep the artifacts."""

    def __init__(self, guest: Guest, spec: MachineSpec, run_dir: Path, script: Script, timeout: float,
                 stall_timeout: float, success: Pattern, disk_node: str) -> None:
        self.guest = guest
        self.disk_node = disk_node  # the guest disk's -drive id (for holds)
        self.monitor_log: list[str] = []  # monitor commands and answers, kept in monitor.log
        self.spec = spec
        self.run_dir = run_dir
        self.script = script
        self.timeout = timeout
        self.stall_timeout = stall_timeout
        self.success = success
        self.failures: tuple[Pattern, ...] = (*guest.failure_markers, NO_BOOT_DEVICE)
        self.boot_markers: tuple[str, ...] = BOOT_MARKERS
        if spec.rom is not None and not spec.strict_boot:
            # QEMU's default boot order lets SeaBIOS boot the virtio disks itself once the ROM returns.
            self.failures += (SEABIOS_DISK_BOOT,)
            self.boot_markers = tuple(m for m in BOOT_MARKERS if m != SEABIOS_DISK_BOOT)
        self.timings: dict[str, float] = {}
        self.figures: dict[str, float] = {}  # measured by the harness (requests_per_call)
        self.counted: list[int | None] = []  # the guest disk's read requests at the guest's count markers
        self.kvm_failed = False
        self.deadline = 0.0
        self.machine: Machine

    async def run(self) -> tuple[bool, str]:
        """Boot, drive and watch to the verdict: whether it passed, and why (timings and kvm_failed are kept)."""
        passed, reason = False, ""
        async with Machine(self.spec, self.run_dir) as machine:
            self.machine = machine
            self.deadline = time.monotonic() + self.timeout
            watcher = asyncio.create_task(self._watch())
            holder = asyncio.create_task(self._hold()) if self.script.hold is not None else None
            counter = asyncio.create_task(self._count()) if self.guest.count is not None else None
            try:
                if self.spec.rom is not None:
                    since = await self._drive_gpxe()
                else:
                    since = 0
                reason = await self._await_guest(since)
                self._check_count()
                passed = True
            except _Failed as failure:
                reason = str(failure) + self._count_note()
                await machine.screendump(self.run_dir / "failure.png")
            except (QMPError, OSError, EOFError) as exc:  # QEMU went away under us
                reason = f"lost control of QEMU ({type(exc).__name__}: {exc}); see qemu-stderr.log"
            finally:
                watcher.cancel()
                if counter is not None:
                    counter.cancel()
                if holder is not None:
                    holder.cancel()
                    await self._release_held()
                self.timings["total"] = round(machine.elapsed(), 3)
            await machine.screendump(self.run_dir / "end.png")
        self._write_screens()
        if self.monitor_log:
            atomic_write(self.run_dir / "monitor.log", "\n".join(self.monitor_log) + "\n")
        return passed, reason

    async def _expect(self, patterns: Sequence[Pattern], what: str, since: int, step: float | None = None,
                      prompt: bool = False, screen: Sequence[Pattern] = ()) -> Wait:
        """Wait for ``patterns`` (or a failure marker); _Failed saying ``what`` was missing otherwise.

        ``prompt``: the patterns are interactive prompts, also matched on the cursor's screen line.
        ``screen``: markers that also match the rendered screen below the boot's last line of its
        own (the `sanboot` command typed at gPXE's prompt, or SeaBIOS's "Booting from").
        """
        remaining = self.deadline - time.monotonic()
        wait = await self.machine.console.wait_for(
            [*patterns, *self.failures], timeout=min(remaining, step or remaining),
            stall_timeout=self.stall_timeout, since=since, on_cursor_line=prompt,
            screen_below=BOOTING_FROM if self.spec.rom is None else SANBOOT_LINE, screen_patterns=screen)
        if wait.matched and wait.pattern in patterns:
            return wait
        if wait.matched:
            raise _Failed(f"{await self._failure_text(wait)} while waiting for {what}")
        if wait.outcome == "timeout" and remaining <= (step or remaining):
            raise _Failed(f"overall timeout ({self.timeout:g} s) while waiting for {what}")
        if wait.outcome == "eof" and (said := self.machine.stderr_tail(1)):
            raise _Failed(f"QEMU exited ({said}) while waiting for {what}")
        raise _Failed(f"{wait.reason} while waiting for {what}" if wait.reason else f"no {what}")

    def _mark(self, name: str) -> None:
        self.timings.setdefault(name, round(self.machine.elapsed(), 3))

    async def _drive_gpxe(self) -> int:
        """Ctrl-B at gPXE's banner, then the commands and `sanboot` at its prompt; the offset after sanboot."""
        wait = await self._expect([GPXE_POST_BANNER, GPXE_BANNER], "gPXE's banner (did the ROM run?)", 0, prompt=True)
        typed_ahead = False
        if wait.pattern == GPXE_POST_BANNER:
            self._mark("gpxe_post")
            # Any key but Ctrl-B ends the ROM's ~4 s POST wait (and is consumed there); the wait
            # starts (emptying the keyboard buffer first) once the line ends with "...".
            line_end = await self.machine.console.wait_for(["..."], timeout=2, since=wait.end, on_cursor_line=True)
            if line_end.matched:
                await self.machine.send_key("spc", hold_ms=FAST_HOLD_MS)
            # Once SeaBIOS starts gPXE, a Ctrl-B waits in the BIOS keyboard buffer until gPXE's banner,
            # which then takes it at once (it looks for a key every 100 ms): the key is typed ahead.
            starting = await self.machine.console.wait_for([SEABIOS_ROM_BOOT], timeout=2, since=wait.end)
            if starting.matched:
                await self.machine.send_key("ctrl", "b", hold_ms=FAST_HOLD_MS)
                typed_ahead = True
            wait = await self._expect([GPXE_BANNER], "gPXE's \"Press Ctrl-B\" banner after POST", wait.end, prompt=True)
        self._mark("gpxe_banner")
        if not typed_ahead:
            await self.machine.send_key("ctrl", "b", hold_ms=FAST_HOLD_MS)
        prompt = await self.machine.console.wait_for([GPXE_PROMPT], timeout=BANNER_KEY_WAIT, since=wait.end,
                                                     on_cursor_line=True)
        if not prompt.matched:  # the key was lost, or came too early: again (at the prompt it is a no-op)
            self._mark("ctrl_b_again")
            await self.machine.send_key("ctrl", "b", hold_ms=KEY_HOLD_MS)
        wait = await self._expect([GPXE_PROMPT], "the gPXE> prompt after Ctrl-B", wait.end, STEP_TIMEOUT, prompt=True)
        self._mark("gpxe_prompt")
        for command in self.script.commands:
            echoed = await self._type(command, wait.end)
            wait = await self._expect([GPXE_PROMPT], f"the gPXE> prompt after `{command}`", echoed, STEP_TIMEOUT,
                                      prompt=True)
        echoed = await self._type(f"sanboot {self.script.root_path}", wait.end)
        self._mark("sanboot")
        if not self.script.exit_after_sanboot:
            return echoed
        # The cursor's line still shows the typed command until sanboot prints: wait for its
        # message on the serial stream first, then for the prompt after it.
        failed = await self._expect([GPXE_SANBOOT_FAILED], "sanboot to return (\"Could not boot from\")", echoed)
        self._mark("sanboot_returned")
        wait = await self._expect([GPXE_PROMPT], "the gPXE> prompt after sanboot returned", failed.end, prompt=True)
        return await self._type(self.script.after_sanboot, wait.end)

    async def _type(self, command: str, since: int) -> int:
        """Type ``command``, check gPXE echoed it, press Enter; the offset after the echo.

        The keys go at each pace of TYPING_HOLDS_MS until the echo shows the whole command
        as it should; after each miss the line is cleared (timing "retyped": the first miss).
        The last try is at the careful KEY_HOLD_MS, its echo given STEP_TIMEOUT.
        """
        echoed = f"{GPXE_PROMPT} {command}"
        for hold in TYPING_HOLDS_MS:
            await self.machine.type_text(command, hold)
            keys_time = 4 * hold * len(command) / 1000  # a shifted character is two keys
            echo = await self._echo(command, since, ECHO_WAIT + keys_time)
            if echo is not None:
                break
            self._mark("retyped")
            for keys in CLEAR_LINE:
                await self.machine.send_key(*keys, hold_ms=KEY_HOLD_MS)
            # Until the line is empty the echo check would still see the garbled one.
            await self.machine.console.wait_for([EMPTY_PROMPT_LINE], timeout=ECHO_WAIT, on_cursor_line=True,
                                                since=len(self.machine.console.text))
        else:
            await self.machine.type_text(command, KEY_HOLD_MS)
            echo = await self._expect([echoed], f"gPXE to echo `{command}`", since, STEP_TIMEOUT, prompt=True)
        await self.machine.send_key("ret", hold_ms=FAST_HOLD_MS)
        return echo.end

    async def _echo(self, command: str, since: int, timeout: float) -> Wait | None:
        """The wait that saw gPXE echo ``command`` at its prompt; None once the line shows something else
        (a key was lost or garbled) or after ``timeout`` seconds."""
        console = self.machine.console
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            wait = await console.wait_for([f"{GPXE_PROMPT} {command}"], timeout=min(left, ECHO_CHECK), since=since,
                                          on_cursor_line=True)
            if wait.matched:
                return wait
            _, prompt, typed = console.cursor_line().partition(f"{GPXE_PROMPT} ")
            if prompt and not command.startswith(typed):
                return None
        return None

    async def _await_guest(self, since: int) -> str:
        """Wait for the success marker (noting the boot sector on the way), or for the expected
        refusal; the verdict's reason."""
        patterns: list[Pattern] = [self.success, *self.boot_markers]
        if self.spec.rom is not None and not self.script.exit_after_sanboot:
            patterns.append(GPXE_PROMPT)  # sanboot returned: it failed, or refused as expected
        on_screen = [self.success, *self.guest.failure_markers] if self.guest.matches_screen else []
        refusal, failure = self.script.refusal, self.script.failure
        what = f"the guest's marker \"{shown(self.success)}\""
        if refusal is not None:
            what = f"sanboot to refuse the disk (/{refusal.pattern}/)"
        if failure is not None:
            what = f"the guest to report the failure (/{failure.pattern}/)"
            patterns += self.guest.failure_markers
        while True:
            wait = await self._expect(patterns, what, since, screen=on_screen)
            since = wait.end
            if wait.pattern in self.boot_markers:
                self._mark("boot_sector")
                continue
            if failure is not None and wait.pattern in self.guest.failure_markers:
                line = await self._marker_line(wait)
                if not failure.search(line):
                    raise _Failed(f"the guest reported \"{line}\", which does not match the expected failure "
                                  f"/{failure.pattern}/")
                self._mark("failure_reported")
                return f"the guest reported the failure as expected after {self.timings['failure_reported']:.1f} s: " \
                       f"{line}"
            if wait.pattern == GPXE_PROMPT:
                said = self._gpxe_said()
                if refusal is None:
                    raise _Failed(f"sanboot {self.script.root_path} returned to the gPXE prompt: {said}")
                if not refusal.search(said):
                    raise _Failed(f"sanboot {self.script.root_path} returned with \"{said}\", which does not match "
                                  f"the expected refusal /{refusal.pattern}/")
                self._mark("refused")
                return f"refused as expected after {self.timings['refused']:.1f} s: {said}"
            self._mark("success")
            if refusal is not None:
                raise _Failed(f"the guest booted and passed, but sanboot {self.script.root_path} should have "
                              f"refused the disk (/{refusal.pattern}/)")
            if failure is not None:
                raise _Failed(f"the guest passed, but it should have reported a failure (/{failure.pattern}/)")
            # The screen at the marker: end.png comes after the guest powered off (a black screen, debian-system).
            await self.machine.screendump(self.run_dir / "marker.png")
            await self._await_power_off()
            return f"marker seen after {self.timings['success']:.1f} s"

    async def _hold(self) -> None:
        """At the guest's ``at`` marker hold the disk's next request and press the key; at ``release``
        let it go and press the key again (the guest waits for each key before going on)."""
        hold = self.script.hold
        assert hold is not None
        hold_command, release_command, _ = hold.monitor_commands(self.disk_node)
        since = 0
        for marker, command, mark in ((hold.at, hold_command, "held"), (hold.release, release_command, "released")):
            wait = await self.machine.console.wait_for([marker], timeout=self.timeout, since=since)
            if not wait.matched or not await self._monitor(command):
                return
            since = wait.end
            self._mark(mark)
            await self.machine.send_key(hold.key)

    async def _count(self) -> None:
        """At the guest's ``before`` and ``after`` markers read the disk's request count and press the key
        (the guest waits for each); figure ``requests_per_call`` is the difference."""
        count = self.guest.count
        assert count is not None
        since = 0
        for marker in (count.before, count.after):
            wait = await self.machine.console.wait_for([marker], timeout=self.timeout, since=since)
            if not wait.matched:
                return
            since = wait.end
            self.counted.append(await self.machine.read_requests(self.disk_node))
            if len(self.counted) == 2 and None not in self.counted:
                self.figures["requests_per_call"] = float(self.counted[1] or 0) - float(self.counted[0] or 0)
            await self.machine.send_key(count.key)

    def _count_note(self) -> str:
        """For a run that failed otherwise: what the counted call took, when that is not what was expected."""
        took, count = self.figures.get("requests_per_call"), self.guest.count
        if took is None or count is None or took == count.expected:
            return ""
        return f"; and its counted INT 13h call took {took:g} virtio requests, expected {count.expected}"

    def _check_count(self) -> None:
        """_Failed unless the guest's counted call took the requests its RequestCount expects."""
        count = self.guest.count
        if count is None:
            return
        took = self.figures.get("requests_per_call")
        if took is None:
            raise _Failed(f"the disk's requests were not counted at \"{count.before}\" and \"{count.after}\" "
                          f"(block statistics of {self.disk_node}: {self.counted})")
        if took != count.expected:
            raise _Failed(f"the guest's counted INT 13h call took {took:g} virtio requests, expected {count.expected}")

    async def _release_held(self) -> None:
        """Let a request still held go (and drop an unused breakpoint), so QEMU can quit.

        A guest that stops (powers off, resets) while a blkdebug breakpoint holds its request
        leaves QEMU's main loop draining that request for ever: the monitor no longer answers,
        and stopping the machine ends in SIGKILL.
        """
        hold = self.script.hold
        if hold is not None and "held" in self.timings and "released" not in self.timings and self.machine.running():
            for command in hold.monitor_commands(self.disk_node)[2]:
                if not await self._monitor(command):
                    return

    async def _monitor(self, command: str) -> bool:
        """A human-monitor command (its answer goes to monitor.log); False when the monitor did not
        answer within MONITOR_TIMEOUT."""
        try:
            said = await asyncio.wait_for(self.machine.hmp(command), MONITOR_TIMEOUT)
        except (TimeoutError, QMPError, OSError, EOFError) as exc:
            said, answered = f"no answer ({type(exc).__name__}: QEMU's main loop may be draining a held request)", False
        else:
            answered = True
        self.monitor_log.append(f"{self.machine.elapsed():.3f} {command}: {said.strip() or 'ok'}")
        return answered

    def _gpxe_said(self) -> str:
        """What gPXE printed on the screen between the sanboot command and its next prompt."""
        lines = self.machine.console.screen().splitlines()
        command = f"{GPXE_PROMPT} sanboot {self.script.root_path}"
        at = max((n for n, line in enumerate(lines) if command in line), default=-1)
        said = [line.strip() for line in lines[at + 1:] if line.strip() and not line.startswith(GPXE_PROMPT)]
        return " / ".join(said) or "(no message)"

    async def _await_power_off(self) -> None:
        """Give the guest a moment to finish and power off (it stops: -no-shutdown); a QEMU that exits
        ends the wait too."""
        if await self.machine.wait_status(("shutdown",), SHUTDOWN_GRACE) == "shutdown":
            self._mark("power_off")

    async def _watch(self) -> None:
        """A KVM internal error or a stopped VM (QMP events) ends the waits with the reason."""
        status = await self.machine.wait_status(("internal-error", "shutdown", "guest-panicked"))
        if status == "internal-error":
            self.kvm_failed = self.spec.accel == "kvm"
            self.machine.console.abort("QEMU stopped with an internal error (KVM could not run the guest)")
        elif status in ("shutdown", "guest-panicked"):
            await asyncio.sleep(0.5)  # let the console read the last output first
            if self.machine.shutdown_reason == "guest-reset":  # -no-reboot: a reset stops QEMU
                self.machine.console.abort("the machine reset (a triple fault, or the guest asked for a reset)")
            else:
                self.machine.console.abort(f"the guest stopped (QMP status {status}): it powered off, reset or "
                                           "crashed")
        # EXITED: QEMU is gone and the console reports end of file

    async def _failure_text(self, wait: Wait) -> str:
        """A failure marker with the line it appeared on."""
        assert wait.pattern is not None
        if wait.pattern == NO_BOOT_DEVICE:
            return "SeaBIOS printed \"No bootable device\" (the ROM returned without booting, nothing else booted)"
        if wait.pattern == SEABIOS_DISK_BOOT:
            return "SeaBIOS booted a disk itself (\"Booting from Hard Disk\"): the ROM returned without booting"
        console = self.machine.console
        if "sanboot" in self.timings and not self.script.exit_after_sanboot:
            back = await console.wait_for([GPXE_PROMPT], timeout=GPXE_RETURN_GRACE, since=wait.end)
            if back.matched:  # gPXE printed it and sanboot returned: quote gPXE's whole message
                return f"sanboot {self.script.root_path} returned to the gPXE prompt: {self._gpxe_said()}"
        return f"failure marker \"{shown(wait.pattern)}\" seen: {await self._marker_line(wait)}"

    async def _marker_line(self, wait: Wait) -> str:
        """The line a marker appeared on, from the serial text or the screen (after a moment for the rest)."""
        console = self.machine.console
        await asyncio.sleep(0.3)  # the rest of the line
        assert wait.pattern is not None
        text = console.text
        start = text.rfind("\n", 0, wait.end) + 1
        end = text.find("\n", wait.end)
        line = console.lines_between(start, end if end >= 0 else len(text))
        if line and not _contains(line[-1], wait.pattern):  # it matched on the screen
            line = [n for n in console.screen().splitlines() if _contains(n, wait.pattern)] or line
        return line[-1].strip() if line else shown(wait.pattern)

    def _write_screens(self) -> None:
        screens = self.machine.console.screens()
        parts = [f"----- screen {n} of {len(screens)}{' (then cleared)' if n < len(screens) else ''} -----\n{s}\n"
                 for n, s in enumerate(screens, 1)]
        atomic_write(self.run_dir / "screen.txt", "".join(parts))


def _contains(line: str, pattern: Pattern) -> bool:
    return pattern in line if isinstance(pattern, str) else bool(pattern.search(line))


def shown(pattern: Pattern) -> str:
    """A marker as the verdicts quote it: the text, or a regular expression's source."""
    return pattern if isinstance(pattern, str) else pattern.pattern
