"""The Debian guest: Debian's kernel and busybox, an init that checks the disk over virtio-blk.

syslinux loads the kernel and a busybox initramfs through INT 13h (the ROM's, when
booted via gPXE); the init loads virtio-blk (and ata_piix, for IDE layouts) and vfat,
finds the partition holding KNOWN.BIN, checks that file's hash, reads the run token,
writes RESULT.TXT and prints the marker on ttyS0.
"""

from __future__ import annotations

import functools
import hashlib
import tempfile
import time
from importlib import resources
from pathlib import Path

from patchkit.guests import bootdisk, debpkgs, disk, fat
from patchkit.guests.base import Guest
from patchkit.guests.initramfs import Cpio, load_order
from patchkit.progress import Progress

RECIPE_VERSION = "2"
CYLINDERS = 50  # 24.6 MiB
MODULES = ("virtio_pci", "virtio_blk", "ata_piix", "sd_mod", "vfat", "nls_cp437", "nls_ascii", "nls_utf8")
KNOWN_SIZE = 2 << 20  # KNOWN.BIN: read back and hashed by the guest
CONFIG = """DEFAULT linux
PROMPT 0
TIMEOUT 0
SERIAL 0 115200
LABEL linux
  LINUX /VMLINUZ
  INITRD /INITRD.GZ
  APPEND console=ttyS0,115200 loglevel=4 panic=-1
"""
PARTITION_OFFSET = disk.PARTITION_START * disk.SECTOR


def init_script() -> bytes:
    """The initramfs /init (patchkit/guests/debian-init.sh)."""
    return resources.files("patchkit.guests").joinpath("debian-init.sh").read_bytes()


@functools.cache
def known_content() -> bytes:
    """KNOWN.BIN: deterministic bytes spread over many clusters."""
    return b"".join(hashlib.sha256(b"patchkit-known-%d" % i).digest() for i in range(KNOWN_SIZE // 32))


class DebianGuest(Guest):
    """Linux from the pinned Debian packages, booted by syslinux, checking virtio-blk I/O."""

    name = "debian"
    default_timeout = 180.0
    failure_markers = ("PATCHKIT-FAIL", "Kernel panic", "---[ end trace")
    build_command = "patchkit guest build debian"

    def image_key(self) -> str:
        h = hashlib.sha256()
        for part in (RECIPE_VERSION, debpkgs.pins_key(debpkgs.DEBIAN_PINS), CONFIG, ",".join(MODULES)):
            h.update(part.encode() + b"\0")
        h.update(init_script())
        return h.hexdigest()[:16]

    def _build_image(self, out: Path, progress: Progress) -> None:
        debs = debpkgs.fetch(self.store, debpkgs.DEBIAN_PINS, progress)
        with tempfile.TemporaryDirectory(prefix="patchkit-debian-") as tmp:
            work = Path(tmp)
            started = time.monotonic()
            progress(f"debian: unpacking {debpkgs.KERNEL.name} (~70 MB)")
            kernel_root = debpkgs.extract(debs[debpkgs.KERNEL.name], work / "kernel")
            debpkgs.extract(debs[debpkgs.BUSYBOX.name], work / "busybox")
            syslinux = bootdisk.syslinux_root(debs, work / "syslinux")
            progress("debian: making the initramfs")
            known = known_content()
            initrd = self._initramfs(
                kernel_root / "lib/modules" / debpkgs.KERNEL_RELEASE,
                (work / "busybox/bin/busybox").read_bytes(),
                hashlib.sha256(known).hexdigest(),
            )
            progress("debian: writing the disk")
            bootdisk.make(
                out, CYLINDERS, "PATCHKIT", syslinux, CONFIG, (),
                {
                    "VMLINUZ": kernel_root / "boot" / f"vmlinuz-{debpkgs.KERNEL_RELEASE}",
                    "INITRD.GZ": initrd,
                    "KNOWN.BIN": known,
                },
            )
            progress(f"debian: built in {time.monotonic() - started:.1f} s")

    @staticmethod
    def _initramfs(modules_dir: Path, busybox: bytes, known_sha256: str) -> bytes:
        order = load_order(modules_dir, MODULES)
        cpio = Cpio()
        for d in ("bin", "dev", "proc", "sys", "mnt", "modules"):
            cpio.directory(d)
        cpio.char_device("dev/console", 5, 1)
        cpio.file("bin/busybox", busybox, executable=True)
        cpio.file("init", init_script(), executable=True)
        for ko in order:
            cpio.file(f"modules/{ko.name}", ko.read_bytes())
        cpio.file("modules.order", "".join(ko.name[:-3] + "\n" for ko in order).encode())
        cpio.file("known.sha256", known_sha256.encode() + b"\n")
        return cpio.gzipped()

    def _inject_token(self, disk_path: Path, token: str) -> None:
        fat.put_bytes(disk_path, PARTITION_OFFSET, token.encode() + b"\n", "TOKEN.TXT")

    def verify_disk(self, disk_path: Path, token: str) -> list[str]:
        result = fat.get(disk_path, PARTITION_OFFSET, "RESULT.TXT")
        if result is None:
            return ["the guest wrote no RESULT.TXT"]
        expected = f"PATCHKIT-RESULT {token} {hashlib.sha256(known_content()).hexdigest()}"
        if result.decode("ascii", "replace").strip() != expected:
            return [f"RESULT.TXT is {result[:120]!r}, expected {expected!r}"]
        return []
