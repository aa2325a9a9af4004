"""Building the firmware: make in a tree, checked ROMs, reuse by content, ``--each-patch``.

A build is keyed by what decides its output: the content of the tree's build
directory (files git would track there, ignored build outputs excluded), the make
arguments, the target and the toolchain version. ``builds/<key>/`` in the cache holds
``build.log`` always and, after a successful build, the checked ROM and
``manifest.json`` (written last: a build with a manifest is complete). A key with a
complete build is reused without running make.

gPXE does not rebuild when EXTRA_CFLAGS or other settings change, so each tree
records the settings it was last built with (``<build dir>/bin/.patchkit-build.json``)
and is cleaned (``make clean``) before a build with different ones. A marker in bin/
exists while make runs; a build finding it (make was killed with patchkit) first
removes what that make wrote, since an object it was writing may be truncated.

``--each-patch`` checks every commit of the series out in one scratch tree
(``trees/<series>.each-patch/``), rewriting only changed files so each step is an
incremental build; warnings are compared by file and message against the base's
clean build and the earlier steps. The ROM checks themselves are in ``patchkit.rom``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from patchkit.errors import BuildError
from patchkit.git.apply import apply_series
from patchkit.git.cmd import git
from patchkit.git.worktree import export_tree, tree_lock, work_tree
from patchkit.pin import Pin
from patchkit.progress import Progress
from patchkit.project import Project
from patchkit.rom import check_rom, ids_for_target
from patchkit.run import run, run_logged
from patchkit.store import Store, atomic_write, file_lock, sha256_file

PROGRESS_EVERY = 50  # report every this many compiled objects
TREE_STATE = ".patchkit-build.json"  # in <build dir>/bin/: the settings the tree was last built with
MAKE_RUNNING = ".patchkit-make-running"  # in <build dir>/bin/ while make runs: left behind when it was killed
_WARNING = re.compile(r"^(?P<file>[^\s:]+):(?:\d+:)?(?:\d+:)?\s*warning:\s*(?P<message>.*)$")
_ERROR = re.compile(r"^[^\s:]+:\d+(?::\d+)?:\s*(?:fatal )?error:")
_LINK_ERROR = re.compile(r"undefined (?:reference|symbol)|\*\*\* ")
_TMP_OUTPUT = re.compile(r"bin/[\w.-]+\.tmp\b")
_NO_SPACE = re.compile(r"No space left on device|Disk quota exceeded")


@dataclass(frozen=True)
class BuiltRom:
    """A checked ROM in the build cache and how it came to be."""

    path: Path
    sha256: str
    size: int
    log: Path
    reused: bool
    warnings: list[str]  # `warning:` lines of the build log (a partial set for incremental builds)
    target: str = ""
    key: str = ""
    seconds: float = 0.0  # time spent in make (0 when reused)
    full: bool = False  # built from a clean tree: the log holds every warning of the tree


class MakeSettings(TypedDict):
    """What a tree is built with: recorded in its state file and in each build's manifest."""

    make_args: list[str]
    embedded: list[str]  # digests of the EMBEDDED_IMAGE files
    toolchain: str


def build_settings(pin: Pin, extra_make_args: Sequence[str] = ()) -> list[str]:
    """The make arguments for a build: the pin's, then ``extra_make_args``."""
    return [*pin.build.make_args, *extra_make_args]


@functools.cache
def toolchain_version() -> str:
    """The first lines of ``gcc --version`` and ``ld --version``: a new toolchain is a new build."""
    lines = []
    for tool in ("gcc", "ld"):
        out = run([tool, "--version"]).stdout.decode("utf-8", "replace")
        lines.append(out.splitlines()[0] if out else tool)
    return " / ".join(lines)


