"""One boot, start to verdict: a run directory, the guest's run disk, the session, the disk checks.

Artifacts of each run are in ``runs/<id>/`` of the store: serial.log (raw),
screen.txt (rendered screens, each kept before the guest cleared it), marker.png (the
screen when the guest's marker showed), failure.png and end.png, seabios.log (SeaBIOS's
debug port), qemu-cmdline.txt, qemu-stderr.log, reproduce.sh (the boot by hand,
patchkit.boot.reproduce), timings.json (seconds from QEMU's start: gpxe_post, gpxe_banner,
gpxe_prompt, [ctrl_b_again, retyped,] sanboot, boot_sector, success, power_off, total),
result.json (the verdict, and the figures the guest and the harness measured: held_read_s,
requests_per_call), the run disk when the run failed, and with ``trace`` QEMU's translation
log (translated.log, for patchkit.coverage). The verdict comes from the serial markers, then
from the guest's own checks of its run disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import secrets
import signal
import time
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from patchkit.boot.accel import choose_accel
from patchkit.boot.layout import Layout, machine_spec
from patchkit.boot.reproduce import START_DISK, start_overlay, write_reproducer
from patchkit.boot.session import Script, Session
from patchkit.errors import PatchkitError, Terminated
from patchkit.guests import Guest
from patchkit.qemu.aoe import aoe_target
from patchkit.qemu.cmdline import MachineSpec, Nic, drive_id
from patchkit.series.model import DEFAULT_ROOT_PATH, IMPLICIT_CONFIG, Config
from patchkit.store import atomic_write

_T = TypeVar("_T")

DEFAULT_STALL_TIMEOUT = 60.0


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
    figures: dict[str, float] = field(default_factory=dict)  # measured, never asserted on (held_read_s, ...)


LABEL_MAX = 80  # characters of a run directory's label (the guest, or config-guest)


def new_run_dir(runs: Path, label: str) -> Path:
    """A fresh ``<runs>/<id>/`` directory (``label``: the guest, or config-guest)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    plain = re.sub(r"[^A-Za-z0-9._-]", "-", label)
    if len(plain) > LABEL_MAX:  # a file name is at most 255 bytes: a long image name is cut, kept apart by its hash
        plain = f"{plain[:LABEL_MAX - 9]}-{hashlib.sha256(label.encode()).hexdigest()[:8]}"
    path = runs / f"{stamp}-{plain}-{secrets.token_hex(3)}"
    path.mkdir(parents=True)
    return path


