"""The test matrix's wall time: the whole matrix at --jobs 1 and --jobs 2, and how it grows with its cells.

Every run is `patchkit test --matrix` (or `--config` for a part of it) through the series'
ROM, in the bench's throwaway cache. The growing sizes take the extra configurations in the
manifest's order, then the first one, and stop at 1, 2, 4, 8, ... cells and at the whole
matrix, all at --jobs 2: the cost of one more configuration is the step between two rows.
Variant images (disk shapes, read-only) are built before anything is timed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from patchkit.errors import PatchkitError
from patchkit.matrix import plan_cells
from patchkit.project import Project
from patchkit.series.model import Config
from patchkit.validate import run_tests

Progress = Callable[[str], None]

FULL_JOBS = (1, 2)  # the whole matrix at each
GROWTH_JOBS = 2


@dataclass
class MatrixRun:
    """One `patchkit test` over some configurations: its size, parallelism, wall time and verdicts."""

    configs: list[str]
    cells: int
    jobs: int
    seconds: float
    passed: int
    failed: int
    error: str = ""  # cells that could not run (the run raised after the others)

    @property
    def whole(self) -> bool:
        return not self.error and self.passed + self.failed == self.cells


def growth_steps(configs: Sequence[Config]) -> list[list[Config]]:
    """Growing parts of the matrix: the extra configurations in order, then the first; a part at each
    power of two of cells reached, and the whole."""
    order = [*configs[1:], *configs[:1]]
    steps: list[list[Config]] = []
    cells, next_size = 0, 1
    for n, config in enumerate(order, 1):
        cells += len(config.guests)
        if cells >= next_size or n == len(order):
            steps.append(order[:n])
            while next_size <= cells:
                next_size *= 2
    return steps


def run_matrix(project: Project, series_name: str, rom: Path, configs: Sequence[Config], jobs: int,
               say: Progress) -> MatrixRun:
    """Boot ``configs`` x their guests through ``rom``, ``jobs`` at a time, timed."""
    names = [c.name for c in configs]
    cells = sum(len(c.guests) for c in configs)
    say(f"matrix: {cells} cells ({len(names)} configurations), --jobs {jobs} ...")
    start = time.monotonic()
    error = ""
    results = []
    try:
        results = run_tests(project, ["all"], series_name=series_name, configs=names, jobs=jobs, rom=rom,
                            accel="tcg", progress=lambda _msg: None)
    except PatchkitError as exc:
        error = exc.message
    seconds = time.monotonic() - start
    passed = sum(r.passed for r in results)
    run = MatrixRun(names, cells, jobs, seconds, passed, len(results) - passed, error)
    say(f"matrix: {cells} cells, --jobs {jobs}: {seconds:.1f} s, {passed} passed, {run.failed} failed"
        + (f" ({error})" if error else ""))
    return run


def measure_matrix(project: Project, series_name: str, rom: Path, say: Progress,
                   growth: bool = True) -> list[MatrixRun]:
    """The whole matrix at each of FULL_JOBS, then (``growth``) its growing parts at GROWTH_JOBS."""
    configs = project.series(series_name).test_configs()
    for cell in plan_cells(project.store, configs, ["all"], True).cells:  # variants first: building is not booting
        if cell.config.disk_shape is not None or cell.config.readonly:
            cell.guest.build(say)
    runs = [run_matrix(project, series_name, rom, configs, jobs, say) for jobs in FULL_JOBS]
    if growth:
        for step in growth_steps(configs):
            if len(step) == len(configs):  # the whole matrix at GROWTH_JOBS was measured above
                continue
            runs.append(run_matrix(project, series_name, rom, step, GROWTH_JOBS, say))
    return runs
