"""The guest interface `patchkit test` boots (the guests by name: ``patchkit.guests``).

A guest is a cached, content-keyed base disk image (``images/<name>-<key>/disk.img``,
read-only once built) plus the knowledge to make a throwaway run disk carrying a
per-run token, to recognise its serial markers, and to check afterwards what it
wrote to the run disk.
"""

from __future__ import annotations

import abc
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from patchkit.errors import GuestError, MissingInputError, PatchkitError
from patchkit.progress import Progress, quiet
from patchkit.qemu.faults import Hold
from patchkit.run import run
from patchkit.store import Store, atomic_write, build_dir, file_lock, sha256_file, sparse_digest

DISK_NAME = "disk.img"
SPARSE_NAME = f"{DISK_NAME}.sparse-sha256"  # beside the image: its sparse digest, which checks a run disk quickly
_SPARSE_DIGESTS: dict[str, str] = {}  # an image's recorded hash -> the sparse digest of that content, found here
TOKEN_RE = re.compile(r"[A-Za-z0-9-]{1,40}")


@dataclass(frozen=True)
class RequestCount:
    """The guest disk's read requests counted around one guest call: when the guest prints ``before``
    and ``after`` the harness reads QEMU's block statistics (QMP query-blockstats, rd_operations) and
    presses ``key`` (the guest waits for each). The run fails unless the difference is ``expected``."""

    before: str
    after: str
    expected: int = 1
    key: str = "spc"  # a QEMU key code


@dataclass(frozen=True)
class Sanboot:
    """How `patchkit test` drives gPXE for a guest (the default: `sanboot` of its virtio disk, which boots)."""

    commands: tuple[str, ...] = ()  # typed at the gPXE prompt before `sanboot`
    root_path: str | None = None  # None: the command's --root-path
    disk: str = "04.0"  # the guest disk: a virtio slot, or "aoe" (served over the NIC, see qemu.aoe)
    exit_after_sanboot: bool = False  # the disk does not boot: `exit` once sanboot returns, the BIOS boots A:
    after_sanboot: str = "exit"  # what is typed once sanboot returned (e.g. `imgexec` of an embedded image)
    embedded: str | None = None  # an image the ROM carries (Guest.embedded_image): the run's ROM is built for it

    @property
    def own_rom(self) -> bool:
        """Whether the guest boots through a ROM of its own (a NIC ROM, or one carrying an embedded image)."""
        return self.nic_rom or self.embedded is not None
    nic_rom: bool = False  # through the series' NIC ROM (the pin's base_target) instead of its virtio-blk ROM

    @property
    def needs_gpxe(self) -> bool:
        """Whether the run types gPXE commands beyond `sanboot` of a bootable virtio disk (so no --reference)."""
        return self != Sanboot()


