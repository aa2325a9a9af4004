"""A user's own disk image as a guest (`patchkit test --image FILE`, or `[[images]]` in the manifest).

The image (raw or qcow2) is never written: each run boots a qcow2 overlay in the run
directory whose backing file is the image. Nothing is injected and nothing is checked
on the disk afterwards: the verdict comes from the console alone. It passes when the
``expect`` regular expression shows up on serial (SeaBIOS mirrors the text screen
there) or on the rendered screen below the `sanboot` line, and fails on ``fail`` or on
one of the boot loaders' own failure messages, on a stall or on the timeout.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

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


@dataclass(frozen=True)
class ImageSpec:
    """A user's image and how to judge its boot."""

    path: Path
    name: str = ""  # the guest name results are recorded under; default "image:<file name>"
    expect: str = DEFAULT_EXPECT
    fail: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    @property
    def guest_name(self) -> str:
        return self.name or f"image:{self.path.name}"


def compile_pattern(text: str, option: str) -> re.Pattern[str]:
    """``text`` as a regular expression; PatchkitError naming ``option`` when it is not one."""
    try:
        return re.compile(text)
    except re.error as exc:
        raise PatchkitError(f"{option} {text!r} is not a regular expression: {exc}") from exc


def image_format(path: Path) -> Literal["raw", "qcow2"]:
    """The image's format as qemu-img sees it; PatchkitError for a missing file or another format."""
    if not path.is_file():
        raise PatchkitError(f"image {path} does not exist or is not a file")
    try:
        info = json.loads(run(["qemu-img", "info", "--output=json", path]).stdout)
    except CommandError as exc:
        raise PatchkitError(f"qemu-img cannot read image {path}: {exc.output.strip()}") from exc
    fmt = info.get("format")
    if fmt == "raw":
        return "raw"
    if fmt == "qcow2":
        return "qcow2"
    raise PatchkitError(f"image {path} is in {fmt} format: patchkit boots raw and qcow2 images",
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
        self.format = image_format(spec.path)
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
        """The image file's content hash (qcow2: of the file, not of the disk it describes)."""
        if not self._sha256:
            self._sha256 = sha256_file(self.base_image())
        return self._sha256

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
