"""What `patchkit test --coverage` costs: cells booted with and without it, time and translation-log size.

    python3 bench/coverage.py [--config NAME ...] [--guest NAME ...] [--rounds N] [--jobs N] [--matrix]

Boots the chosen cells (default: the guests of pc, q35 and readonly) through the
series' ROM with and without coverage, the two alternating for --rounds rounds, at
--jobs 1 by default so that each boot's time is its own. Prints per cell the median
boot time (QEMU's start to its end) each way and their ratio, the translation log's
size and the time spent mapping it; then the run's wall time each way.
Runs in your patchkit cache ($PATCHKIT_CACHE) like `patchkit test`, recording its results
(they are real test runs of the revision). Progress goes to stderr, the table to stdout,
the figures to bench/results/coverage-<time>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `patchkit` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from patchkit.coverage.result import load
from patchkit.coverage.trace import TRACE_LOG
from patchkit.figures import format_figure
from patchkit.project import Project
from patchkit.store import Store, TestResult
from patchkit.validate import run_tests

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_CONFIGS = ("pc", "q35", "readonly")


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", dest="configs", action="append", help="configuration (repeatable; default: "
                   + ", ".join(DEFAULT_CONFIGS) + ")")
    p.add_argument("--guest", dest="guests", action="append",
                   help="guest to boot on those configurations (repeatable; default: each configuration's own)")
    p.add_argument("--matrix", action="store_true", help="every configuration with all its guests instead")
    p.add_argument("--rounds", type=int, default=2, help="runs each way, alternating (default 2)")
    p.add_argument("--jobs", type=int, default=1, help="boots at a time (default 1)")
    p.add_argument("--series", help="the series (default: the only one)")
    p.add_argument("--json", type=Path, help="results file (default bench/results/coverage-<time>.json)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.jobs < 1:
        p.error("--rounds and --jobs must be at least 1")
    return args


def one_run(project: Project, args: argparse.Namespace, coverage: bool) -> dict[str, Any]:
    """One `patchkit test` of the chosen cells: wall time and per cell its boot time, log size and mapping time."""
    started = time.monotonic()
    results = run_tests(project, args.guests or ["all"],
                        series_name=args.series, configs=() if args.matrix else args.configs or DEFAULT_CONFIGS,
                        matrix=args.matrix, jobs=args.jobs, coverage=coverage, progress=lambda _line: None)
    wall = time.monotonic() - started
    return {"coverage": coverage, "wall_s": wall, "cells": {cell_name(r): cell_figures(r) for r in results}}


def cell_name(result: TestResult) -> str:
    return f"{result.key.config}/{result.key.guest}"


def cell_figures(result: TestResult) -> dict[str, Any]:
    run = Path(result.run_dir)
    log = run / TRACE_LOG
    figures: dict[str, Any] = {"passed": result.passed, "boot_s": result.timings.get("total"),
                               "log_bytes": log.stat().st_size if log.is_file() else None}
    if (measured := load(run)) is not None:
        figures["lines_ran"] = sum(len(lines) for lines in measured.ran.values())
        figures["map_s"] = measured.seconds
    return figures


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def table(runs: list[dict[str, Any]]) -> list[str]:
    """Per cell: median boot time without and with coverage, ratio, log size, mapping time; then the walls."""
    names = sorted({name for run in runs for name in run["cells"]})
    rows = [["cell", "without", "with", "ratio", "log", "mapping"]]

    def values(name: str, coverage: bool, key: str) -> list[float]:
        return [run["cells"][name][key] for run in runs if run["coverage"] == coverage and name in run["cells"]
                and run["cells"][name].get(key) is not None]

    for name in names:
        plain, traced = median(values(name, False, "boot_s")), median(values(name, True, "boot_s"))
        ratio = f"{traced / plain:.2f}x" if plain and traced else "-"
        rows.append([name, format_figure(plain, "s"), format_figure(traced, "s"), ratio,
                     format_figure(median(values(name, True, "log_bytes")), "B"),
                     format_figure(median(values(name, True, "map_s")), "s")])
    plain_wall = median([r["wall_s"] for r in runs if not r["coverage"]])
    traced_wall = median([r["wall_s"] for r in runs if r["coverage"]])
    ratio = f"{traced_wall / plain_wall:.2f}x" if plain_wall and traced_wall else "-"
    rows.append([f"whole run ({len(names)} cells)", format_figure(plain_wall, "s"), format_figure(traced_wall, "s"),
                 ratio, "", ""])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    project = Project(PROJECT, Store.from_environment())
    runs = []
    for n in range(args.rounds):
        for coverage in (False, True) if n % 2 == 0 else (True, False):
            way = "with" if coverage else "without"
            say(f"round {n + 1}/{args.rounds}, {way} coverage (load {os.getloadavg()[0]:.1f})")
            runs.append(one_run(project, args, coverage))
    for line in table(runs):
        print(line)
    out = args.json or RESULTS / f"coverage-{datetime.datetime.now(datetime.UTC):%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "load": os.getloadavg()}, indent=1) + "\n", encoding="utf-8")
    say(f"figures in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
