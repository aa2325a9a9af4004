"""The series model: patches, versions and the series itself, as plain data (no I/O).

A patch file is a mail without the envelope (headers, blank line, message, ``---``,
diff). ``parse_patch`` and ``Patch.render`` convert between that text and ``Patch``;
``render`` is the one canonical form, so what is tested, stored and mailed are the
same bytes.
"""

from __future__ import annotations

import email.header
import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from patchkit.errors import SeriesError
from patchkit.qemu.faults import Hold as Hold, InjectError as InjectError  # a configuration's faults

DEFAULT_ROOT_PATH = "virtio_blk:PCI00:04.0"
DEFAULT_DISK_ADDR = "04.0"
MACHINES = ("pc", "q35")
BOOT_MODES = ("strict", "default")  # default: QEMU's own (non-strict) boot order
IMPLICIT_CONFIG = "pc"  # the one configuration of a manifest without [[configs]]

_TRAILER = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*):\s+(.+)$")
_DIFF_PATH = re.compile(r"^diff --git a/(.+) b/(.+)$")


@dataclass(frozen=True)
class Patch:
    """One patch: its mail headers, message and git diff.

    ``subject`` has no ``[PATCH]`` prefix; ``date`` is RFC 2822 as git writes it;
    ``message`` is the body without leading/trailing blank lines (may be empty);
    ``diff`` is git's diff text ending with a newline; ``filename`` is the file's
    name in ``patches/`` (``NNNN-<slug>.patch``).
    """

    subject: str
    author_name: str
    author_email: str
    date: str
    message: str
    diff: str
    filename: str

    @property
    def author(self) -> str:
        """``Name <email>``."""
        return f"{self.author_name} <{self.author_email}>"

    @property
    def trailers(self) -> list[tuple[str, str]]:
        """``(key, value)`` pairs of the message's last paragraph when it is all trailers."""
        paragraphs = [p for p in self.message.strip().split("\n\n") if p.strip()]
        if not paragraphs:
            return []
        lines = paragraphs[-1].splitlines()
        matches = [_TRAILER.match(line) for line in lines]
        if not all(matches):
            return []
        return [(m.group(1), m.group(2).strip()) for m in matches if m]

    @property
    def files(self) -> list[str]:
        """Paths the diff touches (the new path for renames), in diff order."""
        paths = []
        for line in self.diff.splitlines():
            m = _DIFF_PATH.match(line)
            if m:
                paths.append(m.group(2))
        return paths

    @property
    def commit_message(self) -> str:
        """The git commit message: subject, blank line, message."""
        if self.message:
            return f"{self.subject}\n\n{self.message}\n"
        return f"{self.subject}\n"

    def render(self) -> str:
        """The canonical patch-file text."""
        head = f"From: {self.author}\nDate: {self.date}\nSubject: {self.subject}\n\n"
        body = f"{self.message}\n" if self.message else ""
        return f"{head}{body}---\n{self.diff}"

    def with_filename(self, number: int) -> Patch:
        """A copy named ``NNNN-<slug>.patch`` for position ``number`` (1-based)."""
        return replace(self, filename=patch_filename(number, self.subject))


@dataclass(frozen=True)
class VersionInfo:
    """One version of the series: its number, changelog and (once mailed) when and which tag."""

    number: int
    changelog: str = ""
    sent: str | None = None
    tag: str | None = None