def tree_digest(build_root: Path) -> str:
    """SHA-256 over the files git would track in ``build_root`` (build outputs are ignored).

    The file list comes from git's ignore rules (the tree's own .gitignore files), so
    the tree need not be a git repository (an exported tree works too).
    """
    with tempfile.TemporaryDirectory(prefix="patchkit-digest-") as tmp:
        git("init", "-q", tmp)
        out = git(f"--git-dir={tmp}/.git", f"--work-tree={build_root}", "ls-files", "-z",
                  "--others", "--exclude-standard", cwd=build_root).stdout
    h = hashlib.sha256()
    for name in sorted(n for n in out.decode("utf-8", "surrogateescape").split("\0") if n):
        path = build_root / name
        h.update(name.encode("utf-8", "surrogateescape") + b"\0")
        h.update(b"x" if os.access(path, os.X_OK) else b"-")
        h.update(path.read_bytes() if not path.is_symlink() else os.readlink(path).encode())
        h.update(b"\0")
    return h.hexdigest()


def build_key(digest: str, make_args: Sequence[str], target: str) -> str:
    """The cache key of a build of tree content ``digest``."""
    record = {"tree": digest, "make_args": list(make_args), "target": target, "toolchain": toolchain_version()}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:32]


def _embedded_digests(make_args: Sequence[str]) -> list[str]:
    """Content hashes of files named by EMBEDDED_IMAGE= (their content is part of the ROM)."""
    digests = []
    for arg in make_args:
        if arg.startswith("EMBEDDED_IMAGE="):
            for name in arg.split("=", 1)[1].split(","):
                path = Path(name)
                if not path.is_absolute() or not path.is_file():
                    raise BuildError(f"embedded image {path} is not an existing file given by its absolute path",
                                     hint="make runs in the tree's src/: pass EMBEDDED_IMAGE=/absolute/path/to/script")
                digests.append(sha256_file(path))
    return digests


def build_rom(
    store: Store,
    tree: Path,
    pin: Pin,
    target: str | None = None,
    *,
    extra_make_args: Sequence[str] = (),
    progress: Progress | None = None,
) -> BuiltRom:
    """Build ``target`` (default: the pin's) in ``tree`` and return the checked ROM in the cache.

    A build with the same key is reused without running make. Raises BuildError with the compiler's
    error lines and the log's path when make fails, or when the ROM fails its checks.
    """
    say = progress or (lambda _msg: None)
    target = target or pin.build.target
    src = tree / pin.build.directory
    if not (src / "Makefile").is_file():
        raise BuildError(f"no Makefile in {src}", hint="point --tree at a gPXE checkout (`patchkit apply` makes one)")
    make_args = build_settings(pin, extra_make_args)
    settings = MakeSettings(make_args=make_args, embedded=_embedded_digests(make_args), toolchain=toolchain_version())
    with file_lock(src / "bin" / ".patchkit-build.lock"):
        digest = tree_digest(src)
        key = build_key(digest, make_args + settings["embedded"], target)
        out_dir = store.builds / key
        with file_lock(store.builds / f".{key}.lock"):
            if (cached := load_build(out_dir)) is not None:
                say(f"reusing build {key[:12]} of {target} (tree content and settings unchanged)")
                return cached
            _clear_damaged(out_dir, say)
            return _make(src, pin, target, key, digest, out_dir, settings, say)


def _clear_damaged(out_dir: Path, say: Progress) -> None:
    """Remove a build entry that has a manifest but is not a complete build (garbage, a ROM missing or altered).

    An entry without a manifest is a build that failed or was interrupted: make overwrites it.
    """
    manifest = out_dir / "manifest.json"
    if not (manifest.exists() or manifest.is_symlink()):
        return
    say(f"build {out_dir} in the cache is damaged or incomplete: building it again")
    shutil.rmtree(out_dir)


def load_build(out_dir: Path) -> BuiltRom | None:
    """The complete build in ``out_dir``, or None when it is missing, partial or altered."""
    manifest = _read_json(out_dir / "manifest.json")
    rom = out_dir / str(manifest.get("rom", ""))
    fields = ("sha256", "size", "target", "full")
    if not all(f in manifest for f in fields) or not rom.is_file() or sha256_file(rom) != manifest["sha256"]:
        return None
    log = out_dir / "build.log"
    return BuiltRom(path=rom, sha256=manifest["sha256"], size=manifest["size"], log=log, reused=True,
                    warnings=warning_lines(_read(log)), target=manifest["target"], key=out_dir.name,
                    seconds=0.0, full=manifest["full"])


