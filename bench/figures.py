"""From measurements to table rows: medians, ratios and the targets the series is held to."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bench.boots import ROM, SEABIOS, BootSample
from bench.loop import Floor, LoopRun
from bench.matrix import GROWTH_JOBS, MatrixRun
from bench.report import Row, Target, compared, stages

BOOT_TARGET = Target("ratio<=", 1.10)  # ROM boot time within 1.1x of SeaBIOS's
WALL_TARGET = Target("ratio<=", 1.50)  # QEMU start -> marker through the ROM within 1.5x of SeaBIOS's
WALL_TARGET_GUESTS = ("debian", "freedos")
THROUGHPUT_TARGET = Target("ratio>=", 0.90)  # at least 0.9x SeaBIOS's 127-sector throughput
WARM_LOOP_TARGET = Target("value<", 10.0)  # seconds, 2 cores, TCG
FLOOR_TARGET = Target("ratio<=", 1.30)  # the warm loop within 1.3x of its floor
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
        retyped = sum(s.retyped for s in rom)
        rows.append(compared(f"boot.{guest}.wall", f"{guest}: QEMU start -> marker", "s",
                             [s.wall_s for s in rom if s.wall_s is not None],
                             [s.wall_s for s in ref if s.wall_s is not None],
                             WALL_TARGET if guest in WALL_TARGET_GUESTS else None,
                             f"gPXE's command retyped in {retyped} of {len(rom)} runs" if retyped else ""))
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


def loop_rows(cold: LoopRun | None, warm: Sequence[LoopRun], floors: Sequence[Floor] = ()) -> list[Row]:
    """The cold loop, and the median warm loop: totals with each stage's share; the warm loop against its
    floor, and what separates the two (each warm loop is paired with the floor measured right after it).

    The median warm loop is the one whose ratio to its floor is the median (without floors: whose
    total is). A loop whose guests did not all pass gets no verdict: its time is not the time of
    a validation (a failing boot ends early).
    """
    rows = stages("loop.cold", "cold: vendor, apply, build, guests", cold.stages if cold else {},
                  None, cold.note() if cold else "")
    note = "; ".join(dict.fromkeys(w.note() for w in warm))
    valid: list[tuple[LoopRun, Floor | None]] = [(w, f) for w, f in zip(warm, floors, strict=False)
                                                 if w.valid and f.slowest is not None]
    valid = valid or [(w, None) for w in warm if w.valid]
    if not valid:
        rows += stages("loop.warm", "warm: 1-line driver change", warm[0].stages if warm else {},
                       None if warm else WARM_LOOP_TARGET, note)
        rows.append(Row("loop.floor", "warm loop vs its floor", "s", target=FLOOR_TARGET))
        return rows
    ratios = [sum(w.stages.values()) / f.slowest[1] if f is not None and f.slowest else sum(w.stages.values())
              for w, f in valid]
    run, floor = sorted(zip(ratios, range(len(valid)), valid, strict=True))[(len(valid) - 1) // 2][2]
    label = "warm: 1-line driver change" + (f", the median of {len(valid)}" if len(valid) > 1 else "")
    rows += stages("loop.warm", label, run.stages, WARM_LOOP_TARGET, note)
    if floor is None or floor.slowest is None:
        rows.append(Row("loop.floor", "warm loop vs its floor", "s", target=FLOOR_TARGET))
        return rows
    guest, wall = floor.slowest
    spread = f"; {len(valid)} loops: {min(ratios):.2f}-{max(ratios):.2f}x" if len(valid) > 1 else ""
    rows.append(compared("loop.floor", "warm loop vs its floor", "s", [sum(run.stages.values())], [wall],
                         FLOOR_TARGET, f"floor: {guest} booted by SeaBIOS, alongside the others{spread}"))
    rows += gap_rows(separation(run, floor))
    return rows


def separation(warm: LoopRun, floor: Floor) -> dict[str, float]:
    """What a warm loop spends beyond its floor, by cause (the parts add up to loop minus floor).

    The loop's slowest guest g (through the ROM) against the floor: gPXE's part is g's QEMU start
    to `sanboot` minus g's QEMU start to SeaBIOS's boot sector natively; the boot part is the rest
    of g's time to its marker against the floor's; the overhead is the guests stage outside g's
    QEMU start -> marker (run disks, QEMU start and stop, disk checks, waiting for a free job).
    """
    assert floor.slowest is not None
    guest = max(warm.timings, key=lambda g: warm.timings[g]["success"])
    rom, native = warm.timings[guest], floor.timings[guest]
    driving = rom["sanboot"] - native["boot_sector"]
    return {"apply": warm.stages.get("apply", 0.0), "build": warm.stages.get("build", 0.0),
            f"gPXE banner, prompt, typing ({guest})": driving,
            f"{guest}'s boot through the ROM vs the floor": rom["success"] - floor.slowest[1] - driving,
            "run overhead (disks, QEMU start/stop, checks)": warm.stages["guests"] - rom["success"]}


def gap_rows(parts: dict[str, float]) -> list[Row]:
    """The warm loop minus its floor, then one row per cause (signed: the ROM's boot may be the faster)."""
    rows = [Row("loop.gap", "what separates the warm loop from its floor", "s", sum(parts.values()))]
    rows += [Row(f"loop.gap.{n}", f"  {name}", "s", value) for n, (name, value) in enumerate(parts.items())]
    return rows


def matrix_rows(runs: Sequence[MatrixRun]) -> list[Row]:
    """The whole matrix per --jobs (each against --jobs 1), then its growth at GROWTH_JOBS, a row per size."""
    if not runs:
        return []
    whole = max(r.cells for r in runs)
    full = {r.jobs: r for r in runs if r.cells == whole}
    one = full.get(1)
    rows = []
    for jobs, run in sorted(full.items()):
        reference = [one.seconds] if one is not None and jobs != 1 else []
        rows.append(compared(f"matrix.jobs{jobs}", f"matrix, {run.cells} cells, --jobs {jobs}", "s", [run.seconds],
                             reference, note=_verdicts(run)))
    growth = sorted((r for r in runs if r.jobs == GROWTH_JOBS), key=lambda r: r.cells)
    before: MatrixRun | None = None
    for run in growth:
        note = f"{run.seconds / run.cells:.2f} s per cell"
        if before is not None:
            note += (f"; {(run.seconds - before.seconds) / (run.cells - before.cells):+.2f} s per cell added "
                     f"since {before.cells}")
        cells = f"{run.cells} cell{'s' if run.cells > 1 else ''}"
        rows.append(Row(f"matrix.size{run.cells}", f"  {cells}, --jobs {GROWTH_JOBS}", "s", run.seconds,
                        note=f"{note}; {_verdicts(run)}"))
        before = run
    return rows


def _verdicts(run: MatrixRun) -> str:
    text = f"{run.passed} passed, {run.failed} failed"
    return f"{text}; {run.error}" if run.error else text


def size_row(rom_size: int | None, base_size: int | None) -> Row:
    """The series' ROM against the base tree's bin/1af41000.rom."""
    row = compared("rom.size", "bin/1af41001.rom vs base 1af41000.rom", "B",
                   [rom_size] if rom_size is not None else [], [base_size] if base_size is not None else [])
    if rom_size is not None and base_size is not None:
        row.note = f"cost {rom_size - base_size:+,} B ({(rom_size - base_size) / 1024:+.1f} KiB)"
    return row
