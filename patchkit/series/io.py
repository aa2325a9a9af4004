"""Reading, validating and writing series sources (``series/<name>/``).

Every problem found on load raises SeriesError naming the file and, where there is
one, the line: a malformed manifest, a missing patch file, CRLF or non-UTF-8 text,
a diff that does not parse, a binary patch, a path outside the tree.
"""

from __future__ import annotations

import difflib
import json
import math
import posixpath
import re
import shutil
import tomllib
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import tomli_w
import tomlkit
import tomlkit.exceptions
import tomlkit.items
import unidiff

from patchkit.errors import SeriesError
from patchkit.guests import GUEST_NAMES, HARNESS_NAMES, KEEP_SAN_NAMES
from patchkit.qemu.cmdline import PCI_ADDR, property_problem, slot_problem
from patchkit.qemu.faults import HOLD_VIAS, Hold, InjectError
from patchkit.qemu.machine import typable
from patchkit.series.model import (
    BOOT_MODES,
    DEFAULT_DISK_ADDR,
    DEFAULT_ROOT_PATH,
    MACHINES,
    Config,
    CoverageGate,
    ImageEntry,
    Patch,
    Series,
    VersionInfo,
    diff_start_line,
    parse_patch,
    qemu_value,
)
from patchkit.store import atomic_write

MANIFEST = "series.toml"
COVER = "cover.txt"
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_PATH_HEADERS = ("rename from ", "rename to ", "copy from ", "copy to ")
_CONFIG_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
MIN_MEMORY, MAX_MEMORY = 16, 16384  # MiB: SeaBIOS and gPXE need a little; TCG guests no more than this
_IMAGE_KEYS = ("name", "path", "expect", "fail", "timeout", "format", "memory")
_CONFIG_KEYS = ("name", "required", "guests", "machine", "boot", "root_path", "disk_addr", "blank_disks",
                "bios_disks", "virtio_blk", "readonly", "disk_shape", "expect_refusal", "inject_error", "hold",
                "expect_failure", "memory", "blank_virtio_blk", "kept_disks")
# blkdebug events a fault may name (QEMU's BlkdebugEvent values for guest requests).
_BLKDEBUG_EVENTS = ("read_aio", "write_aio", "flush_to_disk")
MAX_ERRNO = 133  # Linux's highest errno (EHWPOISON)


def load_series(directory: Path) -> Series:
    """Load and validate the series in ``directory``."""
    manifest = directory / MANIFEST
    text = _read_text(manifest)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SeriesError(f"{manifest}: {exc}", hint="fix the TOML syntax at that line") from exc
    m = _Manifest(manifest, text, data)
    for key in data:
        if key not in _TOP_KEYS:
            raise SeriesError(f"{m.at(key)}: unknown key '{key}'", hint=_did_you_mean(key, _TOP_KEYS))
    versions = [_version(m, i, v) for i, v in enumerate(m.get("versions", list, []))]
    filenames = m.get("patches", list, [])
    for f in filenames:
        if not isinstance(f, str) or "/" in f or f.startswith("."):
            raise SeriesError(f"{m.at('patches')}: patch entries must be file names in patches/, got {f!r}")
        if filenames.count(f) > 1:
            second = m.at("patches", json.dumps(f), nth=2)
            raise SeriesError(f"{second}: {f} is listed twice in `patches`",
                              hint="a patch is applied once: remove the second entry")
    version = _current_version(m, directory, versions)
    patch_dir = directory / "patches"
    patches = []
    for f in filenames:
        path = patch_dir / f
        if not path.is_file():
            raise SeriesError(f"{m.at('patches', f)}: patch file {path} does not exist",
                              hint="add the file or remove it from `patches`")
        patches.append(load_patch(path))
    title, body = _load_cover(directory / COVER)
    guests = m.get_strs("guests")
    images = _images(m)
    return Series(
        name=m.get("name", str), upstream=m.get("upstream", str), base=m.get("base", str),
        subject_prefix=m.get("subject_prefix", str, "PATCH"), to=m.get_strs("to"), cc=m.get_strs("cc"),
        guests=guests, version=version, versions=versions,
        cover_title=title, cover_body=body, patches=patches, path=directory,
        configs=_configs(m, guests, [i.name for i in images]), images=images, coverage=_coverage(m),
    )


def load_patch(path: Path) -> Patch:
    """Read and validate one patch file."""
    text = _read_text(path)
    patch = parse_patch(text, path.name, source=str(path))
    check_diff(patch.diff, str(path), diff_start_line(text))
    return patch


