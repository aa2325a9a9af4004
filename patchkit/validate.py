"""`patchkit test`: build what is missing, boot each guest through the ROM, record results.

A ROM run boots a machine where the guest's virtio disk can only be booted through
the ROM (see patchkit.qemu.cmdline) and drives gPXE as its user does: Ctrl-B for the
"Press Ctrl-B" banner (typed ahead once SeaBIOS starts gPXE), then `sanboot ROOT-PATH`
typed at the `gPXE>` prompt, fast, its echo checked as it comes (a garbled line is
cleared and typed again slowly). The ROM is the mailed one: only the typing is fast. A
reference run lets SeaBIOS boot the same disk natively. Either way the verdict
comes from the serial markers, then from the guest's own checks of its run disk.

Artifacts of each run are in ``runs/<id>/`` of the cache: serial.log (raw),
screen.txt (rendered screens, each kept before the guest cleared it), failure.png
and end.png, seabios.log (SeaBIOS's debug port), qemu-cmdline.txt, qemu-stderr.log,
timings.json (seconds from QEMU's start: gpxe_post, gpxe_banner, gpxe_prompt,
[ctrl_b_again, retyped,] sanboot, boot_sector, success, power_off, total), result.json,
and the run disk when the run failed.

A run of several boots (guests x configurations, see patchkit.matrix) shares one event
loop: at most ``jobs`` QEMUs at a time, each in its own run directory, every one
stopped and reaped when the run ends, also on ^C (exit 130) and SIGTERM (exit 143).
With a cluster each boot is a task of its workers instead (patchkit.cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import signal
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal, TypeVar

from qemu.qmp import QMPError

from patchkit import build
from patchkit.errors import PatchkitError, SeriesError, Terminated
from patchkit.guests import GUEST_NAMES, Guest
from patchkit.guests.image import DEFAULT_EXPECT, DEFAULT_TIMEOUT, ImageGuest, ImageSpec
from patchkit.matrix import Cell, plan_cells, select_configs, summary_table
from patchkit.pin import Pin
from patchkit.progress import Progress
from patchkit.project import Project
from patchkit.qemu.aoe import aoe_target
from patchkit.qemu.cmdline import Drive, MachineSpec, Nic, check_spec, drive_id, reference_spec
from patchkit.qemu.console import Pattern, Wait
from patchkit.qemu.machine import KEY_HOLD_MS, Machine, qemu_version
from patchkit.rom import check_rom_for
from patchkit.series.model import DEFAULT_ROOT_PATH, IMPLICIT_CONFIG, Config, Hold, InjectError, qemu_value
from patchkit.store import ResultKey, TestResult, atomic_write, sha256_file

_T = TypeVar("_T")

DEFAULT_STALL_TIMEOUT = 60.0
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
BLANK_DISK_BYTES = 8 << 20

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
NOT_VIRTIO = ("ide", "floppy", "aoe")  # guest disk places other than a virtio-blk slot


@dataclass(frozen=True)
class Layout:
    """Where the guest disk sits: a virtio PCI slot.function on bus 0, "ide" / "floppy" (bootindex 1),
    or "aoe" (served by vblade as e0.0 to a virtio-net NIC, see patchkit.qemu.aoe).

    ``blank_addrs`` adds zero-filled (non-bootable) virtio disks at those addresses;
    ``bios_addrs`` more of them with a bootindex after the ROM, so SeaBIOS drives them itself.
    ``boot_floppy`` is an image for A: (bootindex 1, booted from a copy in the run directory).
    ``machine``, ``strict_boot``, ``readonly`` and ``properties`` (of the guest's virtio disk)
    are a configuration's (see patchkit.qemu.cmdline), as are ``inject_error`` and ``hold``,
    which put the guest disk behind QEMU's blkdebug driver (its config is the run's blkdebug.conf).
    """

    guest_addr: str = "04.0"
    blank_addrs: tuple[str, ...] = ()
    boot_floppy: Path | None = None
    bios_addrs: tuple[str, ...] = ()
    machine: str = "pc"
    strict_boot: bool = True
    readonly: bool = False
    properties: tuple[tuple[str, str], ...] = ()
    inject_error: InjectError | None = None
    hold: Hold | None = None

    @classmethod
    def for_cell(cls, config: Config, guest: Guest) -> Layout:
        """The layout of ``guest`` on ``config``: the guest's own plan wins for a disk that is not virtio."""
        plan = guest.sanboot
        return cls(guest_addr=plan.disk if plan.disk in NOT_VIRTIO else config.disk_addr,
                   blank_addrs=config.blank_disks, boot_floppy=guest.boot_floppy(), bios_addrs=config.bios_disks,
                   machine=config.machine, strict_boot=config.boot == "strict", readonly=config.readonly,
                   properties=tuple((k, qemu_value(v)) for k, v in config.virtio_blk),
                   inject_error=config.inject_error, hold=config.hold or guest.hold)


