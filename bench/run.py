"""Benchmark the series' ROM against SeaBIOS, time the validation loop and the matrix; one table, and JSON.

    python3 bench/run.py [--runs N] [--json OUT] [--guests debian freedos probe] [--compare OLD.json]

Measured in one run, on TCG, with ratios beside the absolute figures (the host is
noisy: the ratio is the figure): boot times and probe throughput, ROM vs SeaBIOS's
own virtio-blk (median of --runs interleaved runs each); the cold and warm
validation loops stage by stage, the warm loop against its floor (the slowest of the
loop's guests booted by SeaBIOS, alongside the others) and what separates the two;
the test matrix at --jobs 1 and 2 and as it grows; the ROM's size against the base tree's ROM.
Inputs that are missing (gPXE mirror, series, guest images) are named with the
command that provides them, and whatever does not need them is still measured.
Progress goes to stderr; the table to stdout; results to bench/results/<time>.json.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `patchkit` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import boots, figures, loop, matrix, report
from patchkit.errors import MissingInputError, PatchkitError
from patchkit.guests import GUEST_NAMES, get_guest
from patchkit.project import Project
from patchkit.qemu.machine import qemu_version
from patchkit.store import Store

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
BOOT_GUESTS = ("debian", "freedos")  # boot-time rows; the probe gives the throughput rows
LOOP_GUESTS = ("freedos", "debian", "probe")  # the validation loop's: the fast guests, each a different check


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="boots per guest and side (median; default 5)")
    p.add_argument("--json", type=Path, help="results file (default bench/results/<time>.json)")
    p.add_argument("--guests", nargs="+", choices=GUEST_NAMES, default=list(GUEST_NAMES),
                   help="guests to boot (default: all)")
    p.add_argument("--compare", type=Path, metavar="OLD.json", help="also print the changes since OLD.json")
    p.add_argument("--load", type=Path, metavar="RESULTS.json", help="print saved results instead of measuring")
    p.add_argument("--project", type=Path, default=PROJECT, help="the patchkit project (default: this checkout)")
    p.add_argument("--series", help="the series (default: the only one)")
    p.add_argument("--gpxe-from", type=Path, help="local gPXE mirror to vendor from (default: the user's cache)")
    p.add_argument("--keep", action="store_true", help="keep the temporary workspace (run logs, trees)")
    p.add_argument("--warm-runs", type=int, default=3, help="warm loops, each followed by its floor (default 3)")
    p.add_argument("--loop-guests", nargs="+", choices=GUEST_NAMES, default=list(LOOP_GUESTS),
                   help=f"the loops' guests (default: {' '.join(LOOP_GUESTS)})")
    p.add_argument("--loop-jobs", type=int, help="boots at a time in the loops (default: as `patchkit test`)")
    p.add_argument("--matrix", choices=("growth", "jobs", "none"), default="growth",
                   help="the matrix at --jobs 1 and 2, and its growth (default); only the jobs; not at all")
    args = p.parse_args(argv)
    if args.runs < 1 or args.warm_runs < 1:
        p.error("--runs and --warm-runs must be at least 1")
    return args


def usable(store: Store, name: str, missing: list[str]) -> bool:
    """Whether the guest's image is built in ``store``; if not, say so in ``missing``."""
    try:
        get_guest(name, store).image_sha256()
    except MissingInputError as exc:
        item = f"the {name} guest: {exc}"
        if item not in missing:
            missing.append(item)
        return False
    return True


def inputs(args: argparse.Namespace,
           project: Project) -> tuple[str | None, Path | None, list[str], list[str], list[str]]:
    """What can be measured with the user's ``project`` (and its cache): (series name, gPXE mirror, usable
    guests, the loop's usable guests, what is missing and how to get it)."""
    missing: list[str] = []
    series_name = None
    try:
        series_name = project.series(args.series).name
    except PatchkitError as exc:
        missing.append(f"the series ({exc}): the ROM side, the loops and the size are not measured")
    mirror = args.gpxe_from or project.store.mirror(project.pin.name)
    if not (mirror / "HEAD").is_file():
        missing.append(f"the gPXE upstream mirror ({mirror}): run `patchkit vendor --from PATH` "
                       "(or `patchkit setup --gpxe-from PATH`); the ROM side, the loops and the size are not measured")
        mirror = None
    guests = [name for name in args.guests if usable(project.store, name, missing)]
    loop_guests = [name for name in args.loop_guests if usable(project.store, name, missing)]
    return series_name, mirror, guests, loop_guests, missing


