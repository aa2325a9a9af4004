"""A user's own disk image as a guest (`patchkit test --image FILE`, or `[[images]]` in the manifest).

The image (raw or qcow2) is never written: each run boots a qcow2 overlay in the run
directory whose backing file is the image. An image from someone else is untrusted: its
backing chain is resolved, shown and hashed whole, and refused when it leaves the image's
directory (and the ones the user allowed), since a backing file may name any host file.
Nothing is injected and nothing is checked on the disk afterwards: the verdict comes from
the console alone. It passes when the ``expect`` regular expression shows up on serial
(SeaBIOS mirrors the text screen there) or on the rendered screen below the `sanboot`
line, and fails on ``fail`` or on one of the boot loaders' own failure messages, on a
stall or on the timeout.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from patchkit.errors import GuestError, PatchkitError
from patchkit.guests.base import Guest
from patchkit.progress import Progress, quiet
from patchkit.run import CommandError, run
from patchkit.store import Store, sha256_file

FORMATS = ("raw", "qcow2")
# A prompt at the end of a line: login, a shell (# or $), DOS (C:\>), GRUB (grub>), gPXE-free.
DEFAULT_EXPECT = r"(?m)(login: ?|[#$] ?|[A-Z]:\\[^\r\n>]*> ?|grub> ?)\r?$"
# What boot loaders and kernels print when the boot has failed (always on, --fail adds to them).
BOOT_FAILURES = (
    "Missing operating system", "Invalid partition table", "Error loading operating system",
    "Operating system not found", "Boot failed", "Kernel panic - not syncing", "No bootable device",
)
DEFAULT_TIMEOUT = 180.0
# Debian's netboot installer (a 30 MB initrd) panics with 128 MiB ("Attempted to kill init!") and reaches its
# first dialog with 512 MiB: an image of your own is likely an installer or a full system.
DEFAULT_MEMORY = 512
ADHOC_PREFIX = "image:"  # the guest name of a `test --image` run: image:FILE-NAME (kept apart from the series')
MAX_CHAIN = 8  # backing files behind an image, at most


@dataclass(frozen=True)
class ImageSpec:
    """A user's image and how to judge its boot."""

    path: Path
    name: str = ""  # the guest name results are recorded under; default "image:<file name>"
    expect: str = DEFAULT_EXPECT
    fail: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    memory_mib: int = DEFAULT_MEMORY  # installers need far more than 128 MiB
    format: Literal["raw", "qcow2"] | None = None  # as the user declared it (never probed); None: qemu-img's guess
    image_dirs: tuple[Path, ...] = ()  # where its backing files may be, besides its own directory
    backing_anywhere: bool = False  # its backing files may be anywhere (the user said so)

    @property
    def guest_name(self) -> str:
        return self.name or f"{ADHOC_PREFIX}{self.path.name}"


def compile_pattern(text: str, option: str) -> re.Pattern[str]:
    """``text`` as a regular expression; PatchkitError naming ``option`` when it is not one."""
    try:
        return re.compile(text)
    except re.error as exc:
        raise PatchkitError(f"{option} {text!r} is not a regular expression: {exc}") from exc


def image_format(path: Path) -> Literal["raw", "qcow2"]:
    """The image's format as qemu-img sees it; PatchkitError for a missing file or another format."""
    return _info(path, None)[0]


@dataclass(frozen=True)
class ChainLink:
    """One file of an image's backing chain, with the format QEMU opens it in."""

    path: Path
    format: Literal["raw", "qcow2"]


def backing_chain(image: Path, allowed: Sequence[Path] = (), anywhere: bool = False,
                  fmt: Literal["raw", "qcow2"] | None = None) -> list[ChainLink]:
    """``image`` and the files behind it, top first: the image in format ``fmt`` (None: qemu-img's guess),
    every backing file in the format its overlay records (never guessed). PatchkitError for a chain that
    leaves the image's own directory and ``allowed`` (unless ``anywhere``), a backing file without a
    recorded format, a protocol or json: file name, an external data file, or a loop.

    An image from someone else is untrusted input: its backing file may name any host file (/etc/shadow),
    which the guest would then read through INT 13h.
    """
    top = image.resolve()
    roots = [top.parent, *(Path(os.path.realpath(d)) for d in allowed)]
    chain: list[ChainLink] = []
    current = top
    while True:
        if any(link.path == current for link in chain) or len(chain) >= MAX_CHAIN:
            raise PatchkitError(f"image {top}: its backing chain loops or is longer than {MAX_CHAIN} files")
        found, info = _info(current, fmt)  # with fmt given, qemu-img opens it so and never guesses
        chain.append(ChainLink(current, found))
        data_file = info.get("format-specific", {}).get("data", {}).get("data-file")
        if data_file:
            raise PatchkitError(f"image {current} keeps its data in another file ({data_file}): refused",
                                hint=f"make a self-contained copy: qemu-img convert -O qcow2 {top} copy.qcow2")
        backing = info.get("backing-filename")
        if backing is None:
            return chain
        full = str(info.get("full-backing-filename") or backing)
        shown = " -> ".join(str(link.path) for link in chain)
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", full):
            raise PatchkitError(f"image {shown}: backing file {full!r} is not a file name: refused")
        target = Path(os.path.realpath(current.parent / full))
        if not anywhere and not any(target.is_relative_to(root) for root in roots):
            raise PatchkitError(
                f"image {shown}: its backing file {target} is outside {top.parent}: refused (an image from someone "
                "else can name any host file as its backing file, and the guest then reads it)",
                hint="flatten it (qemu-img convert -O qcow2 IMAGE copy.qcow2), or allow the directory explicitly: "
                     "--image-dir DIR (or --backing-anywhere)")
        recorded = info.get("backing-filename-format")
        if recorded not in ("raw", "qcow2"):
            raise PatchkitError(f"image {shown}: backing file {target} has no recorded format "
                                f"({recorded or 'none'}): QEMU would have to guess it",
                                hint=f"record it: qemu-img rebase -u -F raw -b {target} {current} (or -F qcow2)")
        current, fmt = target, recorded


