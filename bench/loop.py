"""The validation loop, timed stage by stage, in a throwaway cache, and its floor.

Cold: a fresh cache (a Store of its own; only the guest inputs and images are linked from the
user's cache): vendor the upstream from a local mirror, apply the series, build,
boot the loop's guests through the ROM (`patchkit test --rom`, side by side as
`--jobs` boots them). Warm: one comment line added to the driver in a temporary copy
of the series, then apply, incremental build and the guests again, several times.
The floor of a warm loop, measured right after each: the same guests booted by
SeaBIOS itself side by side (`patchkit test --reference`); the slowest one's time
from QEMU's start to its marker. The same workspace also builds the base tree's ROM
for the size comparison.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from patchkit.build.cache import BuiltRom, build_rom
from patchkit.build.series import base_rom
from patchkit.errors import PatchkitError
from patchkit.git.apply import apply_series
from patchkit.progress import Progress
from patchkit.project import Project
from patchkit.store import Store, atomic_write
from patchkit.upstream import vendor
from patchkit.validate import run_tests

DRIVER = "src/drivers/block/virtio-blk.c"
EDIT_LINE = "/* bench: a one-line change for the warm validation loop ({n}) */"  # n: the warm loop's number
SHARED_INPUTS = ("images", "inputs")  # linked read-only from the user's cache: guest inputs only
_HUNK = re.compile(r"^@@ -(\d+(?:,\d+)?) \+(\d+)(?:,(\d+))? @@(.*)$")


@dataclass
class LoopRun:
    """One pass of the loop: seconds per stage, the ROM it built, which guests passed, their boots' timings."""

    stages: dict[str, float] = field(default_factory=dict)
    rom: BuiltRom | None = None
    passed: dict[str, bool] = field(default_factory=dict)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)  # guest -> its boot's timings.json

    @property
    def valid(self) -> bool:
        """Every guest passed (a failing boot ends early: its time is not a validation's)."""
        return bool(self.passed) and all(self.passed.values())

    def note(self) -> str:
        failed = [g for g, ok in self.passed.items() if not ok]
        if failed:
            return f"guests failed: {', '.join(failed)} (no verdict: a failing loop is not a validation)"
        return f"{len(self.passed)} guests passed"


@dataclass
class Floor:
    """The loop's guests booted by SeaBIOS natively, side by side as the loop boots them through the ROM."""

    seconds: float  # the whole run
    passed: dict[str, bool] = field(default_factory=dict)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def slowest(self) -> tuple[str, float] | None:
        """The guest that reached its marker last, and when (QEMU start -> marker); None unless all passed."""
        if not self.passed or not all(self.passed.values()):
            return None
        walls = {g: t["success"] for g, t in self.timings.items() if "success" in t}
        if len(walls) != len(self.passed):
            return None
        guest = max(walls, key=lambda g: walls[g])
        return guest, walls[guest]


@dataclass
class Loops:
    """Everything measure_loops measured."""

    cold: LoopRun
    warm: list[LoopRun]
    floors: list[Floor]  # one after each warm loop
    base: BuiltRom


@dataclass(frozen=True)
class Workspace:
    """The bench's temporary directory and the throwaway cache in it."""

    root: Path
    store: Store  # root/cache


@contextlib.contextmanager
def workspace(user: Store, keep: bool = False) -> Iterator[Workspace]:
    """A temporary directory with a fresh cache in ``cache/`` (the guest inputs of ``user`` linked).

    The directory is removed afterwards unless ``keep``.
    """
    root = Path(tempfile.mkdtemp(prefix="patchkit-bench-"))
    store = Store(root / "cache")
    store.root.mkdir()
    for name in SHARED_INPUTS:
        if (user.root / name).is_dir():
            os.symlink(user.root / name, store.root / name)
    try:
        yield Workspace(root, store)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def copy_project(project: Project, series_name: str, dest: Path, store: Store) -> Project:
    """A minimal copy of ``project`` in ``dest`` on ``store``: the pin and the one series (edited by the warm
    loop)."""
    (dest / "gpxe-tree").mkdir(parents=True)
    shutil.copy2(project.root / "gpxe-tree" / "pin.toml", dest / "gpxe-tree" / "pin.toml")
    shutil.copytree(project.series_root / series_name, dest / "series" / series_name)
    return Project(dest, store)


class _Clock:
    """Times named stages into a LoopRun."""

    def __init__(self, run: LoopRun, say: Progress, title: str) -> None:
        self.run, self.say, self.title = run, say, title

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.say(f"{self.title}: {name} ...")
        start = time.monotonic()
        yield
        self.run.stages[name] = time.monotonic() - start
        self.say(f"{self.title}: {name} took {self.run.stages[name]:.1f} s")