@dataclass(frozen=True)
class Config:
    """One machine configuration the series is tested on (a ``[[configs]]`` table of series.toml).

    ``blank_disks`` are extra zero-filled virtio disks (slot.fn on bus 0); ``bios_disks`` are
    blank disks with a bootindex after the ROM, so SeaBIOS drives them itself ("busy" devices).
    ``virtio_blk`` holds virtio-blk-pci properties of the guest disk as (name, TOML value) pairs,
    ``blank_virtio_blk`` those of the blank disks; ``kept_disks`` (blank disks) are sanbooted with
    `set keep-san 1` before the guest disk, so gPXE keeps them open as SAN drives.
    With ``expect_refusal`` (a regex) a cell passes only when sanboot returns to the gPXE prompt
    with a message matching it; with ``expect_failure`` only when the guest reports a failure
    (its failure marker's line) matching it: a fault that ends the boot cleanly, not a hang.
    ``inject_error`` and ``hold`` put the guest disk behind QEMU's blkdebug driver.
    """

    name: str
    guests: tuple[str, ...]
    required: bool = True
    machine: str = "pc"
    boot: str = "strict"
    root_path: str = DEFAULT_ROOT_PATH
    disk_addr: str = DEFAULT_DISK_ADDR
    blank_disks: tuple[str, ...] = ()
    bios_disks: tuple[str, ...] = ()
    virtio_blk: tuple[tuple[str, int | str | bool], ...] = ()
    readonly: bool = False
    disk_shape: str | None = None
    expect_refusal: str | None = None
    inject_error: InjectError | None = None
    hold: Hold | None = None
    expect_failure: str | None = None
    blank_virtio_blk: tuple[tuple[str, int | str | bool], ...] = ()  # properties of every blank disk
    kept_disks: tuple[str, ...] = ()  # blank disks sanbooted with keep-san (each returns) before the guest's
    memory: int | None = None  # MiB; None: the guest's own

    def describe(self) -> str:
        """The configuration in one line (for status and the cover letter)."""
        parts = [f"-machine {self.machine}", "strict boot" if self.boot == "strict" else "QEMU's default boot order",
                 f"guest disk at {self.disk_addr}" + (f" ({self.disk_shape})" if self.disk_shape else "")]
        if self.readonly:
            parts.append("read-only")
        if self.virtio_blk:
            parts.append(",".join(f"{k}={qemu_value(v)}" for k, v in self.virtio_blk))
        if self.blank_disks:
            blank_properties = ",".join(f"{k}={qemu_value(v)}" for k, v in self.blank_virtio_blk)
            parts.append(f"blank disks at {', '.join(self.blank_disks)}"
                         + (f" ({blank_properties})" if blank_properties else ""))
        if self.kept_disks:
            parts.append(f"keep-san sanboot of {', '.join(self.kept_disks)} first")
        if self.bios_disks:
            parts.append(f"disks driven by SeaBIOS at {', '.join(self.bios_disks)}")
        parts.append(f"sanboot {self.root_path}")
        if self.inject_error:
            parts.append(self.inject_error.describe())
        if self.hold:
            parts.append(self.hold.describe())
        if self.expect_refusal:
            parts.append(f"must be refused (/{self.expect_refusal}/)")
        if self.expect_failure:
            parts.append(f"the guest must report the failure (/{self.expect_failure}/)")
        if self.memory:
            parts.append(f"{self.memory} MiB")
        return "; ".join(parts)


