"""A series' ROM and the base ROM: the series applied (or the pinned commit checked out), then built or reused."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from patchkit.build.cache import BuiltRom, build_rom
from patchkit.git.apply import apply_series
from patchkit.git.worktree import export_tree, tree_lock, work_tree
from patchkit.progress import Progress
from patchkit.project import Project
from patchkit.store import atomic_write


def ensure_series_rom(project: Project, series_name: str | None, progress: Progress | None = None, *,
                      target: str | None = None, extra_make_args: Sequence[str] = (),
                      version: int | None = None, need_elf: bool = False) -> BuiltRom:
    """The checked ROM of ``target`` (default: the pin's) for the series' current revision (or ``version``).

    Applies the series in its work tree (a no-op for the files when it is already
    there: applying is deterministic), then builds or reuses the ROM (with ``need_elf``, one
    that kept its linked ELF).
    """
    series = project.series(series_name)
    pin = project.pin
    # Held from applying to storing: another command switching the tree meanwhile would
    # make this a ROM of other sources than the series revision it is returned for.
    with tree_lock(project.store.tree(series.name), progress):
        applied = apply_series(project, series, version=version, progress=progress)
        return build_rom(project.store, applied.tree, pin, target, extra_make_args=extra_make_args,
                         progress=progress, need_elf=need_elf)


def base_rom(project: Project, progress: Progress | None = None) -> BuiltRom:
    """The checked ROM of the pin's base target (bin/1af41000.rom) built from the pinned commit.

    Built in ``trees/<pin>.base/``, an export of the pinned commit kept for reuse.
    """
    pin = project.pin
    tree = project.store.tree(f"{pin.name}.base")
    with tree_lock(tree, progress):
        checkout(work_tree(project.store, pin), pin.commit, tree)
        return build_rom(project.store, tree, pin, pin.build.base_target, progress=progress)


def checkout(repo: Path, commit: str, dest: Path) -> None:
    """Make ``dest`` hold the files of ``commit``, rewriting only files that differ.

    Unchanged files keep their modification times, so make rebuilds only what the
    commit changed. ``dest/.patchkit-files.json`` lists what was checked out last,
    so files the commit removes are removed (build outputs are never touched).
    """
    listing = dest / ".patchkit-files.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=dest.parent) as tmp:
        export = Path(tmp) / "tree"
        export_tree(repo, commit, export)
        files = sorted(p.relative_to(export).as_posix() for p in export.rglob("*") if p.is_file() or p.is_symlink())
        if not listing.is_file():
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(export, dest)
        else:
            old = set(json.loads(listing.read_text(encoding="utf-8")))
            for name in sorted(old - set(files)):
                (dest / name).unlink(missing_ok=True)
            for name in files:
                _copy_if_changed(export / name, dest / name)
    atomic_write(listing, json.dumps(files))


def _copy_if_changed(source: Path, dest: Path) -> None:
    if source.is_symlink():
        if dest.is_symlink() and os.readlink(dest) == os.readlink(source):
            return
        dest.unlink(missing_ok=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.readlink(source), dest)
        return
    same_mode = dest.is_file() and os.access(dest, os.X_OK) == os.access(source, os.X_OK)
    if same_mode and not dest.is_symlink() and dest.read_bytes() == source.read_bytes():
        return
    dest.unlink(missing_ok=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, dest)
    os.utime(dest)  # newer than every object built before