def load_version(series: Series, number: int) -> Series:
    """The series as it was at version ``number`` (the current one, or a frozen versions/vN/)."""
    if number == series.version:
        return series
    assert series.path is not None
    frozen = series.path / "versions" / f"v{number}"
    if not frozen.is_dir():
        known = ", ".join(f"v{n}" for n in available_versions(series))
        raise SeriesError(f"unknown version v{number} of series '{series.name}' (known: {known})")
    patches = [load_patch(p) for p in sorted((frozen / "patches").glob("*.patch"))]
    title, body = _load_cover(frozen / COVER)
    return replace(series, version=number, patches=patches, cover_title=title, cover_body=body)


def available_versions(series: Series) -> list[int]:
    """Version numbers that can be loaded: the frozen ones and the current one."""
    numbers = {series.version}
    if series.path is not None and (series.path / "versions").is_dir():
        for d in (series.path / "versions").iterdir():
            if re.fullmatch(r"v\d+", d.name) and d.is_dir():
                numbers.add(int(d.name[1:]))
    return sorted(numbers)


def save_series(series: Series) -> None:
    """Write the manifest, cover letter and patches; remove patch files no longer listed.

    Files whose bytes would not change are not rewritten.
    """
    assert series.path is not None, "save_series needs series.path"
    d = series.path
    _save_manifest(d / MANIFEST, _manifest_data(series))
    if series.cover_title or series.cover_body:
        cover = series.cover_title + "\n" + (f"\n{series.cover_body.rstrip()}\n" if series.cover_body.strip() else "")
        _write_if_changed(d / COVER, cover)
    keep = {p.filename for p in series.patches}
    for p in series.patches:
        _write_if_changed(d / "patches" / p.filename, p.render())
    if (d / "patches").is_dir():
        for old in (d / "patches").glob("*.patch"):
            if old.name not in keep:
                old.unlink()


def new_version(series: Series, changelog: str) -> Series:
    """Freeze the current revision into versions/vN/ and start vN+1 with ``changelog``."""
    assert series.path is not None
    n = series.version
    frozen = series.path / "versions" / f"v{n}"
    if frozen.exists():
        raise SeriesError(f"{frozen} already exists: v{n} was frozen before",
                          hint=f"set `version` in {series.path / MANIFEST} to the version being edited")
    if not changelog.strip():
        raise SeriesError("the changelog is empty", hint="pass --changelog TEXT describing what changed")
    tmp = frozen.with_name(f".v{n}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "patches").mkdir(parents=True)
    for p in series.patches:
        (tmp / "patches" / p.filename).write_text(p.render(), encoding="utf-8")
    if (series.path / COVER).is_file():
        shutil.copyfile(series.path / COVER, tmp / COVER)
    tmp.rename(frozen)
    versions = list(series.versions)
    if series.version_info(n) is None:
        versions.append(VersionInfo(number=n))
    versions.append(VersionInfo(number=n + 1, changelog=changelog.strip() + "\n"))
    updated = replace(series, version=n + 1, versions=sorted(versions, key=lambda v: v.number))
    save_series(updated)
    return updated


def check_diff(diff: str, where: str, first_line: int) -> None:
    """Validate a git diff: structure, no binary content, no path leaving the tree.

    ``first_line`` is the diff's first line number in ``where`` (for messages).
    """
    lines = diff.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    old_left = new_left = 0
    hunk_at = 0
    path = ""  # the file the current diff section changes
    link = False  # it is (becomes) a symlink: its added line is the link's target
    for n, line in enumerate(lines):
        at = f"{where}:{first_line + n}"
        if old_left > 0 or new_left > 0:
            tag = line[:1]
            if tag == " " or line == "":
                old_left -= 1
                new_left -= 1
            elif tag == "-":
                old_left -= 1
            elif tag == "+":
                new_left -= 1
                if link and (problem := _link_outside(path, line[1:])):
                    raise SeriesError(f"{at}: symlink {path} points outside the tree ({line[1:]!r}, {problem})",
                                      hint="a symlink in a patch may only point inside the tree")
            elif tag == "\\":
                continue
            else:
                raise SeriesError(f"{at}: hunk started at line {hunk_at} ends early: {line!r}",
                                  hint="the @@ line's counts must match the hunk's lines")
            if old_left < 0 or new_left < 0:
                raise SeriesError(f"{at}: hunk started at line {hunk_at} is longer than its @@ line says")
            continue
        if line.startswith("GIT binary patch") or line.startswith("Binary files "):
            raise SeriesError(f"{at}: binary patches are not supported",
                              hint="keep binary files out of the series (generate them at build time)")
        if line.startswith("@@"):
            m = _HUNK.match(line)
            if not m:
                raise SeriesError(f"{at}: malformed hunk header: {line!r}")
            old_left = int(m.group(2) if m.group(2) is not None else 1)
            new_left = int(m.group(4) if m.group(4) is not None else 1)
            hunk_at = first_line + n
            continue
        if line.startswith("diff --git "):
            link = False
        elif line in ("new file mode 120000", "new mode 120000"):
            link = True
        for named in _paths_in(line):
            problem = unsafe_path(named)
            if problem:
                raise SeriesError(f"{at}: patch touches {named!r}, {problem}",
                                  hint="a patch may only change files inside the tree")
            path = named
    if old_left > 0 or new_left > 0:
        raise SeriesError(f"{where}:{first_line + len(lines)}: the diff ends inside the hunk started at line {hunk_at}")
    try:
        parsed = unidiff.PatchSet(diff)
    except unidiff.UnidiffParseError as exc:
        raise SeriesError(f"{where}:{first_line}: the diff does not parse: {exc}") from exc
    if not len(parsed):
        raise SeriesError(f"{where}:{first_line}: the diff changes no file")


def _link_outside(link: str, target: str) -> str | None:
    """Why symlink ``link`` (a path in the tree) pointing at ``target`` leaves the tree, or None."""
    if target.startswith("/"):
        return "an absolute target"
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(link), target))
    if resolved == ".." or resolved.startswith("../"):
        return "its target climbs out with '..'"
    return None