def qemu_value(value: int | str | bool) -> str:
    """A property value as QEMU spells it (booleans are on/off)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


@dataclass(frozen=True)
class ImageEntry:
    """A disk image of the maintainer's own tested like a guest (an ``[[images]]`` table of series.toml).

    ``name`` is the guest name (in ``guests``, configurations and results); ``path`` is
    absolute or relative to the series directory; ``expect`` and ``fail`` are regular
    expressions (None: `patchkit test --image`'s defaults); ``timeout`` in seconds.
    """

    name: str
    path: str
    expect: str | None = None
    fail: str | None = None
    timeout: float | None = None
    format: str | None = None  # "raw" or "qcow2", opened so and never guessed; None: qemu-img's guess
    memory: int | None = None  # MiB; None: `patchkit test --image`'s default


@dataclass(frozen=True)
class CoverageGate:
    """``[coverage]`` of the manifest: what send-email requires of the changed lines' coverage."""

    min: int | None = None  # percent of the executable changed lines that some cell must have run
    reasons: bool = False  # each line no cell ran needs a reason in the series' coverage-notes.txt


@dataclass
class Series:
    """A patch series: where it applies, who it goes to, its versions, cover letter and patches."""

    name: str
    upstream: str
    base: str
    subject_prefix: str = "PATCH"
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    guests: list[str] = field(default_factory=list)
    version: int = 1
    versions: list[VersionInfo] = field(default_factory=list)
    cover_title: str = ""
    cover_body: str = ""
    patches: list[Patch] = field(default_factory=list)
    path: Path | None = None
    configs: list[Config] = field(default_factory=list)  # as written in the manifest (may be empty)
    images: list[ImageEntry] = field(default_factory=list)  # [[images]]: users' own images as extra guests
    coverage: CoverageGate | None = None  # [coverage]: a gate on the changed lines' coverage

    def revision_hash(self) -> str:
        """SHA-256 (hex) of the base commit and the patches' canonical bytes, in order.

        Two series with the same hash produce the same tree; the hash changes with any
        byte of any patch (message included, since that is what gets mailed).
        """
        h = hashlib.sha256()
        h.update(f"base {self.base}\n".encode())
        for patch in self.patches:
            data = patch.render().encode("utf-8")
            h.update(f"patch {len(data)}\n".encode())
            h.update(data)
        return h.hexdigest()

    def test_configs(self) -> list[Config]:
        """The configurations to test: the manifest's, or one implicit "pc" with the manifest's guests."""
        return list(self.configs) or [Config(name=IMPLICIT_CONFIG, guests=tuple(self.guests))]

    def config(self, name: str) -> Config:
        """The configuration called ``name``; SeriesError listing the known ones otherwise."""
        for config in self.test_configs():
            if config.name == name:
                return config
        known = ", ".join(c.name for c in self.test_configs())
        raise SeriesError(f"series {self.name} has no configuration {name!r} (known: {known})",
                          hint="configurations are the [[configs]] tables of series.toml")

    def version_info(self, number: int) -> VersionInfo | None:
        """The ``[[versions]]`` entry for ``number``, if any."""
        for info in self.versions:
            if info.number == number:
                return info
        return None


def patch_filename(number: int, subject: str) -> str:
    """``NNNN-<slug>.patch`` the way git format-patch names it."""
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", subject).strip("-.")
    slug = re.sub(r"\.+", ".", slug)[:52].rstrip("-.")
    return f"{number:04d}-{slug or 'patch'}.patch"


def format_git_date(when: datetime) -> str:
    """RFC 2822 date exactly as git writes it (day not zero-padded)."""
    offset = when.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset else 0
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (
        f"{when.strftime('%a')}, {when.day} {when.strftime('%b')} {when.year} "
        f"{when.strftime('%H:%M:%S')} {sign}{minutes // 60:02d}{minutes % 60:02d}"
    )


def parse_patch(text: str, filename: str, source: str | None = None) -> Patch:
    """Parse a patch file's text (errors name ``source`` (default ``filename``) and the line).

    Accepts git format-patch output too: an mbox ``From <sha> ...`` envelope line, a
    ``[PATCH ...]`` subject prefix, a diffstat and the ``-- `` signature are dropped.
    """
    where = source or filename
    lines = text.split("\n")
    i = 0
    if lines and lines[0].startswith("From ") and not lines[0].startswith("From: "):
        i = 1
    headers: dict[str, str] = {}
    header_line: dict[str, int] = {}
    last = ""
    while i < len(lines) and lines[i] != "":
        line = lines[i]
        if line[:1] in (" ", "\t") and last:
            headers[last] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            last = key.strip().lower()
            headers[last] = value.strip()
            header_line[last] = i + 1
        else:
            raise SeriesError(f"{where}:{i + 1}: not a mail header: {line!r}",
                              hint="a patch file starts with From:, Date: and Subject: headers, then a blank line")
        i += 1
    for required in ("from", "date", "subject"):
        if required not in headers:
            raise SeriesError(f"{where}:1: missing '{required.capitalize()}:' header",
                              hint="a patch file starts with From:, Date: and Subject: headers, then a blank line")
    name, address = _parse_author(_decode(headers["from"]), f"{where}:{header_line['from']}")
    subject = re.sub(r"^\[PATCH[^\]]*\]\s*", "", _decode(headers["subject"]))
    i += 1  # the blank line
    body_start = i
    while i < len(lines) and lines[i] != "---":
        i += 1
    if i >= len(lines):
        raise SeriesError(f"{where}:{body_start + 1}: no '---' line separating the message from the diff",
                          hint="put a line with just --- before the diff")
    message = "\n".join(lines[body_start:i]).strip("\n")
    i += 1
    diff_start = i
    while i < len(lines) and not lines[i].startswith("diff --git "):
        i += 1
    if i >= len(lines):
        raise SeriesError(f"{where}:{diff_start + 1}: no 'diff --git' line after '---'",
                          hint="the diff must be git's (diff --git a/... b/...)")
    diff_lines = lines[i:]
    for j, line in enumerate(diff_lines):
        if line == "-- ":
            diff_lines = diff_lines[:j]
            break
    diff = "\n".join(diff_lines).rstrip("\n") + "\n"
    return Patch(subject=subject, author_name=name, author_email=address, date=headers["date"],
                 message=message, diff=diff, filename=filename)


def diff_start_line(text: str) -> int:
    """The 1-based line in a patch file's text where the diff begins (0 when none)."""
    for n, line in enumerate(text.split("\n"), 1):
        if line.startswith("diff --git "):
            return n
    return 0


def _decode(value: str) -> str:
    """Decode RFC 2047 encoded words (format-patch output); plain UTF-8 passes through."""
    if "=?" not in value:
        return value
    return str(email.header.make_header(email.header.decode_header(value)))


def _parse_author(value: str, where: str) -> tuple[str, str]:
    m = re.match(r"^(.*?)\s*<([^<>]+)>$", value)
    if not m:
        raise SeriesError(f"{where}: From: header is not 'Name <email>': {value!r}")
    return m.group(1).strip().strip('"'), m.group(2).strip()