class Guest(abc.ABC):
    """One kind of guest: its base image, run disks, markers and result checks."""

    name: str
    default_timeout: float  # overall seconds for one boot under TCG, generous
    failure_markers: tuple[str | re.Pattern[str], ...] = ("PATCHKIT-FAIL",)
    build_command: str  # the patchkit command that makes the base image
    disk_format: ClassVar[Literal["raw", "qcow2"]] = "raw"  # of the run disk
    memory_mib: int = 128  # the machine's memory (a configuration's `memory` or --memory wins)
    # Markers also match the rendered screen below the `sanboot` command (or SeaBIOS's "Booting from"), not only serial.
    matches_screen: ClassVar[bool] = False
    sanboot: ClassVar[Sanboot] = Sanboot()
    hold: ClassVar[Hold | None] = None  # a request the harness holds back at the guest's markers
    count: ClassVar[RequestCount | None] = None  # requests the harness counts at the guest's markers
    self_contained: ClassVar[bool] = False  # its image is built from patchkit's own sources: `test` builds it
    disk_shapes: ClassVar[tuple[str, ...]] = ()  # names accepted by variant(disk_shape=...)
    _pinned_image_dir: Path | None = None  # see pin_image_dir()

    def __init__(self, store: Store) -> None:
        self.store = store  # where its image and inputs are cached

    @abc.abstractmethod
    def image_key(self) -> str:
        """Content key of the image's inputs and recipe; MissingInputError if inputs are absent."""

    @abc.abstractmethod
    def _build_image(self, out: Path, progress: Progress) -> None:
        """Write the base image to ``out`` (a fresh file path in a temporary directory)."""

    @abc.abstractmethod
    def _inject_token(self, disk: Path, token: str) -> None:
        """Put ``token`` where the guest reads it, on the writable run disk ``disk``."""

    @abc.abstractmethod
    def verify_disk(self, disk: Path, token: str) -> list[str]:
        """Host-side checks of what the guest wrote to the run disk; [] means OK."""

    @property
    def image_name(self) -> str:
        """The name the base image is cached under (guests sharing an image share it)."""
        return self.name

    def image_dir(self) -> Path:
        """Where this guest's base image lives (exists only once built)."""
        if self._pinned_image_dir is not None:
            return self._pinned_image_dir
        return self.store.images / f"{self.image_name}-{self.image_key()}"

    def pin_image_dir(self, path: Path) -> None:
        """Boot the base image in ``path`` whatever image_key() would say: a cluster worker's copy, fetched
        by content (its inputs, e.g. FreeDOS media, need not be on the worker)."""
        self._pinned_image_dir = path

    def boot_floppy(self) -> Path | None:
        """An image for A: that the BIOS boots after gPXE (see Sanboot.exit_after_sanboot), or None."""
        return None

    def embedded_image(self) -> Path | None:
        """A file the ROM under test must carry as a gPXE embedded image (EMBEDDED_IMAGE), or None."""
        return None

    def base_image(self) -> Path:
        """The cached base image; MissingInputError naming the build command if absent."""
        image = self.image_dir() / DISK_NAME
        if not image.is_file():
            raise MissingInputError(
                f"the {self.image_name} guest image is not built ({image} missing)",
                hint=f"run `{self.build_command}`",
            )
        return image

    def build(self, progress: Progress = quiet) -> Path:
        """Build the base image unless it is cached (and intact: a damaged one is replaced); return its path."""
        final = self.image_dir()
        with file_lock(self.store.images / f".{self.image_name}.lock"):
            if (final / DISK_NAME).is_file():
                if (problem := self._damage(final / DISK_NAME)) is None:
                    return final / DISK_NAME
                progress(f"{self.image_name}: {problem}: building it again")
            with build_dir(final) as tmp:
                image = tmp / DISK_NAME
                self._build_image(image, progress)
                atomic_write(tmp / f"{DISK_NAME}.sha256", self.image_digest(image) + "\n")
                atomic_write(tmp / SPARSE_NAME, sparse_digest(image) + "\n")
                image.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        progress(f"{self.image_name}: image ready in {final}")
        return final / DISK_NAME

    def image_sha256(self) -> str:
        """Content hash of the base image (recorded at build time)."""
        image = self.base_image()
        recorded = image.parent / f"{DISK_NAME}.sha256"
        if recorded.is_file():
            return recorded.read_text().strip()
        return self.image_digest(image)

    def rebuild_command(self) -> str:
        """The command that builds the image again from the inputs already imported."""
        return self.build_command

    def image_digest(self, image: Path) -> str:
        """The content hash of a built image: its SHA-256 (sparse images may hash only their data)."""
        return sha256_file(image)

    def _damage(self, copy: Path) -> str | None:
        """How ``copy`` of the base image differs from the image as built (its recorded hash), or None.

        A copy with the image's sparse digest (recorded beside it when built; for an image built
        before, found once a copy matched the recorded hash) is the image, its holes never hashed:
        the SHA-256 over freedos-installed's 4 GiB of zeros took seconds at every boot.
        """
        folder = self.base_image().parent
        recorded = folder / f"{DISK_NAME}.sha256"
        if not recorded.is_file():
            return None  # built before hashes were recorded: nothing to compare with
        expected = recorded.read_text().strip()
        sparse = sparse_digest(copy)
        known = folder / SPARSE_NAME
        if sparse == (known.read_text().strip() if known.is_file() else _SPARSE_DIGESTS.get(expected)):
            return None
        found = self.image_digest(copy)
        if found == expected:
            _SPARSE_DIGESTS[expected] = sparse
            return None
        return (f"the {self.image_name} guest image {self.base_image()} is damaged (content hash {found[:16]}…, "
                f"{copy.stat().st_size} bytes; it was {expected[:16]}… when built)")

    def make_run_disk(self, run_dir: Path, token: str) -> Path:
        """A writable copy of the base image in ``run_dir`` with ``token`` injected.

        The copy is checked against the hash recorded when the image was built, so a
        damaged image is never booted: GuestError blaming the image (the series was not tested).
        """
        check_token(token)
        base = self.base_image()
        run_dir.mkdir(parents=True, exist_ok=True)
        disk = run_dir / f"{self.name}.img"
        if disk.exists():
            disk.chmod(0o644)
            disk.unlink()
        try:
            run(["cp", "--reflink=auto", base, disk])
        except BaseException:  # a full disk, ^C: no partial copy is left in the run directory
            disk.unlink(missing_ok=True)
            raise
        if (problem := self._damage(disk)) is not None:
            disk.unlink()
            raise GuestError(problem, hint=f"run `{self.rebuild_command()}` to build it again; "
                                           "nothing was tested or recorded with it")
        os.chmod(disk, 0o644)
        self._inject_token(disk, token)
        return disk

    def variant(self, disk_shape: str | None = None, read_only: bool = False) -> Guest:
        """This guest on another disk shape (a name from ``disk_shapes``) or on a read-only disk.

        Guests whose checks do not depend on the disk have no variants: PatchkitError.
        """
        if disk_shape is None and not read_only:
            return self
        wanted = f"disk shape {disk_shape!r}" if disk_shape is not None else "a read-only disk"
        known = f" (its shapes: {', '.join(self.disk_shapes)})" if self.disk_shapes else ""
        raise PatchkitError(f"the {self.name} guest cannot run on {wanted}{known}",
                            hint="run configurations with disk shapes or read-only disks on the probe guest")

    def figures(self, serial: str) -> dict[str, float]:
        """Figures the guest measured and printed on serial (``serial``: the run's whole output), for the
        run's result.json; none by default. They are reported, never asserted on."""
        return {}

    def success_marker(self, token: str) -> str | re.Pattern[str]:
        """What the guest prints on serial when every check passed (a substring or a regular expression)."""
        return f"PATCHKIT-PASS {token}"


def check_token(token: str) -> None:
    """Tokens go into DOS batch files and boot sectors: keep them short and plain."""
    if not TOKEN_RE.fullmatch(token):
        raise PatchkitError(f"invalid run token {token!r}: use 1-40 letters, digits or '-'")
