"""One cell's coverage, stored with its run: ``coverage.json`` in the run directory.

It names the ELF the addresses were mapped through, the placements found (and how
many logged instructions each matched), and the source lines that ran, by repository
path. The translation log itself stays in the run directory (``translated.log``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from patchkit.coverage.debuginfo import DebugInfo, Lines
from patchkit.coverage.mapping import Placement, find_placements, link_addresses
from patchkit.coverage.trace import TRACE_LOG, read_trace
from patchkit.errors import PatchkitError
from patchkit.store import atomic_write

COVERAGE_FILE = "coverage.json"


@dataclass(frozen=True)
class CellCoverage:
    """The source lines one boot ran, mapped through ``elf`` (its source paths under ``prefix``)."""

    elf: str
    prefix: str
    placements: list[Placement]
    ran: Lines
    log_bytes: int
    seconds: float  # spent reading the log and mapping it


def measure(run_dir: Path, debug: DebugInfo, elf: Path) -> CellCoverage:
    """Map the run's translation log through ``debug`` (read from ``elf``) and store the result in the run."""
    started = time.monotonic()
    log = run_dir / TRACE_LOG
    if not log.is_file():
        raise PatchkitError(f"{run_dir} has no translation log {TRACE_LOG}: QEMU did not start with coverage")
    trace = read_trace(log)
    placements = find_placements(trace, debug)
    ran = debug.lines_at(link_addresses(trace, debug, placements))
    coverage = CellCoverage(str(elf), debug.prefix, placements, ran, log.stat().st_size,
                            round(time.monotonic() - started, 3))
    atomic_write(run_dir / COVERAGE_FILE, json.dumps({
        "elf": coverage.elf, "prefix": coverage.prefix, "log_bytes": coverage.log_bytes, "seconds": coverage.seconds,
        "placements": [{"offset": p.offset, "logged": p.logged, "matched": p.matched} for p in placements],
        "ran": {path: sorted(lines) for path, lines in sorted(ran.items())}}, indent=1) + "\n")
    return coverage


def load(run_dir: Path) -> CellCoverage | None:
    """The coverage stored with a run, None when it ran without coverage (or the file is unreadable)."""
    try:
        data = json.loads((run_dir / COVERAGE_FILE).read_text(encoding="utf-8"))
        return CellCoverage(str(data["elf"]), str(data["prefix"]), [Placement(**p) for p in data["placements"]],
                            {path: set(lines) for path, lines in data["ran"].items()}, int(data["log_bytes"]),
                            float(data["seconds"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
