"""Pinned Debian packages the guest images are made from: download once, extract on demand.

The .debs are fetched with ``apt-get download`` into ``inputs/debian/`` of the cache
and unpacked with ``dpkg-deb -x`` (no root, no mounting). Changing a pin changes the
image keys, so images are rebuilt from the new packages.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from patchkit.errors import GuestError
from patchkit.progress import Progress
from patchkit.run import CommandError, run
from patchkit.store import Store, file_lock


@dataclass(frozen=True)
class Pin:
    """One Debian package at one exact version."""

    name: str
    version: str
    arch: str

    @property
    def filename(self) -> str:
        """The file name ``apt-get download`` gives the package."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


KERNEL_RELEASE = "6.1.0-50-amd64"
KERNEL = Pin(f"linux-image-{KERNEL_RELEASE}", "6.1.176-1", "amd64")
BUSYBOX = Pin("busybox-static", "1:1.35.0-4+deb12u1+b1", "amd64")
SYSLINUX = Pin("syslinux", "3:6.04~git20190206.bf6db5b4+dfsg1-3+b1", "amd64")
SYSLINUX_COMMON = Pin("syslinux-common", "3:6.04~git20190206.bf6db5b4+dfsg1-3", "all")

# GRUB's rescue image as Debian builds it: a disk image made by a third party, booted by the --image tests.
GRUB_RESCUE = Pin("grub-rescue-pc", "2.06-13+deb12u2", "amd64")
GRUB_RESCUE_IMAGE = "usr/lib/grub-rescue/grub-rescue-cdrom.iso"  # a hybrid ISO: an MBR disk image as well

DEBIAN_PINS = (KERNEL, BUSYBOX, SYSLINUX, SYSLINUX_COMMON)
SYSLINUX_PINS = (SYSLINUX, SYSLINUX_COMMON)


def inputs_dir(store: Store) -> Path:
    """Where downloaded .debs are kept."""
    return store.inputs / "debian"


def pins_key(pins: tuple[Pin, ...]) -> str:
    """A hash of the pinned names and versions (part of the image keys)."""
    text = "\n".join(f"{p.name}={p.version}" for p in pins)
    return hashlib.sha256(text.encode()).hexdigest()


def fetch(store: Store, pins: tuple[Pin, ...], progress: Progress) -> dict[str, Path]:
    """The .deb of each pin, downloading the missing ones; keyed by package name."""
    directory = inputs_dir(store)
    directory.mkdir(parents=True, exist_ok=True)
    with file_lock(directory / ".lock"):
        missing = [p for p in pins if not (directory / p.filename).is_file()]
        if missing:
            progress("downloading " + ", ".join(f"{p.name} {p.version}" for p in missing))
            try:
                run(["apt-get", "download", *(f"{p.name}={p.version}" for p in missing)], cwd=directory)
            except CommandError as exc:
                raise GuestError(
                    f"could not download the pinned Debian packages: {exc.message}",
                    hint="check the Debian archive is reachable and lists these versions (apt-get update)",
                ) from exc
    for p in pins:
        if not (directory / p.filename).is_file():
            raise GuestError(f"apt-get download did not produce {p.filename} in {directory}")
    return {p.name: directory / p.filename for p in pins}


def extract(deb: Path, dest: Path) -> Path:
    """Unpack the files of ``deb`` under ``dest``; return ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    run(["dpkg-deb", "-x", deb, dest])
    return dest
