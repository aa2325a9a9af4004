"""The debian-system guest: an installed Debian 12 (i386) booted by GRUB 2 from the MBR.

Built once per pin set with mmdebstrap (root, no loop devices): bookworm i386 with the
686 kernel, systemd, udev and initramfs-tools (virtio_pci, virtio_blk and ext4 in the
initramfs). The disk (2 GiB, sparse) has an ext4 root on partition 1 made with
``mkfs.ext4 -d`` straight into the image, GRUB's boot.img in the MBR and a core.img
made by the guest's own grub-mkimage in the gap after it, as grub-install lays them
out (core.img knows biosdisk, part_msdos and ext2 and finds /boot/grub on partition 1;
grub.cfg finds the root by UUID and boots the kernel with root=UUID=...). Partition 2
(1 MiB, no file system) carries the run's token.

Each run boots a qcow2 overlay of the base image, with the token written into the
overlay. patchkit-check.service (after multi-user.target) checks that / is the virtio
disk's partition 1 driven by virtio_blk and mounted by UUID, writes
/var/lib/patchkit/result, prints the marker on ttyS0 and powers off; the host then
reads the result file from the overlay.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import tempfile
import time
import uuid
from importlib import resources
from pathlib import Path
from typing import ClassVar, Literal

from patchkit.errors import GuestError, MissingInputError
from patchkit.guests.base import Guest, check_token
from patchkit.progress import Progress
from patchkit.run import CommandError, run

RECIPE_VERSION = "1"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
KERNEL_ABI = "6.1.0-50-686"
# The packages that make the system what it is, at exact versions (the rest follows from them).
PINS = (
    ("linux-image-686", "6.1.176-1"),
    (f"linux-image-{KERNEL_ABI}", "6.1.176-1"),
    ("systemd", "252.39-1~deb12u2"),
    ("systemd-sysv", "252.39-1~deb12u2"),
    ("udev", "252.39-1~deb12u2"),
    ("initramfs-tools", "0.142+deb12u3"),
    ("grub-pc-bin", "2.06-13+deb12u2"),
)
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "ext4")
SECTOR = 512
DISK_BYTES = 2 << 30
ROOT_START = 2048  # LBA: 1 MiB, as partitioners align; GRUB's core.img lives in the gap before it
TOKEN_SECTORS = 2048  # partition 2, at the end of the disk
PART_LINUX = 0x83
PART_DATA = 0xDA
CORE_MODULES = ("biosdisk", "part_msdos", "ext2")  # what grub-install puts in core.img for this disk
GRUB_DIR = "usr/lib/grub/i386-pc"
RESULT_FILE = "/var/lib/patchkit/result"
CHECK_SCRIPT = "debian-system-check.sh"
UNIT = """[Unit]
Description=patchkit: check the boot, write the result, power off
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/patchkit-check
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
"""
BUILD_COMMAND = "patchkit guest build debian-system"


def _check_script() -> bytes:
    return (Path(str(resources.files("patchkit.guests"))) / CHECK_SCRIPT).read_bytes()


def root_uuid(key: str) -> str:
    """The root file system's UUID, derived from the image key (the same recipe gives the same disk)."""
    return str(uuid.UUID(hashlib.sha256(f"patchkit-debian-system-{key}".encode()).hexdigest()[:32]))


def chs(lba: int) -> bytes:
    """Partition-table CHS bytes of ``lba`` in 255 x 63 geometry (saturated past cylinder 1023)."""
    cylinder, rest = divmod(lba, 255 * 63)
    head, sector = divmod(rest, 63)
    if cylinder > 1023:
        cylinder, head, sector = 1023, 254, 62
    return bytes([head, ((cylinder >> 2) & 0xC0) | (sector + 1), cylinder & 0xFF])


def partition_entry(active: bool, part_type: int, start: int, count: int) -> bytes:
    return (bytes([0x80 if active else 0]) + chs(start) + bytes([part_type]) + chs(start + count - 1)
            + struct.pack("<II", start, count))


def token_offset() -> int:
    """Byte offset of the token partition (partition 2)."""
    return DISK_BYTES - TOKEN_SECTORS * SECTOR


