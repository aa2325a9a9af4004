"""Checked ROMs in the build cache, reused by content key.

``builds/<key>/`` in the cache holds ``build.log`` always and, after a successful
build, the checked ROM, the ELF it was made from (``<rom>.elf``: gPXE's linked
``bin/<rom>.tmp``, with its debug information, for coverage) and ``manifest.json``
(written last: a build with a manifest is complete). A key with a complete build is reused without running make. The ROM
checks themselves are in ``patchkit.rom``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from patchkit.build.keys import (
    MakeSettings,
    build_key,
    build_settings,
    embedded_digests,
    toolchain_version,
    tree_digest,
)
from patchkit.build.make import make_in_tree, read, read_json, rom_target_available
from patchkit.build.warnings import warning_lines
from patchkit.errors import BuildError
from patchkit.pin import Pin
from patchkit.progress import Progress
from patchkit.rom import check_rom, ids_for_target
from patchkit.store import Store, atomic_write, file_lock, sha256_file


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

    @property
    def elf(self) -> Path | None:
        """The linked ELF the ROM was made from (None for a build stored before patchkit kept it)."""
        path = elf_path(self.path)
        return path if path.is_file() else None


def elf_path(rom: Path) -> Path:
    """Where the build cache keeps the linked ELF of ``rom``: ``<rom>.elf`` beside it."""
    return rom.with_name(rom.name + ".elf")


def build_rom(
    store: Store,
    tree: Path,
    pin: Pin,
    target: str | None = None,
    *,
    extra_make_args: Sequence[str] = (),
    progress: Progress | None = None,
    need_elf: bool = False,
) -> BuiltRom:
    """Build ``target`` (default: the pin's) in ``tree`` and return the checked ROM in the cache.

    A build with the same key is reused without running make (with ``need_elf``, only one that
    kept its ELF: an older one is made again, which make does incrementally). Raises BuildError with the compiler's
    error lines and the log's path when make fails, or when the ROM fails its checks.
    """
    say = progress or (lambda _msg: None)
    target = target or pin.build.target
    src = tree / pin.build.directory
    if not (src / "Makefile").is_file():
        raise BuildError(f"no Makefile in {src}", hint="point --tree at a gPXE checkout (`patchkit apply` makes one)")
    make_args = build_settings(pin, extra_make_args)
    settings = MakeSettings(make_args=make_args, embedded=embedded_digests(make_args), toolchain=toolchain_version())
    with file_lock(src / "bin" / ".patchkit-build.lock"):
        digest = tree_digest(src)
        key = build_key(digest, make_args + settings["embedded"], target)
        out_dir = store.builds / key
        with file_lock(store.builds / f".{key}.lock"):
            if (cached := load_build(out_dir)) is not None:
                if cached.elf is not None or not need_elf:
                    say(f"reusing build {key[:12]} of {target} (tree content and settings unchanged)")
                    return cached
                say(f"build {key[:12]} of {target} was stored without its ELF: making it again for coverage")
            else:
                clear_damaged(out_dir, say)
            return _make(src, pin, target, key, digest, out_dir, settings, say)


def clear_damaged(out_dir: Path, say: Progress) -> None:
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
    manifest = read_json(out_dir / "manifest.json")
    rom = out_dir / str(manifest.get("rom", ""))
    fields = ("sha256", "size", "target", "full")
    if not all(f in manifest for f in fields) or not rom.is_file() or sha256_file(rom) != manifest["sha256"]:
        return None
    log = out_dir / "build.log"
    return BuiltRom(path=rom, sha256=manifest["sha256"], size=manifest["size"], log=log, reused=True,
                    warnings=warning_lines(read(log)), target=manifest["target"], key=out_dir.name,
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
    return store_rom(src, pin, target, key, out_dir, settings, log, seconds, full)


def store_rom(src: Path, pin: Pin, target: str, key: str, out_dir: Path, settings: MakeSettings, log: Path,
           seconds: float, full: bool) -> BuiltRom:
    """Check the ROM make left in ``src`` and install it (then its manifest) in ``out_dir``."""
    built = src / target
    check_rom(built, *rom_ids(pin, target))
    out_dir.mkdir(parents=True, exist_ok=True)
    rom = out_dir / Path(target).name
    tmp = out_dir / f".{rom.name}.tmp"
    shutil.copyfile(built, tmp)
    os.replace(tmp, rom)
    linked = built.with_name(built.name + ".tmp")  # gPXE's linked ELF, from which the ROM was made
    if linked.is_file():
        shutil.copyfile(linked, tmp)
        os.replace(tmp, elf_path(rom))
    sha = sha256_file(rom)
    if log != out_dir / "build.log":
        shutil.copyfile(log, out_dir / "build.log")
        log = out_dir / "build.log"
    size = rom.stat().st_size
    manifest = {"target": target, "rom": rom.name, "sha256": sha, "size": size,
                "full": full, "seconds": round(seconds, 2), **settings}
    atomic_write(out_dir / "manifest.json", json.dumps(manifest, indent=2))
    return BuiltRom(path=rom, sha256=sha, size=size, log=log, reused=False,
                    warnings=warning_lines(read(log)), target=target, key=key, seconds=seconds, full=full)


def rom_ids(pin: Pin, target: str) -> tuple[int, int]:
    """The PCI ids a target's ROM must carry: from a ``bin/VVVVDDDD.rom`` name, else the pin's [rom]."""
    if ids := ids_for_target(target):
        return ids
    if pin.rom is None:
        raise BuildError(f"{pin.path}: {target} names no PCI ids (bin/VVVVDDDD.rom does)",
                         hint="add a [rom] table with vendor and device")
    return pin.rom.vendor, pin.rom.device