def chain_sha256(chain: Sequence[ChainLink]) -> str:
    """The content hash of a chain: the top file's SHA-256 alone, or one over every file's format and hash."""
    if len(chain) == 1:
        return sha256_file(chain[0].path)
    text = "".join(f"{link.format} {sha256_file(link.path)}\n" for link in chain)
    return hashlib.sha256(text.encode()).hexdigest()


def _info(path: Path, fmt: str | None) -> tuple[Literal["raw", "qcow2"], dict[str, Any]]:
    """qemu-img's view of ``path`` alone (its backing file not opened), in format ``fmt`` (None: probed)."""
    if not path.is_file():
        raise PatchkitError(f"image {path} does not exist or is not a file")
    try:
        info = json.loads(run(["qemu-img", "info", "--output=json", *(["-f", fmt] if fmt else []), path]).stdout)
    except CommandError as exc:
        raise PatchkitError(f"qemu-img cannot read image {path}: {exc.output.strip()}") from exc
    found = info.get("format")
    if found == "raw":
        return "raw", info
    if found == "qcow2":
        return "qcow2", info
    raise PatchkitError(f"image {path} is in {found} format: patchkit boots raw and qcow2 images",
                        hint=f"convert it: qemu-img convert -O qcow2 {path} {path.stem}.qcow2")


class ImageGuest(Guest):
    """A user's image booted through the ROM and judged by console patterns."""

    build_command = "patchkit test --image FILE (a user's image is not built by patchkit)"
    disk_format: ClassVar[Literal["raw", "qcow2"]] = "qcow2"  # the run's overlay
    matches_screen: ClassVar[bool] = True

    def __init__(self, store: Store, spec: ImageSpec) -> None:
        super().__init__(store)
        self.spec = spec
        self.name = spec.guest_name
        self.default_timeout = spec.timeout
        self.memory_mib = spec.memory_mib
        self.chain = backing_chain(spec.path, spec.image_dirs, spec.backing_anywhere, spec.format)
        self.format = self.chain[0].format
        self.expect = compile_pattern(spec.expect, "--expect")
        fail = (compile_pattern(spec.fail, "--fail"),) if spec.fail else ()
        self.failure_markers = (*BOOT_FAILURES, *fail)
        self._sha256 = ""

    def image_key(self) -> str:
        return self.image_sha256()[:16]

    def _build_image(self, out: Path, progress: Progress) -> None:
        raise GuestError(f"{self.name} is a user's image: patchkit does not build it")

    def build(self, progress: Progress = quiet) -> Path:
        return self.base_image()

    def base_image(self) -> Path:
        return self.spec.path.resolve()

    def image_sha256(self) -> str:
        """The content hash of the image and its backing files (chain_sha256)."""
        if not self._sha256:
            self._sha256 = chain_sha256(self.chain)
        return self._sha256

    def describe_chain(self) -> str:
        """The backing chain as QEMU opens it: ``qcow2 /a/top.qcow2 -> raw /a/base.img``."""
        return " -> ".join(f"{link.format} {link.path}" for link in self.chain)

    def make_run_disk(self, run_dir: Path, token: str) -> Path:
        """A qcow2 overlay in ``run_dir`` backed by the image, which QEMU then only reads."""
        run_dir.mkdir(parents=True, exist_ok=True)
        overlay = run_dir / "overlay.qcow2"
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", self.format, "-b", self.base_image(), overlay])
        return overlay

    def _inject_token(self, disk: Path, token: str) -> None:
        """Nothing: a user's image has no place for the token."""

    def verify_disk(self, disk: Path, token: str) -> list[str]:
        return []

    def success_marker(self, token: str) -> re.Pattern[str]:
        return self.expect