def unsafe_path(path: str) -> str | None:
    """Why ``path`` (from a diff) is outside the tree, or None when it is fine."""
    if path.startswith("/"):
        return "an absolute path"
    parts = path.split("/")
    if ".." in parts:
        return "a path leaving the tree ('..')"
    if ".git" in parts:
        return "a path inside .git"
    return None


def _paths_in(line: str) -> list[str]:
    """File paths named by a diff header line (without the a/ b/ prefixes)."""
    if line.startswith("diff --git "):
        rest = line[len("diff --git "):]
        if rest.startswith("a/") and " b/" in rest:
            a, b = rest[2:].split(" b/", 1)
            return [a, b]
        return [rest]
    if line.startswith("--- ") or line.startswith("+++ "):
        path = line[4:].split("\t")[0]
        if path == "/dev/null":
            return []
        return [path[2:] if path[:2] in ("a/", "b/") else path]
    for head in _PATH_HEADERS:
        if line.startswith(head):
            return [line[len(head):]]
    return []


def _read_text(path: Path) -> str:
    """A source file as text: UTF-8, LF line ends, else SeriesError naming the line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise SeriesError(f"{path} does not exist") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SeriesError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x})",
                          hint="series files are UTF-8; re-encode the file") from exc
    if "\r" in text:
        line = text[: text.index("\r")].count("\n") + 1
        raise SeriesError(f"{path}:{line}: CRLF/CR line ending",
                          hint="series files use LF line endings (e.g. `sed -i 's/\\r$//' FILE`)")
    return text


def _load_cover(path: Path) -> tuple[str, str]:
    if not path.is_file():
        return "", ""
    text = _read_text(path)
    title, _, body = text.partition("\n")
    return title.strip(), body.strip("\n")


class _Manifest:
    """Typed access to series.toml values, with errors naming the key's line."""

    def __init__(self, path: Path, text: str, data: dict[str, Any]) -> None:
        self.path, self.text, self.data = path, text, data

    def at(self, key: str, needle: str | None = None, nth: int = 1) -> str:
        """``path:line`` of ``key`` (its ``key =`` line or ``[key]`` header), or of ``needle``'s ``nth``
        occurrence; just ``path`` when not found."""
        pattern = re.compile(rf"\s*({re.escape(key)}\s*=|\[+\s*{re.escape(key)}\s*\]+)")
        for n, line in enumerate(self.text.splitlines(), 1):
            nth -= line.count(needle) if needle else bool(pattern.match(line))
            if nth <= 0:
                return f"{self.path}:{n}"
        return str(self.path)

    def table_at(self, array: str, index: int, key: str | None) -> str:
        """``path:line`` of ``key`` in the ``index``-th ``[[array]]`` table (of its header without a key)."""
        header = re.compile(rf"\s*\[\[\s*{re.escape(array)}\s*\]\]")
        lines = self.text.splitlines()
        starts = [n for n, line in enumerate(lines, 1) if header.match(line)]
        if index >= len(starts):
            return f"{self.path}: [[{array}]] entry {index + 1}"
        start = starts[index]
        if key is not None:
            for n in range(start + 1, len(lines) + 1):
                line = lines[n - 1]
                if re.match(r"\s*\[", line):
                    break
                if re.match(rf"\s*{re.escape(key)}\s*=", line):
                    return f"{self.path}:{n}"
        return f"{self.path}:{start}"

    def get(self, key: str, kind: type, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise SeriesError(f"{self.path}: missing key '{key}'", hint=f"add `{key} = ...` to the manifest")
            return default
        value = self.data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise SeriesError(f"{self.at(key)}: '{key}' must be a {kind.__name__}, got {value!r}")
        return value

    def get_strs(self, key: str) -> list[str]:
        value = self.get(key, list, [])
        if not all(isinstance(v, str) for v in value):
            raise SeriesError(f"{self.at(key)}: '{key}' must be a list of strings")
        return list(value)


_TOP_KEYS = ("name", "upstream", "base", "subject_prefix", "to", "cc", "guests", "version", "patches", "versions",
             "configs", "images", "coverage")
_VERSION_KEYS = ("number", "changelog", "sent", "tag")


def _did_you_mean(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key.lower(), known, n=1, cutoff=0.6)
    return (f"did you mean '{close[0]}'? " if close else "") + f"known keys: {', '.join(known)}"


def _current_version(m: _Manifest, directory: Path, versions: list[VersionInfo]) -> int:
    """``version``: 1 or more, after every frozen versions/vN/ and not behind a [[versions]] entry."""
    version: int = m.get("version", int, 1)
    if version < 1:
        raise SeriesError(f"{m.at('version')}: 'version' must be 1 or more, got {version}")
    frozen = sorted(int(d.name[1:]) for d in (directory / "versions").glob("v*")
                    if re.fullmatch(r"v\d+", d.name) and d.is_dir())
    if frozen and frozen[-1] >= version:
        raise SeriesError(f"{m.at('version')}: version {version} is already frozen in "
                          f"{directory / 'versions' / f'v{version if version in frozen else frozen[-1]}'}",
                          hint=f"the current version comes after the frozen ones: `version = {frozen[-1] + 1}`")
    numbers = [v.number for v in versions]
    for index, number in enumerate(numbers):
        if number in numbers[:index]:
            raise SeriesError(f"{m.table_at('versions', index, 'number')}: a second [[versions]] entry for "
                              f"version {number}", hint="merge the two entries")
    if numbers and max(numbers) > version:
        raise SeriesError(f"{m.at('version')}: version {version} is behind [[versions]] entry {max(numbers)}",
                          hint=f"the current version is the newest: `version = {max(numbers)}`")
    return version


def _version(m: _Manifest, index: int, entry: Any) -> VersionInfo:
    where = f"{m.path}: [[versions]] entry {index + 1}"
    if not isinstance(entry, dict) or not isinstance(entry.get("number"), int):
        raise SeriesError(f"{where} needs an integer `number`")
    for key in entry:
        if key not in _VERSION_KEYS:
            raise SeriesError(f"{m.table_at('versions', index, key)}: unknown key '{key}' in [[versions]]",
                              hint=_did_you_mean(key, _VERSION_KEYS))
    if entry["number"] < 1:
        raise SeriesError(f"{m.table_at('versions', index, 'number')}: version numbers start at 1")
    for key in ("changelog", "sent", "tag"):
        if key in entry and not isinstance(entry[key], str):
            raise SeriesError(f"{where}: '{key}' must be a string")
    return VersionInfo(number=entry["number"], changelog=entry.get("changelog", ""),
                       sent=entry.get("sent"), tag=entry.get("tag"))


def _images(m: _Manifest) -> list[ImageEntry]:
    """The ``[[images]]`` tables: a name (not a built-in guest's), a path, patterns that compile."""
    images: list[ImageEntry] = []
    for index, entry in enumerate(m.get("images", list, [])):
        if not isinstance(entry, dict):
            raise SeriesError(f"{m.at('images')}: 'images' must be [[images]] tables")

        def fail(key: str | None, message: str, index: int = index) -> SeriesError:
            return SeriesError(f"{m.table_at('images', index, key)}: {message}")

        for key in entry:
            if key not in _IMAGE_KEYS:
                raise fail(key, f"unknown image key {key!r} (known: {', '.join(_IMAGE_KEYS)})")
        for key in ("name", "path"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise fail(None if key not in entry else key, f"an image needs a `{key}` string")
        name = entry["name"]
        if not _CONFIG_NAME.fullmatch(name) or name in GUEST_NAMES + KEEP_SAN_NAMES:
            raise fail("name", f"image name {name!r} must be lowercase letters, digits and '-', "
                               "and not a built-in guest's")
        if any(i.name == name for i in images):
            raise fail("name", f"a second image named {name!r}")
        path = entry["path"]
        if not path.startswith(("/", "~")) and posixpath.normpath(posixpath.join("series/x", path)).startswith(".."):
            raise fail("path", f"image path {path!r} leaves the project: keep a relative path inside it "
                               "(an image elsewhere: its absolute path, allowed with `patchkit test --image-dir DIR`)")
        for key in ("expect", "fail"):
            value = entry.get(key)
            if value is None:
                continue
            if not isinstance(value, str) or not value:
                raise fail(key, f"'{key}' must be a regular expression, got {value!r}")
            try:
                re.compile(value)
            except re.error as exc:
                raise fail(key, f"'{key}' is not a regular expression: {exc}") from exc
        timeout = entry.get("timeout")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not math.isfinite(timeout) or timeout <= 0):
            raise fail("timeout", f"'timeout' must be a positive, finite number of seconds, got {timeout!r}")
        fmt = entry.get("format")
        if fmt is not None and fmt not in ("raw", "qcow2"):
            raise fail("format", f"'format' must be raw or qcow2, got {fmt!r}")
        memory = entry.get("memory")
        if memory is not None and (problem := memory_problem(memory)):
            raise fail("memory", problem)
        images.append(ImageEntry(name, entry["path"], entry.get("expect"), entry.get("fail"), timeout, fmt, memory))
    return images


def _configs(m: _Manifest, guests: list[str], image_names: list[str]) -> list[Config]:
    """The ``[[configs]]`` tables, validated (errors name the line of the offending key)."""
    entries = m.get("configs", list, [])
    configs: list[Config] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise SeriesError(f"{m.at('configs')}: 'configs' must be [[configs]] tables")
        config = _config(_ConfigTable(m, index, entry), guests, image_names)
        if any(c.name == config.name for c in configs):
            raise SeriesError(f"{m.table_at('configs', index, 'name')}: a second configuration named {config.name!r}",
                              hint="configuration names are unique: results are recorded by name")
        configs.append(config)
    return configs


class _ConfigTable:
    """One [[configs]] table: typed values with errors naming ``path:line``."""

    def __init__(self, m: _Manifest, index: int, data: dict[str, Any]) -> None:
        self.m, self.index, self.data = m, index, data

    def at(self, key: str | None = None) -> str:
        return self.m.table_at("configs", self.index, key)

    def fail(self, key: str | None, message: str, hint: str | None = None) -> SeriesError:
        return SeriesError(f"{self.at(key)}: {message}", hint=hint)

    def get(self, key: str, kind: type, default: Any) -> Any:
        value = self.data.get(key, default)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise self.fail(key, f"'{key}' must be a {kind.__name__}, got {value!r}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(key, str, default)
        if value not in choices:
            raise self.fail(key, f"'{key}' must be one of {', '.join(choices)}, got {value!r}")
        return str(value)

    def regex(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"'{key}' must be a regular expression, got {value!r}")
        try:
            re.compile(value)
        except re.error as exc:
            raise self.fail(key, f"'{key}' is not a regular expression: {exc}") from exc
        return value

    def addrs(self, key: str) -> tuple[str, ...]:
        value = self.get(key, list, [])
        for addr in value:
            if not isinstance(addr, str) or not PCI_ADDR.fullmatch(addr):
                raise self.fail(key, f"'{key}' holds PCI addresses slot.function on bus 0 (e.g. \"05.0\"), "
                                     f"got {addr!r}")
        return tuple(value)


def _config(t: _ConfigTable, manifest_guests: list[str], image_names: list[str]) -> Config:
    """Validate one [[configs]] table."""
    for key in t.data:
        if key not in _CONFIG_KEYS:
            raise t.fail(key, f"unknown configuration key {key!r}", hint=f"known keys: {', '.join(_CONFIG_KEYS)}")
    if "name" not in t.data:
        raise t.fail(None, "a configuration needs a `name`")
    name = t.get("name", str, "")
    if not _CONFIG_NAME.fullmatch(name):
        raise t.fail("name", f"configuration name {name!r} must be lowercase letters, digits and '-'")
    guests = t.get("guests", list, manifest_guests)
    known = (*GUEST_NAMES, *KEEP_SAN_NAMES, *HARNESS_NAMES, *image_names)
    for guest in guests:
        if guest not in known:
            raise t.fail("guests", f"unknown guest {guest!r} (known: {', '.join(known)})")
    if not guests:
        raise t.fail("guests", f"configuration {name} runs no guest")
    disk_addr = t.get("disk_addr", str, DEFAULT_DISK_ADDR)
    if not PCI_ADDR.fullmatch(disk_addr):
        raise t.fail("disk_addr", f"'disk_addr' is slot.function on bus 0 (e.g. \"04.0\"), got {disk_addr!r}")
    blank, busy = t.addrs("blank_disks"), t.addrs("bios_disks")
    seen = [disk_addr]
    for key, addrs in (("blank_disks", blank), ("bios_disks", busy)):
        for addr in addrs:
            if addr == disk_addr and key == "bios_disks":
                raise t.fail(key, f"the guest disk ({addr}) cannot be a BIOS disk: SeaBIOS would boot it natively "
                                  "and the test could pass without the ROM (only blank disks may be driven by SeaBIOS)")
            if addr in seen:
                raise t.fail(key, f"two disks at PCI address {addr}")
            seen.append(addr)
    machine = t.choice("machine", MACHINES, "pc")
    for key, addrs in (("disk_addr", (disk_addr,)), ("blank_disks", blank), ("bios_disks", busy)):
        for addr in addrs:
            if problem := slot_problem(machine, addr):
                raise t.fail(key, problem)
    properties, blank_properties = _properties(t, "virtio_blk"), _properties(t, "blank_virtio_blk")
    if blank_properties and not blank:
        raise t.fail("blank_virtio_blk", "'blank_virtio_blk' sets properties of the blank disks: add `blank_disks`")
    kept = t.addrs("kept_disks")
    for addr in kept:
        if addr not in blank:
            raise t.fail("kept_disks", f"kept disk {addr} is not one of the blank disks "
                                       f"({', '.join(blank) or 'none'}): a kept disk is a blank one sanbooted "
                                       "with keep-san before the guest's disk")
    root_path = t.get("root_path", str, DEFAULT_ROOT_PATH)
    if not root_path or not root_path.isprintable() or " " in root_path or not typable(root_path):
        raise t.fail("root_path", f"'root_path' must be one word typed after `sanboot` (letters, digits and the "
                                  f"punctuation of a US keyboard), got {root_path!r}")
    refusal, failure = t.regex("expect_refusal"), t.regex("expect_failure")
    if refusal is not None and failure is not None:
        raise t.fail("expect_failure", "a configuration expects either a refusal by sanboot or a failure the guest "
                                       "reports, not both")
    memory = t.data.get("memory")
    if memory is not None and (problem := memory_problem(memory)):
        raise t.fail("memory", problem)
    shape = t.data.get("disk_shape")
    if shape is not None and not (isinstance(shape, str) and shape):
        raise t.fail("disk_shape", f"'disk_shape' must be a shape name, got {shape!r}")
    return Config(
        name=name, guests=tuple(guests), required=t.get("required", bool, True),
        machine=machine, boot=t.choice("boot", BOOT_MODES, "strict"),
        root_path=root_path, disk_addr=disk_addr, blank_disks=blank, bios_disks=busy, virtio_blk=properties,
        readonly=t.get("readonly", bool, False), disk_shape=shape, expect_refusal=refusal,
        inject_error=_inject_error(t), hold=_hold(t), expect_failure=failure, memory=memory,
        blank_virtio_blk=blank_properties, kept_disks=kept,
    )


def memory_problem(value: object) -> str | None:
    """Why ``value`` is not a machine's memory in MiB (a whole number from 16 to 16384), None when it is."""
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_MEMORY <= value <= MAX_MEMORY:
        return (f"'memory' is the machine's memory in MiB, a whole number from {MIN_MEMORY} to {MAX_MEMORY}, "
                f"got {value!r}")
    return None


def _inject_error(t: _ConfigTable) -> InjectError | None:
    """``inject_error = { event = "read_aio", errno = 5, sector = 63, once = false }``."""
    table = t.get("inject_error", dict, None) if "inject_error" in t.data else None
    if table is None:
        return None
    for key, value in table.items():
        kind = {"event": str, "errno": int, "sector": int, "once": bool}.get(key)
        if kind is None:
            raise t.fail("inject_error", f"unknown inject_error key {key!r} (known: event, errno, sector, once)")
        negative = isinstance(value, int) and not isinstance(value, bool) and value < 0
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)) or negative:
            raise t.fail("inject_error", f"inject_error.{key} must be a {kind.__name__}, got {value!r}")
    fault = InjectError(**table)
    if not 1 <= fault.errno <= MAX_ERRNO:
        raise t.fail("inject_error", f"inject_error.errno must be an errno from 1 to {MAX_ERRNO} (5: EIO), got "
                                     f"{fault.errno} (0 injects nothing: the cell would pass untested)")
    if fault.event not in _BLKDEBUG_EVENTS:
        raise t.fail("inject_error", f"inject_error.event must be one of {', '.join(_BLKDEBUG_EVENTS)}, "
                                     f"got {fault.event!r}")
    return fault


