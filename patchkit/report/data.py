"""What a revision's report shows, gathered from the series, the results, the runs and the caches.

Nothing here renders: ``gather`` returns plain data that ``page`` turns into HTML. Parts
that cannot be had (no results, no upstream mirror for the range-diff, no benchmark)
become a note saying what is missing and how to get it, never an error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patchkit.coverage.collect import SeriesCoverage, collect
from patchkit.errors import PatchkitError
from patchkit.figures import format_figure
from patchkit.git import rangediff
from patchkit.guests.image import ADHOC_PREFIX
from patchkit.mailer.render import cover_text
from patchkit.project import Project
from patchkit.review.thread import Review, reviews
from patchkit.series.io import available_versions, load_version
from patchkit.series.model import IMPLICIT_CONFIG, Series
from patchkit.store import Store, TestResult, atomic_write
from patchkit.triage.flaky import Flake, flakes
from patchkit.triage.logdiff import Divergence, compare_runs, last_pass

BUILD_RECORDS = "each-patch"  # builds/each-patch/<series>/<revision>.json


@dataclass
class Run:
    """One test run and the artifacts it left (paths may be None when gone)."""

    result: TestResult
    config: str
    screenshot: Path | None
    serial: Path | None
    screen: Path | None

    @property
    def run_id(self) -> str:
        return Path(self.result.run_dir).name if self.result.run_dir else ""


@dataclass
class Matrix:
    """Guest x configuration; each cell's runs newest first."""

    guests: list[str]
    configs: list[str]
    cells: dict[tuple[str, str], list[Run]] = field(default_factory=dict)
    planned: set[tuple[str, str]] = field(default_factory=set)  # (guest, config) the manifest asks for
    flaky: dict[tuple[str, str], Flake] = field(default_factory=dict)  # (guest, config): failed and passed on one ROM
    # (guest, config) whose newest run failed: the last passing run's id and the logs' first divergences from it
    changed: dict[tuple[str, str], tuple[str, list[Divergence]]] = field(default_factory=dict)
    adhoc: int = 0  # runs of `test --image` left out: a user's own images are not the series' cells

    @property
    def runs(self) -> int:
        return sum(len(v) for v in self.cells.values())


@dataclass
class PatchBuild:
    """What `patchkit build --each-patch` recorded for one patch of this revision."""

    roms: dict[str, int]  # target -> size in bytes
    warnings: int
    new_warnings: list[str]


@dataclass
class BenchTable:
    """The newest benchmark results file, as rows of cells."""

    path: Path
    headers: list[str]
    rows: list[list[str]]
    meta: dict[str, Any]


@dataclass
class ReportData:
    series: Series  # the reported version (patches, cover)
    revision: str
    matrix: Matrix
    builds: dict[int, PatchBuild]  # patch index -> record
    build_note: str
    range_diff: str | None
    range_note: str
    review: Review | None
    bench: BenchTable | None
    bench_note: str
    cover: str
    coverage: SeriesCoverage | None = None  # the changed lines the cells ran (`patchkit test --coverage`)
    coverage_note: str = ""


def gather(project: Project, series: Series, version: int | None = None, *, with_range_diff: bool = True) -> ReportData:
    """Everything the report of ``series`` version ``version`` (default: current) shows."""
    number = version or series.version
    v = load_version(series, number)
    revision = v.revision_hash()
    with project.store.results() as results:
        history = results.for_revision(series.name, revision)
        everything = results.for_series(series.name)
    builds = load_builds(project.store, series.name, revision)
    previous = [n for n in available_versions(series) if n < number]
    range_text, range_note = None, "no earlier version"
    if previous and not with_range_diff:
        range_note = "left out"
    elif previous:
        try:
            range_text = rangediff.range_diff(project, series, previous[-1], number)
            range_note = f"v{previous[-1]}..v{number}"
        except PatchkitError as exc:
            range_note = f"not available: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
        except OSError as exc:  # a read-only cache: the range-diff needs the series' work tree
            range_note = f"not available: {exc.strerror} ({exc.filename})"
    bench, bench_note = latest_bench(project.root)
    coverage, coverage_note = None, "not measured for this revision (`patchkit test --matrix --coverage`)"
    try:
        with project.store.results() as results:
            coverage = collect(results, v)
    except PatchkitError as exc:
        coverage_note = f"not available: {exc.message}"
    return ReportData(
        series=v, revision=revision, matrix=matrix(v, history, everything), builds=builds,
        build_note="" if builds else f"not recorded for this revision (`patchkit build --each-patch {series.name}`)",
        range_diff=range_text, range_note=range_note, review=reviews(project.store, series).get(number),
        bench=bench, bench_note=bench_note, cover=re.sub(r"\n{3,}", "\n\n", cover_text(v, "")),
        coverage=coverage, coverage_note="" if coverage else coverage_note,
    )