class DebianSystemGuest(Guest):
    """Debian 12 installed on the virtio disk: GRUB 2 from the MBR, systemd to multi-user.target."""

    name = "debian-system"
    default_timeout = 300.0
    build_command = BUILD_COMMAND
    disk_format: ClassVar[Literal["raw", "qcow2"]] = "qcow2"  # the run's overlay
    memory_mib = 512

    def image_key(self) -> str:
        if shutil.which("mmdebstrap") is None:
            raise MissingInputError("mmdebstrap is not installed (it builds the debian-system image)",
                                    hint="apt-get install mmdebstrap (ci/setup.sh installs it)")
        h = hashlib.sha256()
        for part in (RECIPE_VERSION, SUITE, repr(PINS), repr(INITRAMFS_MODULES), repr(CORE_MODULES), UNIT,
                     str(DISK_BYTES)):
            h.update(part.encode() + b"\0")
        h.update(_check_script())
        return h.hexdigest()[:16]

    def _build_image(self, out: Path, progress: Progress) -> None:
        key = self.image_key()
        fs_uuid = root_uuid(key)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="patchkit-debian-system-", dir=out.parent) as tmp:
            root = Path(tmp) / "root"
            progress(f"{self.name}: mmdebstrap {SUITE} i386 (a few minutes; downloads ~150 MB)")
            _bootstrap(root)
            (out.parent / "packages.txt").write_bytes(
                run(["chroot", root, "dpkg-query", "-W", "-f", "${Package} ${Version}\\n"]).stdout)
            _configure(root, fs_uuid)
            progress(f"{self.name}: system ready after {time.monotonic() - started:.0f} s; writing the disk")
            core = _grub_core(root)
            _write_disk(out, root, fs_uuid, core)
        progress(f"{self.name}: built in {time.monotonic() - started:.0f} s")

    def make_run_disk(self, run_dir: Path, token: str) -> Path:
        """A qcow2 overlay of the base image in ``run_dir``, with the token in partition 2."""
        check_token(token)
        run_dir.mkdir(parents=True, exist_ok=True)
        overlay = run_dir / f"{self.name}.qcow2"
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", self.base_image(), overlay])
        self._inject_token(overlay, token)
        return overlay

    def _inject_token(self, disk: Path, token: str) -> None:
        data = f"PKTOKEN {token}\n".encode().ljust(SECTOR, b"\0")
        with tempfile.NamedTemporaryFile(prefix="patchkit-token-") as f:
            f.write(data)
            f.flush()
            run(["qemu-io", "-f", "qcow2", "-c", f"write -q -s {f.name} {token_offset()} {SECTOR}", disk])

    def verify_disk(self, disk: Path, token: str) -> list[str]:
        """Read the result file from the root file system on the run's overlay."""
        with tempfile.TemporaryDirectory(prefix="patchkit-debian-system-check-") as tmp:
            raw = Path(tmp) / "disk.raw"
            run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", "-S", "64k", disk, raw])
            try:
                result = run(["debugfs", "-R", f"cat {RESULT_FILE}", f"{raw}?offset={ROOT_START * SECTOR}"])
            except CommandError as exc:
                return [f"debugfs could not read the root file system: {exc.output.strip()[-200:]}"]
        lines = [line for line in result.stdout.decode(errors="replace").splitlines() if line.startswith("PATCHKIT")]
        if not lines:
            return [f"the guest wrote no {RESULT_FILE}"]
        if not lines[0].startswith(f"PATCHKIT-RESULT {token} root=/dev/vda1 "):
            return [f"{RESULT_FILE} says {lines[0][:120]!r}, expected 'PATCHKIT-RESULT {token} root=/dev/vda1 ...'"]
        return []


def _bootstrap(root: Path) -> None:
    """mmdebstrap the system into ``root`` (initramfs-tools set to list its modules, gzip)."""
    if os.geteuid() != 0:
        raise GuestError("building the debian-system image needs root (mmdebstrap --mode=root, chroot)",
                         hint=f"run `sudo {BUILD_COMMAND}` once: the image is cached for every user of this cache")
    include = ",".join(f"{name}={version}" for name, version in PINS)
    setup_hook = ('mkdir -p "$1/etc/initramfs-tools/conf.d" && '
                  'printf "MODULES=list\\nCOMPRESS=gzip\\n" > "$1/etc/initramfs-tools/conf.d/patchkit.conf"')
    modules = "\\n".join(INITRAMFS_MODULES)
    customize_hook = (f'printf "{modules}\\n" >> "$1/etc/initramfs-tools/modules" && '
                      'chroot "$1" update-initramfs -u -k all')
    try:
        run(["mmdebstrap", "--mode=root", "--variant=minbase", "--architectures=i386",
             f"--include={include},kmod,e2fsprogs", f"--setup-hook={setup_hook}",
             f"--customize-hook={customize_hook}", SUITE, root, MIRROR])
    except CommandError as exc:
        raise GuestError(f"mmdebstrap failed: {exc.output.strip()[-800:]}",
                         hint="needs root and Debian's archive (the pinned versions must still be there)") from exc