def _hold(t: _ConfigTable) -> Hold | None:
    """``hold = { at = "MARKER", release = "MARKER", via = "throttle", event = "read_aio", key = "spc" }``."""
    table = t.get("hold", dict, None) if "hold" in t.data else None
    if table is None:
        return None
    for key, value in table.items():
        if key not in ("at", "release", "via", "event", "key"):
            raise t.fail("hold", f"unknown hold key {key!r} (known: at, release, via, event, key)")
        if not isinstance(value, str) or not value:
            raise t.fail("hold", f"hold.{key} must be a non-empty string, got {value!r}")
    if "at" not in table or "release" not in table:
        raise t.fail("hold", "a hold needs `at` and `release`: the guest's markers for holding and releasing")
    hold = Hold(**table)
    if hold.via not in HOLD_VIAS:
        raise t.fail("hold", f"hold.via must be one of {', '.join(HOLD_VIAS)}, got {hold.via!r}")
    if hold.event not in _BLKDEBUG_EVENTS:
        raise t.fail("hold", f"hold.event must be one of {', '.join(_BLKDEBUG_EVENTS)}, got {hold.event!r}")
    if not re.fullmatch(r"[a-z0-9_]+", hold.key):
        raise t.fail("hold", f"hold.key must be a QEMU key code (e.g. spc, ret), got {hold.key!r}")
    return hold


