"""`patchkit test`: build what is missing, boot each guest through the ROM, record results.

A ROM run boots a machine where the guest's virtio disk can only be booted through
the ROM (see patchkit.qemu.cmdline) and drives gPXE as its user does: Ctrl-B at the
"Press Ctrl-B" banner, then `sanboot ROOT-PATH` typed at the `gPXE>` prompt. A
reference run lets SeaBIOS boot the same disk natively. Either way the verdict
comes from the serial markers, then from the guest's own checks of its run disk.

Artifacts of each run are in ``runs/<id>/`` of the cache: serial.log (raw),
screen.txt (rendered screens, each kept before the guest cleared it), failure.png
and end.png, seabios.log (SeaBIOS's debug port), qemu-cmdline.txt, qemu-stderr.log,
timings.json (seconds from QEMU's start: gpxe_post, gpxe_banner, gpxe_prompt,
sanboot, boot_sector, success, power_off, total), result.json, and the run disk
when the run failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from qemu.qmp import QMPError

from patchkit import build
from patchkit.errors import PatchkitError, SeriesError, Terminated
from patchkit.guests import GUEST_NAMES, Guest, get_guest
from patchkit.qemu.aoe import aoe_target
from patchkit.qemu.cmdline import Drive, MachineSpec, Nic, check_spec, reference_spec
from patchkit.qemu.console import Wait
from patchkit.qemu.machine import Machine, qemu_version
from patchkit.series.io import find_series
from patchkit.store import ResultKey, Results, TestResult, atomic_write, cache_dir, sha256_file
from patchkit.upstream import load_pin

Progress = Callable[[str], None]

DEFAULT_ROOT_PATH = "virtio_blk:PCI00:04.0"
DEFAULT_STALL_TIMEOUT = 60.0
STEP_TIMEOUT = 30.0  # for one gPXE prompt step (banner, prompt, echo), within the overall timeout
SHUTDOWN_GRACE = 10.0  # after the success marker, time for the guest to power off
BLANK_DISK_BYTES = 8 << 20

# What gPXE and SeaBIOS print (facts about their output, matched as substrings).
GPXE_POST_BANNER = "Press Ctrl-B to configure gPXE"
GPXE_BANNER = "Press Ctrl-B for the gPXE command line"
GPXE_PROMPT = "gPXE>"
GPXE_SANBOOT_FAILED = "Could not boot from"  # sanboot_cmd.c, when sanboot returns
BOOT_MARKERS = ("Booting from BIOS drive", "Booting from SAN device", "Booting from INT 13", "Booting from Hard Disk",
                "Booting from Floppy")
NO_BOOT_DEVICE = "No bootable device"
NOT_VIRTIO = ("ide", "floppy", "aoe")  # guest disk places other than a virtio-blk slot


@dataclass(frozen=True)
class Layout:
    """Where the guest disk sits: a virtio PCI slot.function on bus 0, "ide" / "floppy" (bootindex 1),
    or "aoe" (served by vblade as e0.0 to a virtio-net NIC, see patchkit.qemu.aoe).

    ``blank_addrs`` adds zero-filled (non-bootable) virtio disks at those addresses.
    ``boot_floppy`` is an image for A: (bootindex 1, booted from a copy in the run directory).
    """

    guest_addr: str = "04.0"
    blank_addrs: tuple[str, ...] = ()
    boot_floppy: Path | None = None


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


def new_run_dir(guest: str) -> Path:
    """A fresh ``runs/<id>/`` directory in the cache."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = cache_dir() / "runs" / f"{stamp}-{guest}-{secrets.token_hex(3)}"
    path.mkdir(parents=True)
    return path


def boot_guest(
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
) -> BootOutcome:
    """Boot ``guest`` once (through ``rom``, or natively when ``rom`` is None) and judge it.

    ``gpxe_commands`` are typed at the gPXE prompt before `sanboot`. With
    ``exit_after_sanboot`` sanboot is expected to return to the prompt (its disk is
    not bootable); `exit` then leaves gPXE and the BIOS boots the next device (the
    keep-san set-up: a virtio disk that does not boot for sanboot, then the guest or the
    layout's boot floppy). ``expect_token``
    (default: the run's own token) is the token whose success marker counts, so a
    mismatch is a negative control. ``accel`` "auto" retries on TCG after a KVM error.
    """
    first, note = choose_accel(accel)
    script = _Script(root_path, list(gpxe_commands), exit_after_sanboot)
    outcome = _boot_once(guest, rom, script, first, timeout, stall_timeout, layout, expect_token)
    if note:
        outcome.notes.append(note)
    if outcome.kvm_failed and accel == "auto":
        retry = _boot_once(guest, rom, script, "tcg", timeout, stall_timeout, layout, expect_token)
        retry.notes.append(f"KVM failed ({outcome.reason}; run in {outcome.run_dir}): retried on TCG")
        return retry
    return outcome


