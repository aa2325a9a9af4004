"""Assembling patchkit's own real-mode programs (the *.asm files beside this module) with nasm."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from patchkit.run import run


def source_dir() -> Path:
    """The directory holding the .asm sources (an installed package or the checkout)."""
    return Path(str(resources.files("patchkit.guests")))


def sources_key(*names: str) -> str:
    """Hash of the named sources and the shared ones they include (acpi-off.asm, serial-out.asm)."""
    h = hashlib.sha256()
    for name in (*names, "acpi-off.asm", "serial-out.asm"):
        h.update(name.encode() + b"\0" + (source_dir() / name).read_bytes())
    return h.hexdigest()


def assemble(name: str, out: Path, defines: dict[str, int] | None = None) -> bytes:
    """Assemble ``name`` to a flat binary at ``out`` and return its bytes."""
    args = [f"-D{k}={v}" for k, v in (defines or {}).items()]
    run(["nasm", "-f", "bin", "-I", f"{source_dir()}/", *args, "-o", out, source_dir() / name])
    return out.read_bytes()