def _properties(t: _ConfigTable, key: str) -> tuple[tuple[str, int | str | bool], ...]:
    """``virtio_blk = { ... }`` (or ``blank_virtio_blk``): names on the allow-list, values of their kind."""
    table = t.get(key, dict, {})
    for name, value in table.items():
        if not isinstance(value, (int, str, bool)):
            raise t.fail(key, f"{key}.{name} must be a number, a string or a boolean, got {value!r}")
        if problem := property_problem(name, qemu_value(value)):
            raise t.fail(key, problem)
    return tuple(table.items())


def _config_data(config: Config, manifest_guests: list[str]) -> dict[str, Any]:
    """A [[configs]] table with only the keys that differ from their defaults."""
    data: dict[str, Any] = {"name": config.name}
    if list(config.guests) != manifest_guests:
        data["guests"] = list(config.guests)
    defaults = Config(name=config.name, guests=config.guests)
    for key in _CONFIG_KEYS[3:]:
        value = getattr(config, key)
        if value == getattr(defaults, key):
            continue
        if key in ("virtio_blk", "blank_virtio_blk"):
            data[key] = dict(value)
        elif isinstance(value, (InjectError, Hold)):
            data[key] = {k: v for k, v in vars(value).items() if v is not None}
        else:
            data[key] = list(value) if isinstance(value, tuple) else value
    if not config.required:
        data["required"] = False
    return data


