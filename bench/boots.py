"""Boots through the series' ROM versus SeaBIOS's own virtio-blk, and the probe's throughput.

Each run is a `patchkit test` boot (patchkit.boot.run.boot_guest): the ROM side
types `sanboot` at the gPXE prompt, the reference side lets SeaBIOS boot the same
disk natively, on the same accelerator. The ROM's boot starts when `sanboot` is
entered (the session's "sanboot" mark), SeaBIOS's at its boot sector. Runs are
interleaved (ROM, SeaBIOS, SeaBIOS, ROM, ...) so slow phases of the host hit both sides alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from patchkit.boot.run import BootOutcome, boot_guest
from patchkit.errors import PatchkitError
from patchkit.guests import Guest, get_guest
from patchkit.guests.probe import parse_probe_log
from patchkit.progress import Progress
from patchkit.store import Store

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
    retyped: bool = False  # a command's echo came out wrong at the fast pace: it was typed again


def boot_once(guest: Guest, rom: Path | None) -> BootOutcome:
    """Boot ``guest`` through ``rom`` (None: SeaBIOS natively) exactly as `patchkit test` does, on TCG."""
    return boot_guest(guest, rom=rom, accel=ACCEL)


def sample(guest: Guest, side: str, outcome: BootOutcome) -> BootSample:
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
                      throughput, str(outcome.run_dir), "retyped" in t)


def measure(store: Store, guest_names: Sequence[str], rom: Path | None, runs: int,
            say: Progress) -> list[BootSample]:
    """``runs`` boots per guest and side (the ROM side only with ``rom``), interleaved; the guests' images and
    runs in ``store``."""
    samples = []
    guests = [get_guest(name, store) for name in guest_names]
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
