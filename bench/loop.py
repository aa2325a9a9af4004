"""The validation loop, timed stage by stage, in a throwaway cache.

Cold: a fresh PATCHKIT_CACHE (only the guest inputs and images are linked from the
user's cache): vendor the upstream from a local mirror, apply the series, build,
boot every guest through the ROM (`patchkit test --rom`). Warm: one comment line
added to the driver in a temporary copy of the series, then apply, incremental
build and every guest again. The same workspace also builds the base tree's ROM
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

from patchkit.build import BuiltRom, base_rom, build_rom
from patchkit.errors import PatchkitError
from patchkit.gitrepo import apply_series
from patchkit.progress import Progress
from patchkit.series.io import find_series
from patchkit.store import atomic_write
from patchkit.upstream import load_pin, vendor
from patchkit.validate import run_tests

DRIVER = "src/drivers/block/virtio-blk.c"
EDIT_LINE = "/* bench: a one-line change for the warm validation loop */"
SHARED_INPUTS = ("images", "inputs")  # linked read-only from the user's cache: guest inputs only
_HUNK = re.compile(r"^@@ -(\d+(?:,\d+)?) \+(\d+)(?:,(\d+))? @@(.*)$")


@dataclass
class LoopRun:
    """One pass of the loop: seconds per stage, the ROM it built, which guests passed."""

    stages: dict[str, float] = field(default_factory=dict)
    rom: BuiltRom | None = None
    passed: dict[str, bool] = field(default_factory=dict)

    def note(self) -> str:
        failed = [g for g, ok in self.passed.items() if not ok]
        if failed:
            return f"guests failed: {', '.join(failed)} (no verdict: a failing loop is not a validation)"
        return f"{len(self.passed)} guests passed"


@contextlib.contextmanager
def workspace(user_cache: Path, keep: bool = False) -> Iterator[Path]:
    """A temporary directory with ``cache/`` as PATCHKIT_CACHE (guest inputs linked) while inside.

    The directory is removed afterwards unless ``keep``.
    """
    root = Path(tempfile.mkdtemp(prefix="patchkit-bench-"))
    cache = root / "cache"
    cache.mkdir()
    for name in SHARED_INPUTS:
        if (user_cache / name).is_dir():
            os.symlink(user_cache / name, cache / name)
    saved = os.environ.get("PATCHKIT_CACHE")
    os.environ["PATCHKIT_CACHE"] = str(cache)
    try:
        yield root
    finally:
        if saved is None:
            os.environ.pop("PATCHKIT_CACHE", None)
        else:
            os.environ["PATCHKIT_CACHE"] = saved
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def copy_project(project: Path, series_name: str, dest: Path) -> Path:
    """A minimal copy of ``project`` in ``dest``: the pin and the one series (edited by the warm loop)."""
    (dest / "gpxe-tree").mkdir(parents=True)
    shutil.copy2(project / "gpxe-tree" / "pin.toml", dest / "gpxe-tree" / "pin.toml")
    shutil.copytree(project / "series" / series_name, dest / "series" / series_name)
    return dest


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


def run_loop(project: Path, series_name: str, guests: Sequence[str], title: str, say: Progress,
             mirror: Path | None = None) -> LoopRun:
    """One loop in the current cache: [vendor from ``mirror``], apply, build, every guest through the ROM."""
    run = LoopRun()
    clock = _Clock(run, say, title)
    pin = load_pin(project)
    if mirror is not None:
        with clock.stage("vendor"):
            vendor(pin, str(mirror))
    with clock.stage("apply"):
        applied = apply_series(project, series_name)
    with clock.stage("build"):
        run.rom = build_rom(applied.tree, pin)
    with clock.stage("guests"):
        results = run_tests(project, guests, series_name=series_name, rom=run.rom.path, accel="tcg",
                            progress=lambda msg: say(f"{title}:   {msg}"))
    run.passed = {r.key.guest: r.passed for r in results}
    return run


def edit_driver(project: Path, series_name: str, path: str = DRIVER, line: str = EDIT_LINE) -> str:
    """Add ``line`` to the last hunk of ``path`` in the series' patches (a one-line driver change).

    Returns the patch file's name. The line goes right after the hunk header, so
    no later hunk of that file moves.
    """
    series = find_series(project, series_name)
    for patch in reversed(series.patches):
        if path in patch.files:
            assert series.path is not None
            atomic_write(series.path / "patches" / patch.filename,
                         replace(patch, diff=add_line(patch.diff, path, line)).render())
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


def measure_loops(project: Path, series_name: str, guests: Sequence[str], mirror: Path, work: Path,
                  say: Progress) -> tuple[LoopRun, LoopRun, BuiltRom]:
    """Cold loop, warm loop, then the base tree's ROM, all in the current (fresh) cache.

    Returns (cold, warm, base ROM). The cold loop's ROM is the series as committed.
    """
    copy = copy_project(project, series_name, work / "project")
    cold = run_loop(copy, series_name, guests, "cold loop", say, mirror=mirror)
    edited = edit_driver(copy, series_name)
    say(f"warm loop: added a comment line to {DRIVER} in {edited}")
    warm = run_loop(copy, series_name, guests, "warm loop", say)
    say("building the base tree's ROM for the size comparison ...")
    base = base_rom(copy, progress=None)
    return cold, warm, base