def measure(args: argparse.Namespace, project: Project) -> dict[str, Any]:
    """Run every measurement that the inputs allow (the user's ``project``: its series and inputs, its cache
    never written); the results as JSON-ready data."""
    series_name, mirror, guests, loop_guests, missing = inputs(args, project)
    meta = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "host": platform.node(), "cpus": os.cpu_count(), "qemu": qemu_version(), "accel": boots.ACCEL,
            "runs": args.runs, "series": series_name, "guests": guests, "loop_guests": loop_guests,
            "load_before": os.getloadavg()[0]}
    loops: loop.Loops | None = None
    matrix_runs: list[matrix.MatrixRun] = []
    rom_size = base_size = None
    samples: list[boots.BootSample] = []
    with loop.workspace(project.store, keep=args.keep) as work:
        if args.keep:
            say(f"workspace kept in {work.root}")
        rom = None
        if series_name and mirror and loop_guests:
            try:
                loops = loop.measure_loops(project, series_name, loop_guests, mirror, work, say,
                                           warm_runs=args.warm_runs, jobs=args.loop_jobs)
            except PatchkitError as exc:
                missing.append(f"the loops stopped: {exc}")
                say(f"loops failed: {exc}")
            else:
                assert loops.cold.rom is not None
                rom, rom_size, base_size = loops.cold.rom.path, loops.cold.rom.size, loops.base.size
                meta.update(rom_sha256=loops.cold.rom.sha256, base_rom_sha256=loops.base.sha256)
        samples = boots.measure(work.store, guests, rom, args.runs, say)
        if rom is not None and series_name and args.matrix != "none":
            try:
                matrix_runs = matrix.measure_matrix(Project(project.root, work.store), series_name, rom, say,
                                                    growth=args.matrix == "growth")
            except PatchkitError as exc:
                missing.append(f"the matrix stopped: {exc}")
                say(f"matrix failed: {exc}")
    meta["load_after"] = os.getloadavg()[0]
    rows: list[report.Row] = []
    sections: list[tuple[str, int]] = []
    boot_guests = [g for g in BOOT_GUESTS if g in guests]
    sections.append((f"boot: ROM sanboot vs SeaBIOS virtio-blk, {boots.ACCEL}, median of {args.runs}", len(rows)))
    rows += figures.boot_rows(samples, boot_guests)
    if "probe" in guests:
        sections.append(("probe INT 13h AH=42 reads: ROM vs SeaBIOS", len(rows)))
        rows += figures.throughput_rows(samples)
    sections.append((f"validation loop ({boots.ACCEL}, {os.cpu_count()} cores, guests {', '.join(loop_guests)}): "
                     "stage time, share; against its floor", len(rows)))
    rows += figures.loop_rows(loops.cold if loops else None, loops.warm if loops else [],
                              loops.floors if loops else [])
    if matrix_runs:
        sections.append(("test matrix through the ROM: wall time per --jobs, and as it grows", len(rows)))
        rows += figures.matrix_rows(matrix_runs)
    sections.append(("ROM size vs the base tree's ROM", len(rows)))
    rows.append(figures.size_row(rom_size, base_size))
    data = report.to_json(rows, sections, meta, missing)
    data["samples"] = [asdict(s) for s in samples]
    return data


def show(rows: list[report.Row], sections: list[tuple[str, int]], meta: dict[str, Any], missing: list[str]) -> None:
    load = f", load average {meta['load_before']:.1f} -> {meta['load_after']:.1f}" if "load_after" in meta else ""
    print(f"patchkit bench {meta['date']} on {meta['host']} ({meta['cpus']} cores{load}), QEMU {meta['qemu']}, "
          f"{meta['accel']}, series {meta['series'] or '-'}")
    print(report.render_table(rows, sections))
    for item in missing:
        print(f"missing: {item}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.load:
        rows, sections, meta, missing = report.load(args.load)
    else:
        data = measure(args, Project(args.project, Store.from_environment()))
        out = args.json or RESULTS / f"{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
        report.save(out, data)
        rows, sections, meta, missing = report.from_json(data)
        say(f"results written to {out}")
    show(rows, sections, meta, missing)
    if args.compare:
        old_rows, _, old_meta, _ = report.load(args.compare)
        print(f"\nchanges since {args.compare} ({old_meta['date']}):")
        print(report.render_deltas(old_rows, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