def result_config(result: TestResult) -> str:
    """The configuration a result was tested on (results from before configurations are "pc")."""
    return result.key.config or IMPLICIT_CONFIG


def matrix(series: Series, history: list[TestResult], everything: list[TestResult] | None = None) -> Matrix:
    """Rows: the configurations' guests, then any other guest tested; columns: configurations. Runs of
    `test --image` (guest ``image:FILE``) are only counted."""
    configs = [c.name for c in series.test_configs()]
    guests: list[str] = []
    for c in series.test_configs():
        guests += [g for g in c.guests if g not in guests]
    m = Matrix(guests, configs, planned={(g, c.name) for c in series.test_configs() for g in c.guests})
    for r in history:  # newest first
        if r.key.guest.startswith(ADHOC_PREFIX):
            m.adhoc += 1  # private file names, and no part of what the series is tested on
            continue
        config = result_config(r)
        if config not in m.configs:
            m.configs.append(config)
        if r.key.guest not in m.guests:
            m.guests.append(r.key.guest)
        m.cells.setdefault((r.key.guest, config), []).append(_run(r, config))
    m.flaky = {(guest, config): flake for (config, guest), flake in flakes(history).items()}
    for (guest, config), runs in m.cells.items():  # a failing newest run: what changed since the last pass
        newest = runs[0].result
        if not newest.passed and (passed := last_pass(everything or history, newest)) is not None:
            m.changed[guest, config] = (Path(passed.run_dir).name,
                                        compare_runs(Path(passed.run_dir), Path(newest.run_dir)))
    return m


def _run(result: TestResult, config: str) -> Run:
    d = Path(result.run_dir) if result.run_dir else None

    def have(name: str) -> Path | None:
        return d / name if d is not None and (d / name).is_file() else None

    # A pass shows the screen at its marker (end.png may be black: the guest powered off), a failure its failure.
    shot = (have("failure.png") if not result.passed else have("marker.png")) or have("end.png") or have("failure.png")
    return Run(result, config, shot, have("serial.log"), have("screen.txt"))


def build_record_path(store: Store, series: str, revision: str) -> Path:
    return store.builds / BUILD_RECORDS / series / f"{revision}.json"


def load_builds(store: Store, series: str, revision: str) -> dict[int, PatchBuild]:
    """The ``--each-patch`` record of a revision, by patch index (empty when none)."""
    try:
        data = json.loads(build_record_path(store, series, revision).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {int(s["index"]): PatchBuild(dict(s["roms"]), int(s["warnings"]), list(s["new_warnings"]))
            for s in data.get("steps", []) if int(s["index"]) > 0}


def latest_bench(project_root: Path) -> tuple[BenchTable | None, str]:
    """The newest ``bench/results/*.json`` of the project as a table, or a note why there is none."""
    folder = project_root / "bench" / "results"
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        return None, "no benchmark results (run `python3 bench/run.py`)"
    path = files[-1]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = [_bench_cells(r) for r in data["rows"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"{path.name} cannot be read: {exc}"
    headers = ["measurement", "ROM / loop", "reference", "ratio", "target", "result", "note"]
    return BenchTable(path, headers, rows, dict(data.get("meta", {}))), ""


def _bench_cells(row: dict[str, Any]) -> list[str]:
    unit = row.get("unit", "")

    def fmt(value: float | None) -> str:
        return format_figure(value, unit)

    ratio = row.get("ratio")
    ratio_text = "" if ratio is None else f"{ratio:.0%}" if row.get("share") else f"{ratio:.2f}x"
    target = row.get("target") or {}
    target_text = ""
    if target:
        limit = float(target["limit"])
        target_text = f"< {limit:g} {unit}" if target["kind"] == "value<" else f"{target['kind'][-2:]} {limit:.2f}x"
    reference = "" if row.get("share") else fmt(row.get("reference"))
    return [str(row.get("label", "")), fmt(row.get("value")), reference, ratio_text, target_text,
            str(row.get("verdict", "")), str(row.get("note", ""))]


def save_builds(store: Store, series: str, revision: str,
                steps: list[tuple[int, str, dict[str, int], int, list[str]]]) -> Path:
    """Record `build --each-patch` for the report: per step (index, name, ROM sizes, warnings, new warnings)."""
    path = build_record_path(store, series, revision)
    record = {"steps": [{"index": i, "name": name, "roms": roms, "warnings": warnings, "new_warnings": new}
                        for i, name, roms, warnings, new in steps]}
    atomic_write(path, json.dumps(record, indent=2) + "\n")
    return path
