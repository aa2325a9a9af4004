"""``--each-patch``: the base and the tree after every patch built, and the warnings each patch adds.

Every commit of the series is checked out in one scratch tree
(``trees/<series>.each-patch/``), rewriting only changed files so each step is an
incremental build; warnings are compared by file and message against the base's
clean build and the earlier steps.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from patchkit.build.cache import BuiltRom, clear_damaged, load_build, store_rom
from patchkit.build.keys import MakeSettings, build_key, build_settings, toolchain_version, tree_digest
from patchkit.build.make import TREE_STATE, make_in_tree, read, read_json, rom_target_available
from patchkit.build.series import checkout
from patchkit.build.warnings import new_warnings, normalise_warning, warning_lines
from patchkit.git.apply import apply_series
from patchkit.pin import Pin
from patchkit.progress import Progress, about
from patchkit.project import Project
from patchkit.series.io import load_version
from patchkit.store import Store, atomic_write, file_lock


@dataclass(frozen=True)
class PatchBuild:
    """One step of ``--each-patch``: the base (index 0) or the tree after patch ``index``."""

    index: int
    name: str  # "base" or the patch's file name
    commit: str
    roms: dict[str, BuiltRom]  # target -> ROM
    warnings: list[str]  # `warning:` lines of this step's make runs
    new_warnings: list[str]  # warnings (by file + message) seen neither at the base nor earlier


def build_each_patch(project: Project, series_name: str | None, progress: Progress | None = None, *,
                     scratch: Path | None = None, version: int | None = None) -> list[PatchBuild]:
    """Build the base and the tree after every patch of the series (or its ``version``); report warnings each
    patch adds.

    Each step is checked out in one scratch tree (default ``trees/<series>.each-patch/``,
    kept between runs) writing only the files that change, so every step after the first
    is an incremental build whose log shows exactly what the patch recompiled. The base
    warnings come from a build of a clean tree. Every step builds the pin's base target
    and, once some source declares its PCI ids, the pin's target. Raises BuildError
    naming the patch whose tree does not build.
    """
    say = progress or (lambda _msg: None)
    current = project.series(series_name)
    series = load_version(current, version) if version is not None else current
    pin = project.pin
    applied = apply_series(project, current, version=version, progress=progress)
    names = [p.filename for p in series.patches if p.filename not in applied.merged]
    steps = [("base", applied.base), *zip(names, applied.commits, strict=True)]
    scratch = scratch or project.store.tree(f"{series.name}.each-patch")
    src = scratch / pin.build.directory
    make_args = build_settings(pin)
    settings = MakeSettings(make_args=make_args, embedded=[], toolchain=toolchain_version())
    base_target, target = pin.build.base_target, pin.build.target
    results: list[PatchBuild] = []
    known: set[tuple[str, str]] = set()
    base_record = scratch / "base-warnings.json"  # {base build key: warning lines of a clean build}
    with file_lock(scratch.parent / f".{scratch.name}.lock"):
        patches_from = 0.0  # when the first patch's step started: the base's clean build is no measure for them
        for index, (name, commit) in enumerate(steps):
            left = ""
            if index == 1:
                patches_from = time.monotonic()
            elif index > 1:
                left = f", {about((time.monotonic() - patches_from) / (index - 1) * (len(steps) - index))} left"
            say(f"[{index}/{len(steps) - 1}] {name} ({commit[:12]}){left}")
            checkout(applied.tree, commit, scratch)
            digest = tree_digest(src)
            base_key = build_key(digest, make_args, base_target)
            recorded = read_json(base_record).get(base_key) if index == 0 else None
            if index == 0 and recorded is None:
                (src / "bin" / TREE_STATE).unlink(missing_ok=True)  # the base warnings need a clean build
            targets = [base_target] + ([target] if target != base_target and rom_target_available(src, target) else [])
            context = f"at the series base {commit[:12]}" if index == 0 else f"after patch {index} ({name})"
            logs = scratch / "logs" / f"{index:02d}"
            roms, lines = _build_step(project.store, src, pin, settings, digest, targets, logs, context, say)
            if index == 0:
                if recorded is None:
                    recorded = lines
                    atomic_write(base_record, json.dumps({base_key: lines}))
                lines = recorded
            fresh = new_warnings(lines, known) if index else []
            known |= {normalise_warning(line) for line in lines}
            if fresh:
                say(f"  {len(fresh)} new warning(s) after {name}")
            results.append(PatchBuild(index=index, name=name, commit=commit, roms=roms,
                                      warnings=lines, new_warnings=fresh))
    return results


def _build_step(store: Store, src: Path, pin: Pin, settings: MakeSettings, digest: str, targets: list[str],
                log_prefix: Path, context: str, say: Progress) -> tuple[dict[str, BuiltRom], list[str]]:
    """Run make for each target in ``src`` (always: the log is the step's record); return ROMs and warning lines.

    A target whose key already has a complete build keeps that cached build.
    """
    roms: dict[str, BuiltRom] = {}
    lines: list[str] = []
    log_prefix.parent.mkdir(parents=True, exist_ok=True)
    for target in targets:
        key = build_key(digest, settings["make_args"], target)
        log = log_prefix.parent / f"{log_prefix.name}-{Path(target).stem}.log"
        seconds, full = make_in_tree(src, settings, target, log, say, context)
        out_dir = store.builds / key
        with file_lock(store.builds / f".{key}.lock"):
            if (cached := load_build(out_dir)) is None:
                clear_damaged(out_dir, say)
                cached = store_rom(src, pin, target, key, out_dir, settings, log, seconds, full)
            roms[target] = cached
        lines += warning_lines(read(log))
    return roms, lines
