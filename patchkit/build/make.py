"""Running make in a tree: cleaning when the settings changed, an interrupted make's leftovers, failures.

gPXE does not rebuild when EXTRA_CFLAGS or other settings change, so each tree
records the settings it was last built with (``<build dir>/bin/.patchkit-build.json``)
and is cleaned (``make clean``) before a build with different ones. A marker in bin/
exists while make runs; a build finding it (make was killed with patchkit) first
removes what that make wrote, since an object it was writing may be truncated.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from patchkit.build.keys import MakeSettings
from patchkit.errors import BuildError
from patchkit.progress import Progress
from patchkit.rom import ids_for_target
from patchkit.run import run_logged
from patchkit.store import atomic_write

PROGRESS_EVERY = 50  # report every this many compiled objects
TREE_STATE = ".patchkit-build.json"  # in <build dir>/bin/: the settings the tree was last built with
OBJECTS = ".patchkit-objects.json"  # in <build dir>/bin/: target -> objects its last clean build compiled
MAKE_RUNNING = ".patchkit-make-running"  # in <build dir>/bin/ while make runs: left behind when it was killed
_ERROR = re.compile(r"^[^\s:]+:\d+(?::\d+)?:\s*(?:fatal )?error:")
_LINK_ERROR = re.compile(r"undefined (?:reference|symbol)|\*\*\* ")
_NO_SPACE = re.compile(r"No space left on device|Disk quota exceeded")


def tree_settings(settings: MakeSettings) -> MakeSettings:
    """The settings that decide whether a tree must be cleaned: all but the embedded images, which
    gPXE's Makefile tracks itself (embedded.o depends on the files and on bin/.embedded.list)."""
    make_args = [arg for arg in settings["make_args"] if not arg.startswith("EMBEDDED_IMAGE=")]
    return MakeSettings(make_args=make_args, embedded=[], toolchain=settings["toolchain"])


def make_in_tree(src: Path, settings: MakeSettings, target: str, log: Path, say: Progress,
                 context: str | None = None) -> tuple[float, bool]:
    """Run make for ``target`` in ``src`` (cleaning first if the settings changed); return (seconds, full).

    ``full`` tells whether the build started from a clean tree (its log then holds
    every warning). Raises BuildError naming the error lines, ``context`` (which
    patch) and the log.
    """
    state_file = src / "bin" / TREE_STATE
    _forget_interrupted_make(src, say)
    state = read_json(state_file)
    if state.get("settings") != tree_settings(settings):
        why = "the tree was last built with other settings" if state else "no record of how this tree was built"
        say(f"make clean ({why})")
        if run_logged(["make", "clean"], log, cwd=src) != 0:
            raise BuildError(f"make clean failed in {src}; the log is {log}", hint="remove the tree and apply again")
    full = not any((src / "bin").glob("*.o"))
    atomic_write(state_file, json.dumps({"settings": tree_settings(settings)}))
    jobs = os.cpu_count() or 1
    say(f"make -j{jobs} {target} in {src}" + (" (clean tree)" if full else " (incremental)"))
    counts = src / "bin" / OBJECTS
    known = read_json(counts)
    total = known.get(target)
    counter = _Counter(say, total if full and isinstance(total, int) else None)
    marker = src / "bin" / MAKE_RUNNING
    marker.touch()  # empty: its time is what counts, and it needs no space beyond its name
    start = time.monotonic()
    status = run_logged(["make", f"-j{jobs}", *settings["make_args"], target], log, cwd=src, on_line=counter)
    seconds = time.monotonic() - start
    marker.unlink()  # make ended by itself: what it left is whole (an interrupted make leaves the marker)
    if status != 0:
        text = read(log)
        if _NO_SPACE.search(text):
            raise BuildError(f"no space left on the device while building {target} in {src}"
                             + (f" {context}" if context else "") + f" (make's log says so: {log})",
                             hint=f"free space (`df -h {src}`), then build again; the code is not to blame")
        raise BuildError(failure_message(text, log, target, context),
                         hint="fix the code at the lines shown (the full log has the context)")
    if full:
        atomic_write(counts, json.dumps({**known, target: counter.count}))
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
    keep = {MAKE_RUNNING, TREE_STATE, OBJECTS}
    written = [p for p in (src / "bin").rglob("*")
               if p.is_file() and not p.is_symlink() and p.name not in keep and p.stat().st_mtime_ns >= since]
    say(f"the last make in {src} was interrupted: removing the {len(written)} file(s) it wrote, to build them again")
    for path in written:
        path.unlink()
    marker.unlink()


def rom_target_available(src: Path, target: str) -> bool:
    """Whether make can build ``target`` in ``src``: for bin/VVVVDDDD.rom, some source declares PCI_ROM(VVVV, DDDD)."""
    ids = ids_for_target(target)
    if ids is None:
        return True
    line = re.compile(rf"PCI_ROM\s*\(\s*0x{ids[0]:04x}\s*,\s*0x{ids[1]:04x}\s*,", re.IGNORECASE)
    return any(line.search(path.read_text(encoding="utf-8", errors="replace")) for path in src.rglob("*.c"))


class _Counter:
    """Counts objects compiled from make's ``[BUILD]`` lines and reports every few: "compiled 150 of 401" when
    ``total`` (what the tree's last clean build compiled) is known."""

    def __init__(self, say: Progress, total: int | None = None) -> None:
        self.say = say
        self.count = 0
        self.total = total

    def __call__(self, line: str) -> None:
        if line.lstrip().startswith("[BUILD]"):
            self.count += 1
            if self.count % PROGRESS_EVERY == 0:
                of = f" of {self.total}" if self.total and self.total >= self.count else " objects"
                self.say(f"compiled {self.count}{of}")
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


def read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; {} when it is missing or damaged (a damaged record is never trusted)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