@dataclass(frozen=True)
class _Script:
    """What to type at the gPXE prompt."""

    root_path: str
    commands: list[str]  # before sanboot
    exit_after_sanboot: bool


def boot_planned(guest: Guest, *, rom: Path | None, root_path: str = DEFAULT_ROOT_PATH, accel: str = "tcg",
                 timeout: float | None = None, stall_timeout: float = DEFAULT_STALL_TIMEOUT) -> BootOutcome:
    """Boot ``guest`` as its Sanboot plan says (commands, disk place, `exit` and A:), through ``rom``."""
    plan = guest.sanboot
    if rom is None and plan.needs_gpxe:
        raise PatchkitError(f"the {guest.name} guest runs gPXE commands: it needs a ROM (not --reference)")
    return boot_guest(guest, rom=rom, root_path=plan.root_path or root_path, accel=accel, timeout=timeout,
                      stall_timeout=stall_timeout, layout=Layout(plan.disk, boot_floppy=guest.boot_floppy()),
                      gpxe_commands=plan.commands, exit_after_sanboot=plan.exit_after_sanboot)


def _boot_once(guest: Guest, rom: Path | None, script: _Script, accel: str, timeout: float | None,
               stall_timeout: float, layout: Layout, expect_token: str | None) -> BootOutcome:
    run_dir = new_run_dir(guest.name)
    token = secrets.token_hex(6)
    disk = guest.make_run_disk(run_dir, token)
    with contextlib.ExitStack() as stack:
        nic = None
        if layout.guest_addr == "aoe":
            target = stack.enter_context(aoe_target(disk, run_dir))
            nic = Nic(target.netns, target.tap)
        spec = _machine_spec(run_dir, disk, rom, accel, layout, nic)
        session = _Session(guest, spec, run_dir, script, timeout or guest.default_timeout, stall_timeout,
                           guest.success_marker(expect_token or token))
        outcome = _run_interruptibly(session.run())
    problems = guest.verify_disk(disk, token)
    if outcome.passed and problems:
        outcome.passed = False
        outcome.reason = "the guest's disk check failed: " + "; ".join(problems)
    if outcome.passed:
        disk.unlink()  # a copy of the base image; a failed run keeps it for inspection
    atomic_write(run_dir / "timings.json", json.dumps(outcome.timings, indent=2) + "\n")
    atomic_write(run_dir / "result.json", json.dumps(
        {**asdict(outcome), "run_dir": str(run_dir), "token": token, "disk_problems": problems}, indent=2) + "\n")
    return outcome


def _run_interruptibly(boot: Coroutine[None, None, BootOutcome]) -> BootOutcome:
    """Run ``boot``; ^C (or SIGTERM) cancels it (stopping QEMU) and then raises KeyboardInterrupt (Terminated).

    asyncio.run also turns ^C into a cancellation, but Python 3.11's wait_for can swallow
    one that races with a wake-up (a busy serial console), and the boot would run on.
    """
    received: list[signal.Signals] = []
    sigterm_handler = signal.getsignal(signal.SIGTERM)

    async def main() -> BootOutcome:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_signal(sig: signal.Signals) -> None:
            received.append(sig)
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            return await boot
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            signal.signal(signal.SIGTERM, sigterm_handler)  # asyncio leaves SIG_DFL behind

    try:
        outcome = asyncio.run(main())
    except asyncio.CancelledError:
        received.append(signal.SIGINT)
    if signal.SIGTERM in received:
        raise Terminated
    if received:
        raise KeyboardInterrupt
    return outcome


