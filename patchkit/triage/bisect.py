"""`patchkit bisect CELL`: the first patch of the series at which a cell fails, confirmed.

The steps are the series base and the tree after each patch (or, with ``since``, an earlier
version's whole series, then the current one's patches). Each step's ROM is built in one
scratch tree, ``trees/<series>.bisect/``, rewriting only changed files (as ``build
--each-patch`` does), and cached by content key. Steps at which the pin's target does not
build yet (no source declares its PCI ids) cannot boot the cell and are left out; the first
step that builds it is the bisection's base. The tip is booted first (a cell passing there
has nothing to bisect), then the base (at once): a cell that fails there ``confirm`` times
out of ``confirm`` is a base failure, blamed on no patch. Otherwise a binary search between
them; the first bad step then fails ``confirm`` boots out of ``confirm`` and its parent
passes as many (as KernelCI confirms), else the bisection is not confirmed (a flake, see
patchkit.triage.flaky).
Boots run here (``jobs`` at a time) or as tasks of a Dask cluster; the outcome is recorded
as JSON in the cache (``triage/<series>/<config>-<guest>.json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from patchkit.boot.run import DEFAULT_STALL_TIMEOUT, BootOutcome, boot_planned_async, run_interruptibly
from patchkit.build.cache import BuiltRom, build_rom
from patchkit.build.make import rom_target_available
from patchkit.build.series import checkout, ensure_series_rom
from patchkit.cluster.client import BootOptions, RemoteCell, boot_on_cluster
from patchkit.cluster.engine import Cluster, connect
from patchkit.errors import PatchkitError
from patchkit.git.apply import apply_series
from patchkit.git.worktree import tree_lock
from patchkit.matrix import Cell, cell_named
from patchkit.progress import Progress, Steps
from patchkit.project import Project
from patchkit.store import TestResult, atomic_write
from patchkit.triage.logdiff import compare_runs

CONFIRM = 3  # boots that must agree at the first bad step and at its parent


@dataclass(frozen=True)
class Step:
    """One point of the bisection: ``label`` "base", "v3" or "4/9" (after patch 4 of 9)."""

    label: str
    subject: str
    commit: str  # the tree's commit ("" for an earlier version's series, built by version)
    version: int | None = None


@dataclass
class Bisection:
    """What a bisection found: ``first_bad`` (a step label) and its ``parent``, or a base failure."""

    series: str
    cell: str
    steps: list[str]
    boots: dict[str, list[bool]] = field(default_factory=dict)  # step label -> verdicts, in boot order
    runs: dict[str, list[str]] = field(default_factory=dict)  # step label -> run directories
    untestable: list[str] = field(default_factory=list)  # steps whose tree does not build the target
    first_bad: str | None = None
    parent: str | None = None
    subject: str = ""
    base_failure: bool = False
    passes_at_tip: bool = False
    confirmed: bool = False
    changed: list[str] = field(default_factory=list)  # the logs' first divergences, first bad against its parent

    def summary(self) -> str:
        """The one line a user reads first."""
        if self.passes_at_tip:
            return f"{self.cell} passes at the tip ({self.steps[-1]}): nothing to bisect (a flake?)"
        if self.base_failure:
            base = self.steps[0]
            why = f" (steps before it do not build the ROM: {', '.join(self.untestable)})" if self.untestable else ""
            boots = self.boots[base]
            state = (f"fails {boots.count(False)} of {len(boots)}" if self.confirmed
                     else f"NOT confirmed (a flake?): fails {boots.count(False)} of {len(boots)}")
            return (f"{self.cell}: base failure, it fails already at {base}{why}: no patch after it is the culprit; "
                    f"{state}")
        assert self.first_bad is not None and self.parent is not None
        bad, good = self.boots[self.first_bad], self.boots[self.parent]
        state = (f"confirmed: fails {bad.count(False)} of {len(bad)}, {self.parent} passes "
                 f"{good.count(True)} of {len(good)}")
        if not self.confirmed:
            state = (f"NOT confirmed (a flake?): {self.first_bad} failed {bad.count(False)} of {len(bad)}, "
                     f"{self.parent} passed {good.count(True)} of {len(good)}")
        return f"{self.cell}: first bad: {self.first_bad} [{self.subject}]; {state}"


BootMany = Callable[[list[tuple[str, BuiltRom]]], list[BootOutcome]]


def bisect_cell(project: Project, series_name: str | None, cell_name: str, *, confirm: int = CONFIRM,
                since: int | None = None, jobs: int = 1, cluster: str | None = None, accel: str = "auto",
                progress: Progress = print) -> Bisection:
    """Bisect ``cell_name`` ("config/guest", or a guest on the manifest's first configuration); see the module."""
    if confirm < 1:
        raise PatchkitError("--confirm must be at least 1")
    series = project.series(series_name)
    cell = cell_named(project.store, series.test_configs(), cell_name)
    steps = _steps(project, series_name, since, progress)
    roms: dict[str, BuiltRom | None] = {}

    def rom(step: Step) -> BuiltRom | None:
        if step.label not in roms:
            roms[step.label] = _rom_at(project, series.name, step, progress)
        return roms[step.label]

    # The bisection's base: the first step that builds the target (the tip must), or the earlier version.
    tip = steps[-1]
    if rom(tip) is None:
        raise PatchkitError(f"the tip of {series.name} does not build {project.pin.build.target}: nothing to boot")
    head = steps[:1] if since is not None else []  # an earlier version's whole series: built by version
    rest, untestable = steps[len(head):], []
    while rom(rest[0]) is None:  # once a step builds the target, the later ones do
        untestable.append(rest.pop(0).label)
    steps = head + rest
    result = Bisection(series.name, cell.name, [s.label for s in steps], untestable=untestable)
    # At most: the tip and the base, a halving per step, then the confirmations of the two ends.
    most = 2 + max(0, len(steps) - 2).bit_length() + 2 * max(0, confirm - 1)
    counter = Steps(most, progress)
    with _booter(project, cell, jobs, cluster, accel, progress) as boot:

        def check(wanted: list[Step]) -> list[bool]:
            """Boot each of ``wanted`` (at once, as jobs or workers allow), record the verdicts."""
            if not wanted:
                return []
            built = []
            for step in wanted:
                if (found := rom(step)) is None:
                    raise PatchkitError(f"{step.label} does not build {project.pin.build.target}: it cannot boot "
                                        f"{cell.name}", hint="bisect from a version whose series builds it")
                built.append((step.label, found))
            outcomes = boot(built)
            for (label, _), outcome in zip(built, outcomes, strict=True):
                result.boots.setdefault(label, []).append(outcome.passed)
                result.runs.setdefault(label, []).append(str(outcome.run_dir))
                counter.total = max(counter.total, counter.done + 1)
                counter.step(f"{label}: {'pass' if outcome.passed else 'FAIL'} ({outcome.reason[:100]})")
            return [o.passed for o in outcomes]

        progress(f"bisecting {cell.name} over {len(steps)} step(s) of {series.name}: {steps[0].label} .. {tip.label}")
        tip_passes, *base_passes = check([tip, *steps[:1]] if len(steps) > 1 else [tip])
        if tip_passes:
            result.passes_at_tip = True
            return _record(project, result)
        if not any(base_passes):
            result.base_failure = True
            check([steps[0]] * (confirm - 1))
            result.confirmed = not any(result.boots[steps[0].label])
            return _record(project, result)
        good, bad = 0, len(steps) - 1  # good passed, bad failed
        while bad - good > 1:
            mid = (good + bad) // 2
            if check([steps[mid]])[0]:
                good = mid
            else:
                bad = mid
        result.first_bad, result.parent, result.subject = steps[bad].label, steps[good].label, steps[bad].subject
        progress(f"confirming: {confirm} boot(s) each of {steps[bad].label} and {steps[good].label}")
        check([steps[bad]] * (confirm - len(result.boots[steps[bad].label]))
              + [steps[good]] * (confirm - len(result.boots[steps[good].label])))
        result.confirmed = (not any(result.boots[result.first_bad]) and all(result.boots[result.parent]))
        passing = [d for d, ok in zip(result.runs[result.parent], result.boots[result.parent], strict=True) if ok]
        if passing:
            found = compare_runs(Path(passing[-1]), Path(result.runs[result.first_bad][-1]))
            result.changed = [d.describe() for d in found]
            progress(f"what changed from {result.parent} to {result.first_bad}:"
                     + ("".join(f"\n  {line}" for line in result.changed) or " no difference in the logs"))
    return _record(project, result)


def failing_cells(results: Sequence[TestResult]) -> list[str]:
    """The cells ("config/guest") of ``results`` that failed every boot (a FLAKY cell has no culprit)."""
    passed = {(r.key.config, r.key.guest) for r in results if r.passed}
    return list(dict.fromkeys(f"{r.key.config}/{r.key.guest}" for r in results
                              if (r.key.config, r.key.guest) not in passed))


def _steps(project: Project, series_name: str | None, since: int | None, progress: Progress) -> list[Step]:
    """The base (or version ``since``'s series) and the tree after each patch of the current version."""
    series = project.series(series_name)
    applied = apply_series(project, series, progress=progress)
    kept = [p for p in series.patches if p.filename not in applied.merged]
    total = len(kept)
    if since is not None:
        if since >= series.version or series.version_info(since) is None:
            raise PatchkitError(f"--since v{since}: {series.name} has no earlier version {since}",
                                hint=f"its versions: {', '.join(f'v{v.number}' for v in series.versions)}")
        first = Step(f"v{since}", f"{series.name} v{since}, all of it", "", since)
    else:
        first = Step("base", f"the series base {applied.base[:12]}", applied.base)
    return [first, *(Step(f"{i}/{total}", p.subject, c)
                     for i, (p, c) in enumerate(zip(kept, applied.commits, strict=True), 1))]


def _rom_at(project: Project, series_name: str, step: Step, progress: Progress) -> BuiltRom | None:
    """The step's ROM of the pin's target (built or reused by key), or None when its tree cannot build it."""
    pin = project.pin
    if step.version is not None:
        return ensure_series_rom(project, series_name, progress, version=step.version)
    scratch = project.store.tree(f"{series_name}.bisect")
    with tree_lock(scratch, progress):
        checkout(project.store.tree(series_name), step.commit, scratch)
        if not rom_target_available(scratch / pin.build.directory, pin.build.target):
            progress(f"  {step.label}: no source declares {pin.build.target}'s PCI ids yet: left out")
            return None
        return build_rom(project.store, scratch, pin, progress=progress)


@contextlib.contextmanager
def _booter(project: Project, cell: Cell, jobs: int, cluster: str | None, accel: str,
            progress: Progress) -> Iterator[BootMany]:
    """A function booting (step label, ROM) pairs of ``cell``, outcomes in the order asked: here, ``jobs`` at
    a time, or as tasks of the Dask cluster at ``cluster``."""
    if cluster is None:
        yield functools.partial(_boot_here, cell, jobs, accel)
        return
    with connect(cluster) as remote:
        yield functools.partial(_boot_there, project, cell, remote, accel, progress)


def _boot_here(cell: Cell, jobs: int, accel: str, wanted: list[tuple[str, BuiltRom]]) -> list[BootOutcome]:
    async def all_of() -> list[BootOutcome]:
        slots = asyncio.Semaphore(jobs)

        async def one(rom: Path) -> BootOutcome:
            async with slots:
                return await boot_planned_async(cell.guest, rom=rom, config=cell.config, accel=accel)

        return list(await asyncio.gather(*(one(built.path) for _, built in wanted)))

    return run_interruptibly(all_of())


def _boot_there(project: Project, cell: Cell, remote: Cluster, accel: str, progress: Progress,
                wanted: list[tuple[str, BuiltRom]]) -> list[BootOutcome]:
    cells = [Cell(cell.config, cell.guest) for _ in wanted]  # one object per boot: outcomes come back by it
    found: dict[int, BootOutcome] = {}

    def record(booted: Cell, outcome: BootOutcome, qemu: str, worker: str) -> None:
        found[id(booted)] = outcome

    def not_run(booted: Cell, why: str) -> None:
        raise PatchkitError(f"{booted.name} could not boot on the cluster: {why}")

    remotes = [RemoteCell(c, built.path, built.sha256) for c, (_, built) in zip(cells, wanted, strict=True)]
    boot_on_cluster(remote, remotes, BootOptions(None, accel, None, DEFAULT_STALL_TIMEOUT), runs=project.store.runs,
                    record=record, not_run=not_run, progress=progress)
    return [found[id(c)] for c in cells]


def _record(project: Project, result: Bisection) -> Bisection:
    """Keep the bisection's outcome in ``triage/<series>/<cell>.json`` of the cache."""
    path = project.store.root / "triage" / result.series / f"{result.cell.replace('/', '-')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(asdict(result), indent=2) + "\n")
    return result

