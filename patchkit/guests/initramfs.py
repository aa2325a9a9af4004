"""Kernel modules' dependencies (from each .ko's .modinfo) and a gzip'd newc initramfs."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path


def modinfo(ko: bytes) -> dict[str, str]:
    """The key=value strings of an x86-64 ELF module's .modinfo section."""
    shoff = struct.unpack_from("<Q", ko, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ko, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", ko, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]
    for header in headers:
        start = names_at + header[0]
        if ko[start:ko.index(b"\0", start)] == b".modinfo":
            data = ko[header[4]:header[4] + header[5]]
            pairs = (item.decode("utf-8", "replace").partition("=") for item in data.split(b"\0") if item)
            return {key: value for key, _, value in pairs}
    raise ValueError("no .modinfo section")


def _canonical(name: str) -> str:
    return name.replace("-", "_")


def load_order(modules_dir: Path, wanted: tuple[str, ...]) -> list[Path]:
    """The .ko files for ``wanted`` and their dependencies, each after what it depends on."""
    index = {_canonical(ko.name[:-3]): ko for ko in modules_dir.rglob("*.ko")}
    order: list[Path] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        ko = index.get(_canonical(name))
        if ko is None:
            raise ValueError(f"module {name} not found under {modules_dir}")
        if ko in order or name in visiting:
            return
        visiting.add(name)
        depends = modinfo(ko.read_bytes()).get("depends", "")
        for dep in filter(None, depends.split(",")):
            visit(dep)
        order.append(ko)

    for name in wanted:
        visit(name)
    return order


class Cpio:
    """A newc-format archive built in memory (what the kernel unpacks as initramfs)."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._ino = 0

    def _entry(self, name: str, mode: int, body: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        self._ino += 1
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, 1, 0, len(body), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        self._data += b"070701" + b"".join(b"%08X" % f for f in fields) + encoded
        self._pad()
        self._data += body
        self._pad()

    def _pad(self) -> None:
        self._data += bytes(-len(self._data) % 4)

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, body: bytes, executable: bool = False) -> None:
        self._entry(name, 0o100755 if executable else 0o100644, body)

    def char_device(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def gzipped(self) -> bytes:
        """The archive so far plus its trailer, gzip-compressed reproducibly."""
        end = len(self._data)
        self._entry("TRAILER!!!", 0)
        try:
            return gzip.compress(bytes(self._data), compresslevel=9, mtime=0)
        finally:
            del self._data[end:]
