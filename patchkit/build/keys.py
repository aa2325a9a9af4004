"""What a build is keyed by: the settings it is made with and the content of the tree's build directory.

A build is keyed by what decides its output: the content of the tree's build
directory (files git would track there, ignored build outputs excluded), the make
arguments, the target and the toolchain version.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

from patchkit.errors import BuildError
from patchkit.git.cmd import git
from patchkit.pin import Pin
from patchkit.run import run
from patchkit.store import sha256_file


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


def embedded_digests(make_args: Sequence[str]) -> list[str]:
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