def _manifest_data(series: Series) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": series.name, "upstream": series.upstream, "base": series.base,
        "subject_prefix": series.subject_prefix, "to": series.to, "cc": series.cc,
        "guests": series.guests, "version": series.version,
        "patches": [p.filename for p in series.patches],
    }
    versions = []
    for v in series.versions:
        entry: dict[str, Any] = {"number": v.number, "changelog": v.changelog}
        if v.sent is not None:
            entry["sent"] = v.sent
        if v.tag is not None:
            entry["tag"] = v.tag
        versions.append(entry)
    if versions:
        data["versions"] = versions
    if series.coverage is not None:
        gate = {"min": series.coverage.min, "reasons": series.coverage.reasons}
        data["coverage"] = {key: value for key, value in gate.items() if value not in (None, False)}
    if series.configs:
        data["configs"] = [_config_data(c, series.guests) for c in series.configs]
    if series.images:
        data["images"] = [{k: v for k, v in asdict(i).items() if v is not None} for i in series.images]
    return data


def _save_manifest(path: Path, data: dict[str, Any]) -> None:
    """Write the manifest: a new one whole; an existing one edited in place (tomlkit), only where its meaning
    changes, so the user's comments, layout, order and spelling of the rest stay byte for byte."""
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else None
        doc = tomlkit.parse(text) if text is not None else None
    except (UnicodeDecodeError, tomlkit.exceptions.TOMLKitError):
        doc = None
    if doc is None:
        _write_if_changed(path, tomli_w.dumps(data, multiline_strings=True))
        return
    old = doc.unwrap()
    for key, value in data.items():
        if key == "versions":
            _edit_versions(doc, value)
        elif key in ("configs", "images"):
            if not _same_tables(path, old, data):
                doc[key] = tomlkit.aot()
                doc[key].extend(value)
        elif old.get(key, _DEFAULTS.get(key)) != value:
            doc[key] = _like(doc.get(key), value)
    for key in ("versions", "configs", "images"):
        if key in old and key not in data:
            del doc[key]
    _write_if_changed(path, tomlkit.dumps(doc))