@dataclass
class BootOutcome:
    """What one boot showed: the verdict, why, and where its artifacts are."""

    passed: bool
    reason: str
    accel: str
    run_dir: Path
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    kvm_failed: bool = False  # QEMU reported a KVM internal error (retry on TCG)


def choose_accel(requested: str) -> tuple[str, str]:
    """The accelerator to try first for ``requested`` (auto|kvm|tcg), and a note on why."""
    if requested in ("kvm", "tcg"):
        return requested, ""
    if requested != "auto":
        raise PatchkitError(f"unknown accelerator {requested!r}: use auto, kvm or tcg")
    if Path("/sys/module/kvm_pvm").exists():
        return "tcg", "KVM is the kvm_pvm software module (cannot run real-mode guests): using TCG"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg", "/dev/kvm is not usable: using TCG"
    return "kvm", ""


def new_run_dir(runs: Path, label: str) -> Path:
    """A fresh ``<runs>/<id>/`` directory (``label``: the guest, or config-guest)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = runs / f"{stamp}-{re.sub(r'[^A-Za-z0-9._-]', '-', label)}-{secrets.token_hex(3)}"
    path.mkdir(parents=True)
    return path


def boot_guest(guest: Guest, *, rom: Path | None, root_path: str = DEFAULT_ROOT_PATH, accel: str = "tcg",
               timeout: float | None = None, stall_timeout: float = DEFAULT_STALL_TIMEOUT, layout: Layout = Layout(),
               gpxe_commands: Sequence[str] = (), exit_after_sanboot: bool = False, expect_token: str | None = None,
               expect_refusal: str | None = None, expect_failure: str | None = None) -> BootOutcome:
    """boot_guest_async, run to its end (^C stops QEMU and raises KeyboardInterrupt)."""
    return _run_interruptibly(boot_guest_async(
        guest, rom=rom, root_path=root_path, accel=accel, timeout=timeout, stall_timeout=stall_timeout,
        layout=layout, gpxe_commands=gpxe_commands, exit_after_sanboot=exit_after_sanboot,
        expect_token=expect_token, expect_refusal=expect_refusal, expect_failure=expect_failure))


async def boot_guest_async(
    guest: Guest,
    *,
    rom: Path | None,
    root_path: str = DEFAULT_ROOT_PATH,
    accel: str = "tcg",
    timeout: float | None = None,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    layout: Layout = Layout(),
    gpxe_commands: Sequence[str] = (),
    exit_after_sanboot: bool = False,
    expect_token: str | None = None,
    expect_refusal: str | None = None,
    expect_failure: str | None = None,
    label: str | None = None,
) -> BootOutcome:
    """Boot ``guest`` once (through ``rom``, or natively when ``rom`` is None) and judge it.

    ``gpxe_commands`` are typed at the gPXE prompt before `sanboot`. With
    ``exit_after_sanboot`` sanboot is expected to return to the prompt (its disk is
    not bootable); `exit` then leaves gPXE and the BIOS boots the next device (the
    keep-san set-up: a virtio disk that does not boot for sanboot, then the guest or the
    layout's boot floppy). ``expect_token``
    (default: the run's own token) is the token whose success marker counts, so a
    mismatch is a negative control. ``accel`` "auto" retries on TCG after a KVM error.
    With ``expect_refusal`` (a regex) the boot passes only when sanboot returns to the
    gPXE prompt with a message matching it; booting, another message or a hang fail it.
    With ``expect_failure`` it passes only when the guest reports a failure (the line of its
    failure marker) matching it. ``label`` names the run directory (default: the guest's name).
    """
    first, note = choose_accel(accel)
    refusal = re.compile(expect_refusal) if expect_refusal is not None else None
    if refusal is not None and (rom is None or exit_after_sanboot):
        raise PatchkitError("a refusal is checked at the gPXE prompt: it needs a ROM and a sanboot that boots")
    failure = re.compile(expect_failure) if expect_failure is not None else None
    script = _Script(root_path, list(gpxe_commands), exit_after_sanboot, refusal, failure, layout.hold)
    label = label or guest.name
    outcome = await _boot_once(guest, rom, script, first, timeout, stall_timeout, layout, expect_token, label)
    if note:
        outcome.notes.append(note)
    if outcome.kvm_failed and accel == "auto":
        retry = await _boot_once(guest, rom, script, "tcg", timeout, stall_timeout, layout, expect_token, label)
        retry.notes.append(f"KVM failed ({outcome.reason}; run in {outcome.run_dir}): retried on TCG")
        return retry
    return outcome


@dataclass(frozen=True)
class _Script:
    """What to type at the gPXE prompt."""

    root_path: str
    commands: list[str]  # before sanboot
    exit_after_sanboot: bool
    refusal: re.Pattern[str] | None = None  # sanboot must return with a message matching this
    failure: re.Pattern[str] | None = None  # the guest must report a failure matching this
    hold: Hold | None = None  # a request to hold back at the guest's markers


def boot_planned(guest: Guest, *, rom: Path | None, config: Config | None = None, root_path: str | None = None,
                 accel: str = "tcg", timeout: float | None = None,
                 stall_timeout: float = DEFAULT_STALL_TIMEOUT) -> BootOutcome:
    """boot_planned_async, run to its end (^C stops QEMU and raises KeyboardInterrupt)."""
    return _run_interruptibly(boot_planned_async(guest, rom=rom, config=config, root_path=root_path, accel=accel,
                                                 timeout=timeout, stall_timeout=stall_timeout))


async def boot_planned_async(guest: Guest, *, rom: Path | None, config: Config | None = None,
                             root_path: str | None = None, accel: str = "tcg", timeout: float | None = None,
                             stall_timeout: float = DEFAULT_STALL_TIMEOUT) -> BootOutcome:
    """Boot ``guest`` on ``config`` (default: the implicit "pc") as its Sanboot plan says, through ``rom``.

    The plan's commands, `exit` and A: apply on every configuration; its own root path and
    a disk that is not a virtio slot (AoE) win over the configuration's; ``root_path``
    (the command's --root-path) wins over the configuration's.
    """
    plan = guest.sanboot
    config = config or Config(name=IMPLICIT_CONFIG, guests=(guest.name,))
    if rom is None and plan.needs_gpxe:
        raise PatchkitError(f"the {guest.name} guest runs gPXE commands: it needs a ROM (not --reference)")
    return await boot_guest_async(
        guest, rom=rom, root_path=plan.root_path or root_path or config.root_path, accel=accel, timeout=timeout,
        stall_timeout=stall_timeout, layout=Layout.for_cell(config, guest), gpxe_commands=plan.commands,
        exit_after_sanboot=plan.exit_after_sanboot, expect_refusal=config.expect_refusal,
        expect_failure=config.expect_failure,
        label=guest.name if config.name == IMPLICIT_CONFIG else f"{config.name}-{guest.name}")


async def _boot_once(guest: Guest, rom: Path | None, script: _Script, accel: str, timeout: float | None,
                     stall_timeout: float, layout: Layout, expect_token: str | None, label: str) -> BootOutcome:
    run_dir = new_run_dir(guest.store.runs, label)  # beside the guest's image, in its store
    token = secrets.token_hex(6)
    disk = await asyncio.to_thread(guest.make_run_disk, run_dir, token)
    with contextlib.ExitStack() as stack:
        nic = None
        if layout.guest_addr == "aoe":
            target = stack.enter_context(aoe_target(disk, run_dir))
            nic = Nic(target.netns, target.tap)
        spec = await asyncio.to_thread(_machine_spec, run_dir, disk, rom, accel, layout, nic, guest.disk_format)
        spec = replace(spec, memory_mib=guest.memory_mib)
        session = _Session(guest, spec, run_dir, script, timeout or guest.default_timeout, stall_timeout,
                           guest.success_marker(expect_token or token),
                           drive_id(spec, disk) if layout.guest_addr != "aoe" else "")
        outcome = await session.run()
    # A refused sanboot never started the guest, a guest reporting a fault stopped half-way:
    # neither left its own checks on the disk.
    expected_stop = script.refusal is not None or script.failure is not None
    problems = [] if expected_stop else await asyncio.to_thread(guest.verify_disk, disk, token)
    if outcome.passed and problems:
        outcome.passed = False
        outcome.reason = "the guest's disk check failed: " + "; ".join(problems)
    if outcome.passed:
        disk.unlink()  # a copy of the base image; a failed run keeps it for inspection
    atomic_write(run_dir / "timings.json", json.dumps(outcome.timings, indent=2) + "\n")
    atomic_write(run_dir / "result.json", json.dumps(
        {**asdict(outcome), "run_dir": str(run_dir), "token": token, "disk_problems": problems}, indent=2) + "\n")
    return outcome


def _run_interruptibly(work: Coroutine[None, None, _T]) -> _T:
    """Run ``work``; ^C or SIGTERM cancels it (stopping every QEMU it started), then raises
    KeyboardInterrupt (^C) or Terminated (SIGTERM).

    asyncio.run also turns ^C into a cancellation, but Python 3.11's wait_for can swallow
    one that races with a wake-up (a busy serial console), and the boot would run on: the
    handler cancels again on each signal until the work has ended.
    """
    received: list[signal.Signals] = []
    sigterm_handler = signal.getsignal(signal.SIGTERM)

    async def main() -> _T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_signal(sig: signal.Signals) -> None:
            received.append(sig)
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            return await work
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            signal.signal(signal.SIGTERM, sigterm_handler)  # asyncio leaves SIG_DFL behind

    try:
        result = asyncio.run(main())
    except asyncio.CancelledError:
        received.append(signal.SIGINT)
    if signal.SIGTERM in received:
        raise Terminated
    if received:
        raise KeyboardInterrupt
    return result


def _machine_spec(run_dir: Path, disk: Path, rom: Path | None, accel: str, layout: Layout,
                  nic: Nic | None, disk_format: Literal["raw", "qcow2"] = "raw") -> MachineSpec:
    """The machine for one run: the guest disk (and blank disks) placed per ``layout``."""
    if rom is None and not (layout.blank_addrs or layout.boot_floppy) and layout.guest_addr not in NOT_VIRTIO:
        return reference_spec(disk, accel, pci_addr=layout.guest_addr, disk_format=disk_format)
    drives: list[Drive] = []
    if layout.boot_floppy is not None:
        floppy = run_dir / "boot-floppy.img"
        shutil.copyfile(layout.boot_floppy, floppy)
        drives.append(Drive(floppy, interface="floppy", bootindex=1))
    first_busy = 1 + len(drives)  # SeaBIOS's disks come after the ROM (0) and A:
    for n, addr in enumerate((*layout.blank_addrs, *layout.bios_addrs)):
        blank = run_dir / f"blank-{addr.replace('.', '-')}.img"
        with open(blank, "wb") as f:
            f.truncate(BLANK_DISK_BYTES)
        busy = n >= len(layout.blank_addrs)
        drives.append(Drive(blank, pci_addr=addr, blank=True,
                            bootindex=first_busy + n - len(layout.blank_addrs) if busy else None))
    if layout.guest_addr in ("ide", "floppy"):
        drives.append(Drive(disk, interface="ide" if layout.guest_addr == "ide" else "floppy", bootindex=1,
                            readonly=layout.readonly, format=disk_format))
    elif layout.guest_addr != "aoe":  # an AoE disk is served by the run's target, not attached
        drives.append(Drive(disk, pci_addr=layout.guest_addr, bootindex=None if rom else 0, readonly=layout.readonly,
                            properties=layout.properties, format=disk_format,
                            blkdebug=_blkdebug_config(run_dir, layout)))
    return check_spec(MachineSpec(drives=tuple(drives), rom=rom, accel=accel, nic=nic, machine=layout.machine,
                                  strict_boot=layout.strict_boot))


def _blkdebug_config(run_dir: Path, layout: Layout) -> Path | None:
    """The run's blkdebug.conf for a layout that injects errors or holds a request (else None)."""
    if layout.inject_error is None and (layout.hold is None or layout.hold.via != "blkdebug"):
        return None
    text = ""
    if (fault := layout.inject_error) is not None:
        text = f'[inject-error]\nevent = "{fault.event}"\nerrno = "{fault.errno}"\n'
        text += f'sector = "{fault.sector}"\n' if fault.sector is not None else ""
        text += f'once = "{"on" if fault.once else "off"}"\n'
    path = run_dir / BLKDEBUG_CONFIG
    atomic_write(path, text)
    return path


class _Failed(Exception):
    """A boot step did not see what it waited for (the message is the verdict's reason)."""


class _Session:
    """One QEMU boot: drive gPXE or SeaBIOS, watch the markers, keep the artifacts."""

    def __init__(self, guest: Guest, spec: MachineSpec, run_dir: Path, script: _Script, timeout: float,
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
        self.kvm_failed = False
        self.deadline = 0.0
        self.machine: Machine

    async def run(self) -> BootOutcome:
        passed, reason = False, ""
        async with Machine(self.spec, self.run_dir) as machine:
            self.machine = machine
            self.deadline = time.monotonic() + self.timeout
            watcher = asyncio.create_task(self._watch())
            holder = asyncio.create_task(self._hold()) if self.script.hold is not None else None
            try:
                if self.spec.rom is not None:
                    since = await self._drive_gpxe()
                else:
                    since = 0
                reason = await self._await_guest(since)
                passed = True
            except _Failed as failure:
                reason = str(failure)
                await machine.screendump(self.run_dir / "failure.png")
            except (QMPError, OSError, EOFError) as exc:  # QEMU went away under us
                reason = f"lost control of QEMU ({type(exc).__name__}: {exc}); see qemu-stderr.log"
            finally:
                watcher.cancel()
                if holder is not None:
                    holder.cancel()
                    await self._release_held()
                self.timings["total"] = round(machine.elapsed(), 3)
            await machine.screendump(self.run_dir / "end.png")
        self._write_screens()
        if self.monitor_log:
            atomic_write(self.run_dir / "monitor.log", "\n".join(self.monitor_log) + "\n")
        return BootOutcome(passed, reason, self.spec.accel, self.run_dir, self.timings, kvm_failed=self.kvm_failed)

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
        return await self._type("exit", wait.end)

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
        """Give the guest a moment to finish and power off (it stops: -no-shutdown)."""
        end = time.monotonic() + SHUTDOWN_GRACE
        while time.monotonic() < end and self.machine.running():
            if await self.machine.status() == "shutdown":
                self._mark("power_off")
                return
            await asyncio.sleep(0.1)

    async def _watch(self) -> None:
        """Poll QMP: a KVM internal error or a stopped VM ends the waits with the reason."""
        while True:
            await asyncio.sleep(0.25)
            try:
                status = await self.machine.status()
            except (QMPError, OSError, EOFError):
                return  # QEMU exited: the console reports end of file
            if status == "internal-error":
                self.kvm_failed = self.spec.accel == "kvm"
                self.machine.console.abort("QEMU stopped with an internal error (KVM could not run the guest)")
                return
            if status in ("shutdown", "guest-panicked"):
                await asyncio.sleep(0.5)  # let the console read the last output first
                self.machine.console.abort(f"the guest stopped (QMP status {status}): it powered off, reset or crashed")
                return

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


# --- the command ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """What the results are recorded against."""

    series: str
    revision: str
    version: int
    rom: Path | None
    rom_sha256: str
    rom_size: int


def resolve_subject(project: Project, series_name: str | None, rom: Path | None, reference: bool,
                    progress: Progress) -> tuple[Subject, list[Config]]:
    """What is under test and the series' configurations; builds the series' ROM unless ``rom`` or ``reference``.

    A ``rom`` given by path is recorded as revision "rom-<sha256 prefix>", not as the
    series revision: nothing ties that file to the series' sources, so its results
    must not clear the send-email gate.
    """
    try:
        series = project.series(series_name)
        name, revision, version, configs = series.name, series.revision_hash(), series.version, series.test_configs()
    except SeriesError:
        if not (rom or reference):
            raise
        name, revision, version, configs = series_name or "-", "", 0, [Config(IMPLICIT_CONFIG, GUEST_NAMES)]
    if reference:
        return Subject(name, "reference", version, None, "", 0), configs
    if rom is None:
        built = build.ensure_series_rom(project, name, progress)
        return Subject(name, revision, version, built.path, built.sha256, built.size), configs
    if not rom.is_file():
        raise PatchkitError(f"ROM {rom} does not exist", hint="build it with `patchkit build` or drop --rom")
    check_given_rom(project.pin, rom)
    rom_sha = sha256_file(rom)
    progress(f"note: --rom results are recorded as revision rom-{rom_sha[:12]} (not the series revision: "
             "they do not clear send-email; run without --rom for that)")
    return Subject(name, f"rom-{rom_sha[:12]}", version, rom.resolve(), rom_sha, rom.stat().st_size), configs


def manifest_images(project: Project, series_name: str | None) -> dict[str, ImageSpec]:
    """The manifest's ``[[images]]`` by name (none without a series)."""
    try:
        series = project.series(series_name)
    except SeriesError:
        return {}
    assert series.path is not None
    return {i.name: ImageSpec(series.path / Path(i.path).expanduser(), name=i.name, expect=i.expect or DEFAULT_EXPECT,
                              fail=i.fail, timeout=i.timeout or DEFAULT_TIMEOUT) for i in series.images}


def check_given_rom(pin: Pin, rom: Path) -> None:
    """The checks `patchkit build` applies, for a ROM given by path: for the pin's device, or its base target's."""
    ids = list(dict.fromkeys([build.rom_ids(pin, pin.build.target), build.rom_ids(pin, pin.build.base_target)]))
    names = " or ".join(f"{vendor:04x}:{device:04x}" for vendor, device in ids)
    check_rom_for(rom, ids, hint=f"pass a ROM built for {names}, or drop --rom to test the series' own")


def _nic_subject(project: Project, subject: Subject, progress: Progress) -> Subject:
    """``subject`` with the series' NIC ROM (the pin's base_target built from the series), for AoE sanboot."""
    built = build.ensure_series_rom(project, subject.series, progress, target=project.pin.build.base_target)
    return replace(subject, rom=built.path, rom_sha256=built.sha256, rom_size=built.size)


def run_tests(
    project: Project,
    guest_names: Sequence[str],
    *,
    series_name: str | None = None,
    configs: Sequence[str] = (),
    matrix: bool = False,
    jobs: int | None = None,
    rom: Path | None = None,
    accel: str = "auto",
    timeout: float | None = None,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    reference: bool = False,
    root_path: str | None = None,
    user_images: Sequence[ImageSpec] = (),
    cluster: str | None = None,
    progress: Progress = print,
) -> list[TestResult]:
    """Boot guests (names, or "all") x configurations against the series' ROM and record the results.

    ``configs`` names configurations of the manifest, ``matrix`` takes them all, neither
    the first (see patchkit.matrix.plan_cells for which guests run). ``jobs`` boots run at
    once (default: the number of CPUs). One line per finished boot goes to ``progress``, and
    a configuration x guest table at the end of a run of several. Cells that cannot run
    (a guest without the configuration's disk shape) are reported, then raised as
    PatchkitError once the others have run. ``user_images`` (`--image`) boot on
    each chosen configuration besides the guests. With ``cluster`` (a Dask scheduler's
    address) every boot is a task of that cluster (patchkit.cluster), recorded as a local one
    plus the worker's name; ``jobs`` does not apply (each worker boots as many at once as it
    has threads).
    """
    # A missing or unknown image fails before any build.
    image_guests = [ImageGuest(project.store, spec) for spec in user_images]
    subject, series_configs = resolve_subject(project, series_name, rom, reference, progress)
    chosen = select_configs(series_configs, configs, matrix)
    if reference and (matrix or configs):
        raise PatchkitError("--reference boots the guests natively on the default machine: drop --config/--matrix")
    wanted = {*guest_names, *(name for config in chosen for name in config.guests)}
    extra = {name: ImageGuest(project.store, spec)
             for name, spec in manifest_images(project, series_name).items() if name in wanted}
    plan = plan_cells(project.store, chosen, guest_names, matrix, extra=extra)
    plan.cells.extend(Cell(config, guest) for config in chosen for guest in image_guests)
    if not plan.cells:
        first = next(iter(plan.unrunnable.items()), None)
        if first is None:
            raise PatchkitError("no guest to boot in these configurations")
        raise PatchkitError(f"{'/'.join(first[0])}: {first[1]}")
    if reference and (planned := sorted({c.guest.name for c in plan.cells if c.guest.sanboot.needs_gpxe})):
        raise PatchkitError(f"--reference boots without gPXE, and {', '.join(planned)} runs gPXE commands",
                            hint="run it without --reference")
    for cell in plan.cells:  # an image made of patchkit's own sources (the probe's, its variants) is built on demand
        if cell.guest.self_contained:
            cell.guest.build(progress)
    images = {id(c): c.guest.image_sha256() for c in plan.cells}  # fails early, naming the build command
    subjects = {id(c): subject for c in plan.cells}
    if rom is None and not reference and any(c.guest.sanboot.nic_rom for c in plan.cells):
        nic_subject = _nic_subject(project, subject, progress)
        subjects.update({id(c): nic_subject for c in plan.cells if c.guest.sanboot.nic_rom})
    qemu = "" if cluster else qemu_version()  # the client of a cluster need not have QEMU
    jobs = max(1, jobs or os.cpu_count() or 1)
    for (config, guest), why in plan.unrunnable.items():
        progress(f"NOT RUN {config}/{guest}: {why}")
    results: list[TestResult] = []
    errors = dict(plan.unrunnable)  # cells that did not run, and why
    said: set[str] = set()

    from patchkit.cluster.client import BootOptions, RemoteCell, boot_on_cluster  # it imports this module
    from patchkit.cluster.engine import connect

    with project.store.results() as db, contextlib.ExitStack() as stack:
        cells = longest_first(plan.cells, db.durations(subject.series))
        remote = None if cluster is None else stack.enter_context(connect(cluster))
        where = f"{jobs} at a time" if remote is None else f"on the cluster at {cluster}, {remote.workers()} workers"
        for tested in dict.fromkeys(subjects.values()):
            users = [c.name for c in plan.cells if subjects[id(c)] is tested]
            through = "natively (reference)" if reference else f"through {tested.rom}"
            progress(f"booting {', '.join(users)} {through}" + (" ..." if remote is None else f", {where} ...")
                     if len(users) < 4 else f"booting {len(users)} cells {through}, {where} ...")
        started = time.monotonic()

        def record(cell: Cell, outcome: BootOutcome, qemu_version: str, worker: str = "") -> None:
            tested = subjects[id(cell)]
            for note in outcome.notes:
                if note not in said:
                    said.add(note)
                    progress(f"note: {note}")
            key = ResultKey(tested.series, tested.revision, tested.rom_sha256, cell.guest.name, images[id(cell)],
                            qemu_version, outcome.accel, cell.config.name)
            result = TestResult(key=key, passed=outcome.passed, reason=outcome.reason, run_dir=str(outcome.run_dir),
                                timings=outcome.timings, rom_size=tested.rom_size, version=tested.version,
                                worker=worker)
            db.record(result)
            results.append(result)
            progress(verdict_line(result))

        def not_run(cell: Cell, why: str) -> None:  # no verdict on the ROM (e.g. QEMU refused the configuration)
            errors[cell.config.name, cell.guest.name] = why
            progress(f"NOT RUN {cell.name}: {why}")

        async def one(cell: Cell, slots: asyncio.Semaphore) -> None:
            async with slots:
                try:
                    outcome = await boot_planned_async(cell.guest, rom=subjects[id(cell)].rom, config=cell.config,
                                                       root_path=root_path, accel=accel, timeout=timeout,
                                                       stall_timeout=stall_timeout)
                except PatchkitError as exc:
                    not_run(cell, str(exc))
                    return
            record(cell, outcome, qemu)

        if remote is None:
            _run_interruptibly(_gather_limited(jobs, [functools.partial(one, cell) for cell in cells]))
        else:
            boot_on_cluster(remote, [RemoteCell(c, subjects[id(c)].rom, subjects[id(c)].rom_sha256) for c in cells],
                            BootOptions(root_path, accel, timeout, stall_timeout), runs=project.store.runs,
                            record=record, not_run=not_run, progress=progress)
    if len(plan.cells) + len(plan.unrunnable) > 1:
        verdicts = {(r.key.config, r.key.guest): "pass" if r.passed else "FAIL" for r in results}
        verdicts.update({cell: "not run" for cell in errors})
        progress(f"results ({len(results)} boots in {time.monotonic() - started:.0f} s, {where}):")
        for line in summary_table(chosen, verdicts):
            progress("  " + line)
    if errors:
        raise PatchkitError(f"{len(errors)} cell(s) could not run: {', '.join('/'.join(c) for c in errors)}",
                            hint="see the NOT RUN lines above")
    return results


def longest_first(cells: Sequence[Cell], took: Mapping[tuple[str, str], float]) -> list[Cell]:
    """``cells`` by how long each is expected to boot, longest first (so that none of the long ones starts
    last, while the other jobs sit idle): as long as its newest boot took (``took``), a cell never booted
    its guest's timeout. Ties keep their order."""
    return sorted(cells, key=lambda c: took.get((c.config.name, c.guest.name), c.guest.default_timeout), reverse=True)


async def _gather_limited(jobs: int,
                          work: Sequence[Callable[[asyncio.Semaphore], Coroutine[None, None, None]]]) -> None:
    """Run every ``work(slots)``, at most ``jobs`` holding a slot at once; the first error cancels the rest."""
    slots = asyncio.Semaphore(jobs)
    async with asyncio.TaskGroup() as group:
        for start in work:
            group.create_task(start(slots))


def _contains(line: str, pattern: Pattern) -> bool:
    return pattern in line if isinstance(pattern, str) else bool(pattern.search(line))


def shown(pattern: Pattern) -> str:
    """A marker as the verdicts quote it: the text, or a regular expression's source."""
    return pattern if isinstance(pattern, str) else pattern.pattern


def verdict_line(result: TestResult) -> str:
    """One line per boot: PASS/FAIL, guest, configuration, accelerator (and cluster worker), reason, run directory."""
    word = "PASS" if result.passed else "FAIL"
    where = f"{result.key.accel}, worker {result.worker}" if result.worker else result.key.accel
    return f"{word} {result.key.guest} on {result.key.config} ({where}): {result.reason} [run: {result.run_dir}]"