def _make(src: Path, pin: Pin, target: str, key: str, digest: str, out_dir: Path, settings: MakeSettings,
          say: Progress) -> BuiltRom:
    """Run make for ``target`` in ``src`` and store the checked ROM under ``out_dir``.

    The tree is hashed again after make: a ROM is only stored under the key of the
    content ``digest`` it was built from (an edit during make would store another).
    """
    if not rom_target_available(src, target):
        vendor, device = ids_for_target(target) or (0, 0)
        raise BuildError(f"{target} cannot be built in {src}: "
                         f"no source declares PCI_ROM(0x{vendor:04x}, 0x{device:04x}, ...)",
                         hint="apply the series that adds the driver (`patchkit apply`), or pass another --target")
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / "build.log"
    seconds, full = make_in_tree(src, settings, target, log, say)
    if tree_digest(src) != digest:
        raise BuildError(f"the files in {src} changed while make ran: the ROM may be built from a mix of "
                         "old and new sources, so it was not stored",
                         hint="build it again once nothing else is editing or switching the tree")
    return _store(src, pin, target, key, out_dir, settings, log, seconds, full)


def make_in_tree(src: Path, settings: MakeSettings, target: str, log: Path, say: Progress,
                 context: str | None = None) -> tuple[float, bool]:
    """Run make for ``target`` in ``src`` (cleaning first if the settings changed); return (seconds, full).

    ``full`` tells whether the build started from a clean tree (its log then holds
    every warning). Raises BuildError naming the error lines, ``context`` (which
    patch) and the log.
    """
    state_file = src / "bin" / TREE_STATE
    _forget_interrupted_make(src, say)
    state = _read_json(state_file)
    if state.get("settings") != settings:
        why = "the tree was last built with other settings" if state else "no record of how this tree was built"
        say(f"make clean ({why})")
        if run_logged(["make", "clean"], log, cwd=src) != 0:
            raise BuildError(f"make clean failed in {src}; the log is {log}", hint="remove the tree and apply again")
    full = not any((src / "bin").glob("*.o"))
    atomic_write(state_file, json.dumps({"settings": settings}))
    jobs = os.cpu_count() or 1
    say(f"make -j{jobs} {target} in {src}" + (" (clean tree)" if full else " (incremental)"))
    counter = _Counter(say)
    marker = src / "bin" / MAKE_RUNNING
    marker.touch()  # empty: its time is what counts, and it needs no space beyond its name
    start = time.monotonic()
    status = run_logged(["make", f"-j{jobs}", *settings["make_args"], target], log, cwd=src, on_line=counter)
    seconds = time.monotonic() - start
    marker.unlink()  # make ended by itself: what it left is whole (an interrupted make leaves the marker)
    if status != 0:
        text = _read(log)
        if _NO_SPACE.search(text):
            raise BuildError(f"no space left on the device while building {target} in {src}"
                             + (f" {context}" if context else "") + f" (make's log says so: {log})",
                             hint=f"free space (`df -h {src}`), then build again; the code is not to blame")
        raise BuildError(failure_message(text, log, target, context),
                         hint="fix the code at the lines shown (the full log has the context)")
    say(f"built {target} in {seconds:.1f} s ({counter.count} objects compiled)")
    return seconds, full


def _forget_interrupted_make(src: Path, say: Progress) -> None:
    """Remove what a make that never ended (patchkit and its children killed) was writing.

    An object it was writing can be left truncated, even empty, yet newer than its sources:
    make would trust it and every later link would fail. Everything in bin/ written since
    the marker that make run left behind is removed, so make builds it again.
    """
    marker = src / "bin" / MAKE_RUNNING
    try:
        since = marker.stat().st_mtime_ns
    except FileNotFoundError:
        return
    keep = {MAKE_RUNNING, TREE_STATE}
    written = [p for p in (src / "bin").rglob("*")
               if p.is_file() and not p.is_symlink() and p.name not in keep and p.stat().st_mtime_ns >= since]
    say(f"the last make in {src} was interrupted: removing the {len(written)} file(s) it wrote, to build them again")
    for path in written:
        path.unlink()
    marker.unlink()