_DEFAULTS: dict[str, Any] = {"subject_prefix": "PATCH", "to": [], "cc": [], "guests": [], "patches": [], "version": 1}


def _like(old: Any, value: Any) -> Any:
    """``value`` as a TOML item written the way ``old`` was: a multi-line array stays one, a changelog multi-line."""
    if isinstance(value, list) and isinstance(old, tomlkit.items.Array) and "\n" in old.as_string():
        array = tomlkit.array()
        array.extend(value)
        return array.multiline(True)
    if isinstance(value, str) and "\n" in value:
        return tomlkit.string(value, multiline=True)
    return value


def _edit_versions(doc: tomlkit.TOMLDocument, versions: list[dict[str, Any]]) -> None:
    """Bring [[versions]] to ``versions``: entries edited key by key, new ones appended, dropped ones removed."""
    if "versions" not in doc:
        doc["versions"] = tomlkit.aot()
    tables = doc["versions"]
    wanted = {v["number"]: v for v in versions}
    for index in reversed(range(len(tables))):
        if tables[index].get("number") not in wanted:
            del tables[index]
    have = {t.get("number"): t for t in tables}
    for number, entry in wanted.items():
        table = have.get(number)
        if table is None:
            inline = isinstance(tables, tomlkit.items.Array)  # `versions = [{ ... }]`, written by hand
            table = tomlkit.inline_table() if inline else tomlkit.table()
            for key, value in entry.items():
                table[key] = value if inline else _like(None, value)
            if not inline:
                table.add(tomlkit.nl())
            tables.append(table)
            continue
        for key, value in entry.items():
            if table.get(key, "" if key == "changelog" else None) != value:
                table[key] = _like(table.get(key), value)
        for key in [k for k in table if k not in entry]:
            del table[key]


