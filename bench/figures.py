"""From measurements to table rows: medians, ratios and the targets the series is held to."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bench.boots import ROM, SEABIOS, BootSample
from bench.loop import LoopRun
from bench.report import Row, Target, compared, stages

BOOT_TARGET = Target("ratio<=", 1.10)  # ROM boot time within 1.1x of SeaBIOS's
THROUGHPUT_TARGET = Target("ratio>=", 0.90)  # at least 0.9x SeaBIOS's 127-sector throughput
WARM_LOOP_TARGET = Target("value<", 20.0)  # seconds, 2 cores, TCG
SECTOR_COUNTS = (1, 8, 64, 127)


def _passed(samples: Sequence[BootSample], guest: str, side: str) -> list[BootSample]:
    return [s for s in samples if s.guest == guest and s.side == side and s.passed]


def _throughput(count: int) -> Callable[[BootSample], float | None]:
    """A sample's throughput for ``count``-sector reads (None when not measured)."""
    return lambda s: s.throughput.get(count)


def _note(samples: Sequence[BootSample], guest: str, figure: Callable[[BootSample], float | None],
          unit: str) -> str:
    """Per side: passing runs of all, and the range of ``figure`` over them; then the first failure."""
    parts = []
    for side in (ROM, SEABIOS):
        runs = [s for s in samples if s.guest == guest and s.side == side]
        values = [v for v in (figure(s) for s in runs if s.passed) if v is not None]
        if runs:
            spread = f" ({min(values):.3g}-{max(values):.3g} {unit})" if values else ""
            parts.append(f"{side} {sum(s.passed for s in runs)}/{len(runs)} ok{spread}")
    failed = next((s for s in samples if s.guest == guest and not s.passed), None)
    if failed:
        parts.append(f"first failure ({failed.side}): {failed.reason[:100]}")
    return "; ".join(parts)


def boot_rows(samples: Sequence[BootSample], guests: Sequence[str]) -> list[Row]:
    """Per guest: boot start to marker (with the 1.1x target), and QEMU start to marker."""
    rows = []
    for guest in guests:
        rom, ref = _passed(samples, guest, ROM), _passed(samples, guest, SEABIOS)
        rows.append(compared(f"boot.{guest}.boot", f"{guest}: boot start -> marker", "s",
                             [s.boot_s for s in rom if s.boot_s is not None],
                             [s.boot_s for s in ref if s.boot_s is not None],
                             BOOT_TARGET, _note(samples, guest, lambda s: s.boot_s, "s")))
        rows.append(compared(f"boot.{guest}.wall", f"{guest}: QEMU start -> marker", "s",
                             [s.wall_s for s in rom if s.wall_s is not None],
                             [s.wall_s for s in ref if s.wall_s is not None]))
    return rows


def throughput_rows(samples: Sequence[BootSample]) -> list[Row]:
    """The probe's AH=42 read throughput per transfer size (the 127-sector row carries the target)."""
    rom, ref = _passed(samples, "probe", ROM), _passed(samples, "probe", SEABIOS)
    rows = []
    for count in SECTOR_COUNTS:
        rows.append(compared(f"tput.{count}", f"probe: {count}-sector reads", "MB/s",
                             [s.throughput[count] for s in rom if count in s.throughput],
                             [s.throughput[count] for s in ref if count in s.throughput],
                             THROUGHPUT_TARGET if count == 127 else None,
                             _note(samples, "probe", _throughput(count), "MB/s")))
    return rows


def loop_rows(cold: LoopRun | None, warm: LoopRun | None) -> list[Row]:
    """The cold and warm validation loops: totals, then each stage with its share.

    A loop whose guests did not all pass gets no verdict: its time is not the time of
    a validation (a failing boot ends early).
    """
    rows = []
    for key, label, run, target in (("loop.cold", "cold: vendor, apply, build, guests", cold, None),
                                    ("loop.warm", "warm: 1-line driver change", warm, WARM_LOOP_TARGET)):
        valid = run is not None and run.passed and all(run.passed.values())
        rows += stages(key, label, run.stages if run else {}, target if valid or run is None else None,
                       run.note() if run else "")
    return rows


def size_row(rom_size: int | None, base_size: int | None) -> Row:
    """The series' ROM against the base tree's bin/1af41000.rom."""
    row = compared("rom.size", "bin/1af41001.rom vs base 1af41000.rom", "B",
                   [rom_size] if rom_size is not None else [], [base_size] if base_size is not None else [])
    if rom_size is not None and base_size is not None:
        row.note = f"cost {rom_size - base_size:+,} B ({(rom_size - base_size) / 1024:+.1f} KiB)"
    return row
