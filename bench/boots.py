"""Boots through the series' ROM versus SeaBIOS's own virtio-blk, and the probe's throughput.

Each run goes through `patchkit test`'s session (patchkit.validate): the ROM side
types `sanboot` at the gPXE prompt, the reference side lets SeaBIOS boot the same
disk natively, on the same accelerator. The one addition is a timing mark at the
moment `sanboot` is entered, which validate's timings do not carry (hence the small
session subclass below). Runs are interleaved (ROM, SeaBIOS, SeaBIOS, ROM, ...) so
slow phases of the host hit both sides alike.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from patchkit import validate
from patchkit.errors import PatchkitError
from patchkit.guests import Guest, get_guest
from patchkit.guests.probe import parse_probe_log
from patchkit.store import atomic_write

Progress = Callable[[str], None]

ROM, SEABIOS = "rom", "seabios"
ACCEL = "tcg"


@dataclass
class BootSample:
    """One boot: did it pass, its two times, and the probe's throughput (MB/s by sectors per read)."""

    guest: str
    side: str  # ROM or SEABIOS
    passed: bool
    reason: str
    boot_s: float | None  # from the start of the boot (SeaBIOS: INT 19h; ROM: sanboot entered) to the marker
    wall_s: float | None  # from QEMU's start to the marker
    throughput: dict[int, float] = field(default_factory=dict)
    run_dir: str = ""


class _TimedSession(validate._Session):
    """`patchkit test`'s session, also marking when the `sanboot` command is entered."""

    async def _type(self, command: str, since: int) -> int:
        end = await super()._type(command, since)
        if command.startswith("sanboot "):
            self._mark("sanboot")
        return end


def boot_once(guest: Guest, rom: Path | None) -> validate.BootOutcome:
    """Boot ``guest`` through ``rom`` (None: SeaBIOS natively) as validate.boot_guest does, on TCG."""
    run_dir = validate.new_run_dir(guest.name)
    token = secrets.token_hex(6)
    disk = guest.make_run_disk(run_dir, token)
    spec = validate._machine_spec(run_dir, disk, rom, ACCEL, validate.Layout())
    script = validate._Script(validate.DEFAULT_ROOT_PATH, [], exit_after_sanboot=False)
    session = _TimedSession(guest, spec, run_dir, script, guest.default_timeout, validate.DEFAULT_STALL_TIMEOUT,
                            guest.success_marker(token))
    outcome = asyncio.run(session.run())
    problems = guest.verify_disk(disk, token)
    if outcome.passed and problems:
        outcome.passed = False
        outcome.reason = "the guest's disk check failed: " + "; ".join(problems)
    disk.unlink()  # run disks are copies of the base image: keep the logs only
    atomic_write(run_dir / "timings.json", json.dumps(outcome.timings, indent=2) + "\n")
    return outcome


def sample(guest: Guest, side: str, outcome: validate.BootOutcome) -> BootSample:
    """The figures of one boot."""
    t = outcome.timings
    start = t.get("sanboot") if side == ROM else t.get("boot_sector")
    success = t.get("success") if outcome.passed else None
    throughput: dict[int, float] = {}
    if guest.name == "probe" and outcome.passed:
        log = (outcome.run_dir / "serial.log").read_text(encoding="latin-1")
        throughput = parse_probe_log(log).throughput_mb_s
    return BootSample(guest.name, side, outcome.passed, outcome.reason,
                      None if success is None or start is None else success - start, success,
                      throughput, str(outcome.run_dir))


def measure(guest_names: Sequence[str], rom: Path | None, runs: int, say: Progress) -> list[BootSample]:
    """``runs`` boots per guest and side (the ROM side only with ``rom``), interleaved."""
    samples = []
    guests = [get_guest(name) for name in guest_names]
    for n in range(runs):
        for guest in guests:
            sides = [ROM, SEABIOS] if n % 2 == 0 else [SEABIOS, ROM]
            for side in sides:
                if side == ROM and rom is None:
                    continue
                try:
                    s = sample(guest, side, boot_once(guest, rom if side == ROM else None))
                except PatchkitError as exc:  # e.g. an image gone missing: a failed run, not a lost benchmark
                    s = BootSample(guest.name, side, False, str(exc), None, None)
                samples.append(s)
                figure = f"boot {s.boot_s:.2f} s, wall {s.wall_s:.2f} s" if s.boot_s is not None else s.reason
                say(f"run {n + 1}/{runs} {guest.name:8} {side:8} {'ok  ' if s.passed else 'FAIL'} {figure}")
    return samples