def run_loop(project: Project, series_name: str, guests: Sequence[str], title: str, say: Progress,
             mirror: Path | None = None, jobs: int | None = None) -> LoopRun:
    """One loop in the project's cache: [vendor from ``mirror``], apply, build, the guests through the ROM
    (``jobs`` at a time, default: as `patchkit test` does)."""
    run = LoopRun()
    clock = _Clock(run, say, title)
    pin = project.pin
    if mirror is not None:
        with clock.stage("vendor"):
            vendor(project.store, pin, str(mirror))
    with clock.stage("apply"):
        applied = apply_series(project, series_name)
    with clock.stage("build"):
        run.rom = build_rom(project.store, applied.tree, pin)
    with clock.stage("guests"):
        results = run_tests(project, guests, series_name=series_name, rom=run.rom.path, accel="tcg", jobs=jobs,
                            progress=lambda msg: say(f"{title}:   {msg}"))
    run.passed = {r.key.guest: r.passed for r in results}
    run.timings = {r.key.guest: r.timings for r in results}
    return run


def measure_floor(project: Project, series_name: str, guests: Sequence[str], title: str, say: Progress,
                  jobs: int | None = None) -> Floor:
    """The guests booted by SeaBIOS natively, side by side as run_loop boots them."""
    say(f"{title}: the guests natively ...")
    start = time.monotonic()
    results = run_tests(project, guests, series_name=series_name, reference=True, accel="tcg", jobs=jobs,
                        progress=lambda msg: say(f"{title}:   {msg}"))
    floor = Floor(time.monotonic() - start, {r.key.guest: r.passed for r in results},
                  {r.key.guest: r.timings for r in results})
    say(f"{title}: took {floor.seconds:.1f} s; slowest: {floor.slowest}")
    return floor


def edit_driver(project: Project, series_name: str, line: str, path: str = DRIVER) -> str:
    """Add ``line`` to the last hunk of ``path`` in the series' patches (a one-line driver change).

    Returns the patch file's name. The line goes right after the hunk header, so
    no later hunk of that file moves.
    """
    series = project.series(series_name)
    for patch in reversed(series.patches):
        if path in patch.files:
            assert series.path is not None
            atomic_write(series.path / "patches" / patch.filename,
                         replace(patch, diff=add_line(patch.diff, path, line)).render())
            project.forget_series(series_name)  # the next apply reads the edited patch
            return patch.filename
    raise PatchkitError(f"no patch of {series_name} changes {path}: the warm loop edits the driver there")


def add_line(diff: str, path: str, line: str) -> str:
    """``diff`` with ``+line`` first in the last hunk of ``path``'s section (its new count plus one)."""
    lines = diff.splitlines(keepends=True)
    start = next((n for n, text in enumerate(lines) if text.startswith(f"diff --git a/{path} b/{path}")), None)
    if start is None:
        raise PatchkitError(f"the diff has no section for {path}")
    end = next((n for n in range(start + 1, len(lines)) if lines[n].startswith("diff --git ")), len(lines))
    hunks = [n for n in range(start, end) if _HUNK.match(lines[n])]
    if not hunks:
        raise PatchkitError(f"the diff of {path} has no hunk to add a line to (binary or mode change only?)")
    at = hunks[-1]
    m = _HUNK.match(lines[at])
    assert m is not None
    old, new_start, new_count, rest = m.group(1), m.group(2), int(m.group(3) or 1), m.group(4)
    if new_count == 0:
        raise PatchkitError(f"the series deletes {path}: nothing to edit")
    lines[at] = f"@@ -{old} +{new_start},{new_count + 1} @@{rest}\n"
    lines.insert(at + 1, f"+{line}\n")
    return "".join(lines)


def measure_loops(project: Project, series_name: str, guests: Sequence[str], mirror: Path, work: Workspace,
                  say: Progress, warm_runs: int = 1, jobs: int | None = None) -> Loops:
    """The cold loop, ``warm_runs`` warm loops each followed by its floor, then the base tree's ROM,
    all on a copy of ``project`` in ``work``, with its (fresh) cache. The cold loop's ROM is the series as
    committed."""
    copy = copy_project(project, series_name, work.root / "project", work.store)
    cold = run_loop(copy, series_name, guests, "cold loop", say, mirror=mirror, jobs=jobs)
    warm, floors = [], []
    for n in range(1, warm_runs + 1):
        edited = edit_driver(copy, series_name, EDIT_LINE.format(n=n))
        title = f"warm loop {n}/{warm_runs}"
        say(f"{title}: added a comment line to {DRIVER} in {edited}")
        warm.append(run_loop(copy, series_name, guests, title, say, jobs=jobs))
        floors.append(measure_floor(copy, series_name, guests, f"floor {n}/{warm_runs}", say, jobs=jobs))
    say("building the base tree's ROM for the size comparison ...")
    base = base_rom(copy, progress=None)
    return Loops(cold, warm, floors, base)