def _machine_spec(run_dir: Path, disk: Path, rom: Path | None, accel: str, layout: Layout,
                  nic: Nic | None) -> MachineSpec:
    """The machine for one run: the guest disk (and blank disks) placed per ``layout``."""
    if rom is None and not (layout.blank_addrs or layout.boot_floppy) and layout.guest_addr not in NOT_VIRTIO:
        return reference_spec(disk, accel, pci_addr=layout.guest_addr)
    drives: list[Drive] = []
    if layout.boot_floppy is not None:
        floppy = run_dir / "boot-floppy.img"
        shutil.copyfile(layout.boot_floppy, floppy)
        drives.append(Drive(floppy, interface="floppy", bootindex=1))
    for addr in layout.blank_addrs:
        blank = run_dir / f"blank-{addr.replace('.', '-')}.img"
        with open(blank, "wb") as f:
            f.truncate(BLANK_DISK_BYTES)
        drives.append(Drive(blank, pci_addr=addr))
    if layout.guest_addr in ("ide", "floppy"):
        drives.append(Drive(disk, interface=layout.guest_addr, bootindex=1))
    elif layout.guest_addr != "aoe":  # an AoE disk is served by the run's target, not attached
        drives.append(Drive(disk, pci_addr=layout.guest_addr, bootindex=None if rom else 0))
    return check_spec(MachineSpec(drives=tuple(drives), rom=rom, accel=accel, nic=nic))


class _Failed(Exception):
    """A boot step did not see what it waited for (the message is the verdict's reason)."""


class _Session:
    """One QEMU boot: drive gPXE or SeaBIOS, watch the markers, keep the artifacts."""

    def __init__(self, guest: Guest, spec: MachineSpec, run_dir: Path, script: _Script, timeout: float,
                 stall_timeout: float, success: str) -> None:
        self.guest = guest
        self.spec = spec
        self.run_dir = run_dir
        self.script = script
        self.timeout = timeout
        self.stall_timeout = stall_timeout
        self.success = success
        self.failures = (*guest.failure_markers, NO_BOOT_DEVICE)
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
                self.timings["total"] = round(machine.elapsed(), 3)
            await machine.screendump(self.run_dir / "end.png")
        self._write_screens()
        return BootOutcome(passed, reason, self.spec.accel, self.run_dir, self.timings, kvm_failed=self.kvm_failed)

    async def _expect(self, patterns: Sequence[str], what: str, since: int, step: float | None = None,
                      prompt: bool = False) -> Wait:
        """Wait for ``patterns`` (or a failure marker); _Failed saying ``what`` was missing otherwise.

        ``prompt``: the patterns are interactive prompts, also matched on the cursor's screen line.
        """
        remaining = self.deadline - time.monotonic()
        wait = await self.machine.console.wait_for(
            [*patterns, *self.failures], timeout=min(remaining, step or remaining),
            stall_timeout=self.stall_timeout, since=since, on_cursor_line=prompt)
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
        if wait.pattern == GPXE_POST_BANNER:
            self._mark("gpxe_post")
            # Any key but Ctrl-B ends the ROM's ~4 s POST wait (and is consumed there); the wait
            # starts (emptying the keyboard buffer first) once the line ends with "...".
            line_end = await self.machine.console.wait_for(["..."], timeout=2, since=wait.end, on_cursor_line=True)
            if line_end.matched:
                await self.machine.send_key("spc")
            wait = await self._expect([GPXE_BANNER], "gPXE's \"Press Ctrl-B\" banner after POST", wait.end, prompt=True)
        self._mark("gpxe_banner")
        await self.machine.send_key("ctrl", "b")
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
        """Type ``command``, check gPXE echoed it, press Enter; the offset after the echo."""
        await self.machine.type_text(command)
        echo = await self._expect([f"{GPXE_PROMPT} {command}"], f"gPXE to echo `{command}`", since, STEP_TIMEOUT,
                                  prompt=True)
        await self.machine.send_key("ret")
        return echo.end

    async def _await_guest(self, since: int) -> str:
        """Wait for the success marker (noting the boot sector on the way); the verdict's reason."""
        patterns = [self.success, *BOOT_MARKERS]
        if self.spec.rom is not None and not self.script.exit_after_sanboot:
            patterns.append(GPXE_PROMPT)  # sanboot returned: it failed
        while True:
            wait = await self._expect(patterns, f"the guest's marker \"{self.success}\"", since)
            since = wait.end
            if wait.pattern in BOOT_MARKERS:
                self._mark("boot_sector")
                continue
            if wait.pattern == GPXE_PROMPT:
                raise _Failed(f"sanboot {self.script.root_path} returned to the gPXE prompt: {self._gpxe_said()}")
            self._mark("success")
            await self._await_power_off()
            return f"marker seen after {self.timings['success']:.1f} s"

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
        if wait.pattern == NO_BOOT_DEVICE:
            return "SeaBIOS printed \"No bootable device\" (the ROM returned without booting, nothing else booted)"
        await asyncio.sleep(0.3)  # the rest of the line
        text = self.machine.console.text
        start = text.rfind("\n", 0, wait.end) + 1
        end = text.find("\n", wait.end)
        line = self.machine.console.lines_between(start, end if end >= 0 else len(text))
        return f"failure marker \"{wait.pattern}\" seen: {line[-1] if line else wait.pattern}"

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