def _store(src: Path, pin: Pin, target: str, key: str, out_dir: Path, settings: MakeSettings, log: Path,
           seconds: float, full: bool) -> BuiltRom:
    """Check the ROM make left in ``src`` and install it (then its manifest) in ``out_dir``."""
    built = src / target
    check_rom(built, *rom_ids(pin, target))
    out_dir.mkdir(parents=True, exist_ok=True)
    rom = out_dir / Path(target).name
    tmp = out_dir / f".{rom.name}.tmp"
    shutil.copyfile(built, tmp)
    os.replace(tmp, rom)
    sha = sha256_file(rom)
    if log != out_dir / "build.log":
        shutil.copyfile(log, out_dir / "build.log")
        log = out_dir / "build.log"
    size = rom.stat().st_size
    manifest = {"target": target, "rom": rom.name, "sha256": sha, "size": size,
                "full": full, "seconds": round(seconds, 2), **settings}
    atomic_write(out_dir / "manifest.json", json.dumps(manifest, indent=2))
    return BuiltRom(path=rom, sha256=sha, size=size, log=log, reused=False,
                    warnings=warning_lines(_read(log)), target=target, key=key, seconds=seconds, full=full)


def rom_ids(pin: Pin, target: str) -> tuple[int, int]:
    """The PCI ids a target's ROM must carry: from a ``bin/VVVVDDDD.rom`` name, else the pin's [rom]."""
    if ids := ids_for_target(target):
        return ids
    if pin.rom is None:
        raise BuildError(f"{pin.path}: {target} names no PCI ids (bin/VVVVDDDD.rom does)",
                         hint="add a [rom] table with vendor and device")
    return pin.rom.vendor, pin.rom.device


@dataclass(frozen=True)
class PatchBuild:
    """One step of ``--each-patch``: the base (index 0) or the tree after patch ``index``."""

    index: int
    name: str  # "base" or the patch's file name
    commit: str
    roms: dict[str, BuiltRom]  # target -> ROM
    warnings: list[str]  # `warning:` lines of this step's make runs
    new_warnings: list[str]  # warnings (by file + message) seen neither at the base nor earlier


def ensure_series_rom(project: Project, series_name: str | None, progress: Progress | None = None, *,
                      target: str | None = None, extra_make_args: Sequence[str] = (),
                      version: int | None = None) -> BuiltRom:
    """The checked ROM of ``target`` (default: the pin's) for the series' current revision (or ``version``).

    Applies the series in its work tree (a no-op for the files when it is already
    there: applying is deterministic), then builds or reuses the ROM.
    """
    series = project.series(series_name)
    pin = project.pin
    # Held from applying to storing: another command switching the tree meanwhile would
    # make this a ROM of other sources than the series revision it is returned for.
    with tree_lock(project.store.tree(series.name), progress):
        applied = apply_series(project, series, version=version, progress=progress)
        return build_rom(project.store, applied.tree, pin, target, extra_make_args=extra_make_args,
                         progress=progress)


def base_rom(project: Project, progress: Progress | None = None) -> BuiltRom:
    """The checked ROM of the pin's base target (bin/1af41000.rom) built from the pinned commit.

    Built in ``trees/<pin>.base/``, an export of the pinned commit kept for reuse.
    """
    pin = project.pin
    tree = project.store.tree(f"{pin.name}.base")
    with tree_lock(tree, progress):
        _checkout(work_tree(project.store, pin), pin.commit, tree)
        return build_rom(project.store, tree, pin, pin.build.base_target, progress=progress)