def _configure(root: Path, fs_uuid: str) -> None:
    """fstab, hostname, GRUB's config and modules, the check unit (enabled)."""
    (root / "etc/fstab").write_text(f"UUID={fs_uuid} / ext4 errors=remount-ro 0 1\n")
    (root / "etc/hostname").write_text("patchkit-debian\n")
    script = root / "usr/local/sbin/patchkit-check"
    script.write_bytes(_check_script())
    script.chmod(0o755)
    (root / "etc/systemd/system/patchkit-check.service").write_text(UNIT)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "patchkit-check.service").symlink_to("/etc/systemd/system/patchkit-check.service")
    grub = root / "boot/grub"
    shutil.copytree(root / GRUB_DIR, grub / "i386-pc", ignore=shutil.ignore_patterns("*.img", "*.image", "*.exec"))
    (grub / "grub.cfg").write_text(
        "set timeout=0\n"
        f"search --no-floppy --fs-uuid --set=root {fs_uuid}\n"
        "echo 'patchkit: GRUB loading Linux'\n"
        f"linux /boot/vmlinuz-{KERNEL_ABI} root=UUID={fs_uuid} ro console=ttyS0,115200n8\n"
        f"initrd /boot/initrd.img-{KERNEL_ABI}\n"
        "boot\n")


def _grub_core(root: Path) -> bytes:
    """core.img from the guest's own grub-mkimage: finds /boot/grub on the boot drive's partition 1."""
    run(["chroot", root, "grub-mkimage", "-O", "i386-pc", "-o", "/tmp/core.img", "-p", "(,msdos1)/boot/grub",
         *CORE_MODULES])
    core = (root / "tmp/core.img").read_bytes()
    (root / "tmp/core.img").unlink()
    return core


def _write_disk(out: Path, root: Path, fs_uuid: str, core: bytes) -> None:
    """MBR (boot.img and the table), core.img after it, the ext4 root made from ``root``."""
    if len(core) > (ROOT_START - 1) * SECTOR:
        raise GuestError(f"GRUB's core.img is {len(core)} bytes: it does not fit before partition 1")
    # diskboot.img (core.img's first sector) loads the rest from LBA 2 on, as grub-mkimage set it up.
    start, length = struct.unpack_from("<QH", core, SECTOR - 12)
    if start != 2 or length != -(-len(core) // SECTOR) - 1:
        raise GuestError(f"core.img's block list reads {length} sectors from LBA {start}: not the layout expected")
    boot = bytearray((root / GRUB_DIR / "boot.img").read_bytes())
    struct.pack_into("<Q", boot, 0x5C, 1)  # core.img's first sector (GRUB_BOOT_MACHINE_KERNEL_SECTOR)
    boot[0x64] = 0xFF  # take the boot drive from DL (GRUB_BOOT_MACHINE_BOOT_DRIVE)
    boot[0x66:0x68] = b"\x90\x90"  # use DL only if it is a hard disk, as grub-bios-setup does for disks
    total = DISK_BYTES // SECTOR
    root_sectors = total - ROOT_START - TOKEN_SECTORS
    with open(out, "wb") as f:
        f.truncate(DISK_BYTES)
        f.write(bytes(boot[:440]))
        f.seek(446)
        f.write(partition_entry(True, PART_LINUX, ROOT_START, root_sectors))
        f.write(partition_entry(False, PART_DATA, ROOT_START + root_sectors, TOKEN_SECTORS))
        f.write(bytes(32) + b"\x55\xaa")
        f.seek(SECTOR)
        f.write(core)
    run(["mkfs.ext4", "-q", "-F", "-U", fs_uuid, "-L", "debian-root", "-d", root,
         "-E", f"offset={ROOT_START * SECTOR}", out, f"{root_sectors // 2}k"])