def boot_guest(guest: Guest, *, rom: Path | None, root_path: str = DEFAULT_ROOT_PATH, accel: str = "tcg",
               timeout: float | None = None, stall_timeout: float = DEFAULT_STALL_TIMEOUT, layout: Layout = Layout(),
               gpxe_commands: Sequence[str] = (), exit_after_sanboot: bool = False, after_sanboot: str = "exit",
               expect_token: str | None = None, expect_refusal: str | None = None,
               expect_failure: str | None = None) -> BootOutcome:
    """boot_guest_async, run to its end (^C stops QEMU and raises KeyboardInterrupt)."""
    return run_interruptibly(boot_guest_async(
        guest, rom=rom, root_path=root_path, accel=accel, timeout=timeout, stall_timeout=stall_timeout,
        layout=layout, gpxe_commands=gpxe_commands, exit_after_sanboot=exit_after_sanboot, after_sanboot=after_sanboot,
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
    after_sanboot: str = "exit",
    expect_token: str | None = None,
    expect_refusal: str | None = None,
    expect_failure: str | None = None,
    label: str | None = None,
    trace: bool = False,
    memory_mib: int | None = None,
) -> BootOutcome:
    """Boot ``guest`` once (through ``rom``, or natively when ``rom`` is None) and judge it.

    ``gpxe_commands`` are typed at the gPXE prompt before `sanboot`. With
    ``exit_after_sanboot`` sanboot is expected to return to the prompt (its disk is
    not bootable); ``after_sanboot`` (`exit`) is typed then: gPXE exits and the BIOS boots the
    next device (the keep-san set-up: a virtio disk that does not boot for sanboot, then the
    guest or the layout's boot floppy), or gPXE runs another command (`imgexec` of an image). ``expect_token``
    (default: the run's own token) is the token whose success marker counts, so a
    mismatch is a negative control. ``accel`` "auto" retries on TCG after a KVM error.
    With ``expect_refusal`` (a regex) the boot passes only when sanboot returns to the
    gPXE prompt with a message matching it; booting, another message or a hang fail it.
    With ``expect_failure`` it passes only when the guest reports a failure (the line of its
    failure marker) matching it. ``label`` names the run directory (default: the guest's name).
    ``memory_mib``: the machine's memory (default: the guest's).
    """
    first, note = choose_accel(accel)
    refusal = re.compile(expect_refusal) if expect_refusal is not None else None
    if refusal is not None and (rom is None or exit_after_sanboot):
        raise PatchkitError("a refusal is checked at the gPXE prompt: it needs a ROM and a sanboot that boots")
    failure = re.compile(expect_failure) if expect_failure is not None else None
    script = Script(root_path, list(gpxe_commands), exit_after_sanboot, refusal, failure, layout.hold, after_sanboot)
    label = label or guest.name
    memory = memory_mib or guest.memory_mib
    outcome = await _boot_once(guest, rom, script, first, timeout, stall_timeout, layout, expect_token, label,
                               trace, memory)
    if note:
        outcome.notes.append(note)
    if outcome.kvm_failed and accel == "auto":
        retry = await _boot_once(guest, rom, script, "tcg", timeout, stall_timeout, layout, expect_token, label,
                                 trace, memory)
        retry.notes.append(f"KVM failed ({outcome.reason}; run in {outcome.run_dir}): retried on TCG")
        return retry
    return outcome


def boot_planned(guest: Guest, *, rom: Path | None, config: Config | None = None, root_path: str | None = None,
                 accel: str = "tcg", timeout: float | None = None,
                 stall_timeout: float = DEFAULT_STALL_TIMEOUT) -> BootOutcome:
    """boot_planned_async, run to its end (^C stops QEMU and raises KeyboardInterrupt)."""
    return run_interruptibly(boot_planned_async(guest, rom=rom, config=config, root_path=root_path, accel=accel,
                                                 timeout=timeout, stall_timeout=stall_timeout))


async def boot_planned_async(guest: Guest, *, rom: Path | None, config: Config | None = None,
                             root_path: str | None = None, accel: str = "tcg", timeout: float | None = None,
                             stall_timeout: float = DEFAULT_STALL_TIMEOUT, trace: bool = False,
                             memory_mib: int | None = None) -> BootOutcome:
    """Boot ``guest`` on ``config`` (default: the implicit "pc") as its Sanboot plan says, through ``rom``,
    with ``memory_mib`` (--memory), else the configuration's memory, else the guest's.

    The plan's commands, `exit` and A: apply on every configuration; its own root path and
    a disk that is not a virtio slot (AoE) win over the configuration's; ``root_path``
    (the command's --root-path) wins over the configuration's.
    """
    plan = guest.sanboot
    config = config or Config(name=IMPLICIT_CONFIG, guests=(guest.name,))
    if rom is None and plan.needs_gpxe:
        raise PatchkitError(f"the {guest.name} guest runs gPXE commands: it needs a ROM (not --reference)")
    kept = ("set keep-san 1", *(f"sanboot virtio_blk:PCI00:{addr}" for addr in config.kept_disks))
    return await boot_guest_async(
        guest, rom=rom, root_path=plan.root_path or root_path or config.root_path, accel=accel, timeout=timeout,
        stall_timeout=stall_timeout, layout=Layout.for_cell(config, guest),
        gpxe_commands=(*(kept if config.kept_disks else ()), *plan.commands),
        exit_after_sanboot=plan.exit_after_sanboot, after_sanboot=plan.after_sanboot,
        expect_refusal=config.expect_refusal,
        expect_failure=config.expect_failure,
        label=guest.name if config.name == IMPLICIT_CONFIG else f"{config.name}-{guest.name}", trace=trace,
        memory_mib=memory_mib or config.memory)


async def _boot_once(guest: Guest, rom: Path | None, script: Script, accel: str, timeout: float | None,
                     stall_timeout: float, layout: Layout, expect_token: str | None, label: str,
                     trace: bool, memory_mib: int) -> BootOutcome:
    run_dir = new_run_dir(guest.store.runs, label)  # beside the guest's image, in its store
    token = secrets.token_hex(6)
    disk = await asyncio.to_thread(guest.make_run_disk, run_dir, token)
    with contextlib.ExitStack() as stack:
        nic = None
        if layout.guest_addr == "aoe":
            target = stack.enter_context(aoe_target(disk, run_dir))
            nic = Nic(target.netns, target.tap)
        spec = await asyncio.to_thread(machine_spec, run_dir, disk, rom, accel, layout, nic, guest.disk_format)
        spec = replace(spec, memory_mib=memory_mib, trace=trace)
        await asyncio.to_thread(_reproducer, guest, run_dir, spec, disk, layout, script)
        session = Session(guest, spec, run_dir, script, timeout or guest.default_timeout, stall_timeout,
                           guest.success_marker(expect_token or token),
                           drive_id(spec, disk) if layout.guest_addr != "aoe" else "")
        passed, reason = await session.run()
    serial = run_dir / "serial.log"
    figures = {**session.figures, **guest.figures(serial.read_text(errors="replace") if serial.is_file() else "")}
    outcome = BootOutcome(passed, reason, spec.accel, run_dir, session.timings, kvm_failed=session.kvm_failed,
                          figures=figures)
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


def _reproducer(guest: Guest, run_dir: Path, spec: MachineSpec, disk: Path, layout: Layout, script: Script) -> None:
    """reproduce.sh and the guest disk's start beside it (patchkit.boot.reproduce)."""
    if spec.nic is not None:
        write_reproducer(run_dir, spec, disk, None, (), why_not="an AoE boot needs vblade in a network namespace")
        return
    start_overlay(guest.base_image(), disk, guest.disk_format, run_dir / START_DISK)
    typed = [*script.commands, f"sanboot {script.root_path}", *(["exit"] if script.exit_after_sanboot else [])]
    write_reproducer(run_dir, spec, disk, layout.boot_floppy, typed if spec.rom is not None else ())


def run_interruptibly(work: Coroutine[None, None, _T]) -> _T:
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