def build_each_patch(project: Project, series_name: str | None, progress: Progress | None = None, *,
                     scratch: Path | None = None) -> list[PatchBuild]:
    """Build the base and the tree after every patch of the series; report warnings each patch adds.

    Each step is checked out in one scratch tree (default ``trees/<series>.each-patch/``,
    kept between runs) writing only the files that change, so every step after the first
    is an incremental build whose log shows exactly what the patch recompiled. The base
    warnings come from a build of a clean tree. Every step builds the pin's base target
    and, once some source declares its PCI ids, the pin's target. Raises BuildError
    naming the patch whose tree does not build.
    """
    say = progress or (lambda _msg: None)
    series = project.series(series_name)
    pin = project.pin
    applied = apply_series(project, series, progress=progress)
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
        for index, (name, commit) in enumerate(steps):
            say(f"[{index}/{len(steps) - 1}] {name} ({commit[:12]})")
            _checkout(applied.tree, commit, scratch)
            digest = tree_digest(src)
            base_key = build_key(digest, make_args, base_target)
            recorded = _read_json(base_record).get(base_key) if index == 0 else None
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
                _clear_damaged(out_dir, say)
                cached = _store(src, pin, target, key, out_dir, settings, log, seconds, full)
            roms[target] = cached
        lines += warning_lines(_read(log))
    return roms, lines


def rom_target_available(src: Path, target: str) -> bool:
    """Whether make can build ``target`` in ``src``: for bin/VVVVDDDD.rom, some source declares PCI_ROM(VVVV, DDDD)."""
    ids = ids_for_target(target)
    if ids is None:
        return True
    line = re.compile(rf"PCI_ROM\s*\(\s*0x{ids[0]:04x}\s*,\s*0x{ids[1]:04x}\s*,", re.IGNORECASE)
    return any(line.search(path.read_text(encoding="utf-8", errors="replace")) for path in src.rglob("*.c"))


def _checkout(repo: Path, commit: str, dest: Path) -> None:
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


class _Counter:
    """Counts objects compiled from make's ``[BUILD]`` lines and reports every few."""

    def __init__(self, say: Progress) -> None:
        self.say = say
        self.count = 0

    def __call__(self, line: str) -> None:
        if line.lstrip().startswith("[BUILD]"):
            self.count += 1
            if self.count % PROGRESS_EVERY == 0:
                self.say(f"compiled {self.count} objects")
        elif line.lstrip().startswith("[LD]"):
            self.say(f"linking ({self.count} objects compiled)")


def failure_message(text: str, log: Path, target: str, context: str | None = None) -> str:
    """What a failed build says: the error lines (file:line), where in the series (``context``), the log."""
    lines = text.splitlines()
    errors = [line for line in lines if _ERROR.match(line)]
    if not errors:
        errors = [line for line in lines if _LINK_ERROR.search(line)] or lines[-10:]
    where = f" {context}" if context else ""
    shown = "\n".join(f"  {line}" for line in errors[:20])
    more = f"\n  ... {len(errors) - 20} more" if len(errors) > 20 else ""
    return f"{target} does not build{where}:\n{shown}{more}\nfull log: {log}"


def warning_lines(text: str) -> list[str]:
    """The ``warning:`` lines of a build log, in order."""
    return [line for line in text.splitlines() if "warning:" in line]


def normalise_warning(line: str) -> tuple[str, str]:
    """(file, message) of a warning line: line and column dropped, temporary link outputs unnamed."""
    line = _TMP_OUTPUT.sub("bin/<output>.tmp", line.strip())
    m = _WARNING.match(line)
    if m is None:
        return ("", line)
    return (m.group("file"), m.group("message"))


def new_warnings(lines: Iterable[str], known: set[tuple[str, str]]) -> list[str]:
    """The ``warning:`` lines among ``lines`` whose (file, message) is not in ``known``, each once."""
    found: list[str] = []
    seen: set[tuple[str, str]] = set()
    for line in lines:
        if "warning:" not in line:
            continue
        norm = normalise_warning(line)
        if norm not in known and norm not in seen:
            seen.add(norm)
            found.append(line)
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; {} when it is missing or damaged (a damaged record is never trusted)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