def _same_tables(path: Path, old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether two manifests' [[configs]] and [[images]] mean the same (defaults spelled out or not)."""
    def parse(d: dict[str, Any]) -> tuple[Any, ...]:
        m = _Manifest(path, "", d)
        images = _images(m)
        return images, _configs(m, d.get("guests", []), [i.name for i in images])
    try:
        return parse(old) == parse(new)
    except SeriesError:
        return False


def _write_if_changed(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return
    atomic_write(path, data)


def _coverage(m: _Manifest) -> CoverageGate | None:
    """The ``[coverage]`` table: ``min`` (a percentage) and ``reasons`` (a boolean)."""
    table = m.get("coverage", dict, None)
    if table is None:
        return None
    for key in table:
        if key not in ("min", "reasons"):
            raise SeriesError(f"{m.at(key)}: unknown [coverage] key {key!r} (known: min, reasons)")
    least = table.get("min")
    if least is not None and (not isinstance(least, int) or isinstance(least, bool) or not 0 <= least <= 100):
        raise SeriesError(f"{m.at('min')}: [coverage] min is a percentage, a whole number from 0 to 100")
    reasons = table.get("reasons", False)
    if not isinstance(reasons, bool):
        raise SeriesError(f"{m.at('reasons')}: [coverage] reasons is true or false")
    return CoverageGate(least, reasons)