def resolve_subject(project: Path, series_name: str | None, rom: Path | None, reference: bool,
                    progress: Progress) -> tuple[Subject, tuple[str, ...]]:
    """What is under test and the series' guests; builds the series' ROM unless ``rom`` or ``reference``.

    A ``rom`` given by path is recorded as revision "rom-<sha256 prefix>", not as the
    series revision: nothing ties that file to the series' sources, so its results
    must not clear the send-email gate.
    """
    try:
        series = find_series(project, series_name)
        name, revision, version, guests = series.name, series.revision_hash(), series.version, tuple(series.guests)
    except SeriesError:
        if not (rom or reference):
            raise
        name, revision, version, guests = series_name or "-", "", 0, GUEST_NAMES
    if reference:
        return Subject(name, "reference", version, None, "", 0), guests
    if rom is None:
        built = build.ensure_series_rom(project, name, progress)
        return Subject(name, revision, version, built.path, built.sha256, built.size), guests
    if not rom.is_file():
        raise PatchkitError(f"ROM {rom} does not exist", hint="build it with `patchkit build` or drop --rom")
    rom_sha = sha256_file(rom)
    progress(f"note: --rom results are recorded as revision rom-{rom_sha[:12]} (not the series revision: "
             "they do not clear send-email; run without --rom for that)")
    return Subject(name, f"rom-{rom_sha[:12]}", version, rom.resolve(), rom_sha, rom.stat().st_size), guests


def _nic_subject(project: Path, subject: Subject, progress: Progress) -> Subject:
    """``subject`` with the series' NIC ROM (the pin's base_target built from the series), for AoE sanboot."""
    target = str(load_pin(project).build["base_target"])
    built = build.ensure_series_rom(project, subject.series, progress, target=target)
    return replace(subject, rom=built.path, rom_sha256=built.sha256, rom_size=built.size)


def run_tests(
    project: Path,
    guest_names: Sequence[str],
    *,
    series_name: str | None = None,
    rom: Path | None = None,
    accel: str = "auto",
    timeout: float | None = None,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    reference: bool = False,
    root_path: str = DEFAULT_ROOT_PATH,
    progress: Progress = print,
) -> list[TestResult]:
    """Boot each guest (names, or "all") against the series' ROM and record the results."""
    subject, series_guests = resolve_subject(project, series_name, rom, reference, progress)
    names = list(series_guests) if "all" in guest_names else list(dict.fromkeys(guest_names))
    guests = [get_guest(n) for n in names]
    if reference and (planned := [g.name for g in guests if g.sanboot.needs_gpxe]):
        raise PatchkitError(f"--reference boots without gPXE, and {', '.join(planned)} runs gPXE commands",
                            hint="run it without --reference")
    nic_subject: Subject | None = None
    images = {g.name: g.image_sha256() for g in guests}  # fails early, naming the build command
    qemu = qemu_version()
    results = []
    said: set[str] = set()
    with Results() as db:
        for guest in guests:
            tested = subject
            if guest.sanboot.nic_rom and rom is None and not reference:
                nic_subject = nic_subject or _nic_subject(project, subject, progress)
                tested = nic_subject
            progress(f"{guest.name}: booting {'natively (reference)' if reference else tested.rom} ...")
            outcome = boot_planned(guest, rom=tested.rom, root_path=root_path, accel=accel, timeout=timeout,
                                   stall_timeout=stall_timeout)
            for note in outcome.notes:
                if note not in said:
                    said.add(note)
                    progress(f"note: {note}")
            key = ResultKey(tested.series, tested.revision, tested.rom_sha256, guest.name, images[guest.name],
                            qemu, outcome.accel)
            result = TestResult(key=key, passed=outcome.passed, reason=outcome.reason, run_dir=str(outcome.run_dir),
                                timings=outcome.timings, rom_size=tested.rom_size, version=tested.version)
            db.record(result)
            results.append(result)
            progress(verdict_line(result))
    return results


def verdict_line(result: TestResult) -> str:
    """One line per guest: PASS/FAIL, guest, accelerator, reason, run directory."""
    word = "PASS" if result.passed else "FAIL"
    return f"{word} {result.key.guest} ({result.key.accel}): {result.reason} [run: {result.run_dir}]"

