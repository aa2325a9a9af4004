"""Reading, validating and writing series sources (``series/<name>/``).

Every problem found on load raises SeriesError naming the file and, where there is
one, the line: a malformed manifest, a missing patch file, CRLF or non-UTF-8 text,
a diff that does not parse, a binary patch, a path outside the tree.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import tomli_w
import unidiff

from patchkit.errors import SeriesError
from patchkit.series.model import Patch, Series, VersionInfo, diff_start_line, parse_patch
from patchkit.store import atomic_write

MANIFEST = "series.toml"
COVER = "cover.txt"
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_PATH_HEADERS = ("rename from ", "rename to ", "copy from ", "copy to ")


def series_root(project: Path) -> Path:
    """``<project>/series``."""
    return project / "series"


def list_series(project: Path) -> list[str]:
    """Names of the series in the project (directories holding a series.toml), sorted."""
    root = series_root(project)
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if (d / MANIFEST).is_file())


def find_series(project: Path, name: str | None) -> Series:
    """Load series ``name``, or the only series when ``name`` is None."""
    names = list_series(project)
    if name is None:
        if len(names) == 1:
            name = names[0]
        elif not names:
            raise SeriesError(f"no series in {series_root(project)}",
                              hint="create series/<name>/series.toml, or pass -C PROJECT")
        else:
            raise SeriesError(f"several series, name one of: {', '.join(names)}")
    if name not in names:
        known = ", ".join(names) or "none"
        raise SeriesError(f"unknown series '{name}' (known: {known})",
                          hint="run `patchkit status` to list the series")
    return load_series(series_root(project) / name)


def load_series(directory: Path) -> Series:
    """Load and validate the series in ``directory``."""
    manifest = directory / MANIFEST
    text = _read_text(manifest)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SeriesError(f"{manifest}: {exc}", hint="fix the TOML syntax at that line") from exc
    m = _Manifest(manifest, text, data)
    versions = [_version(m, i, v) for i, v in enumerate(m.get("versions", list, []))]
    filenames = m.get("patches", list, [])
    for f in filenames:
        if not isinstance(f, str) or "/" in f or f.startswith("."):
            raise SeriesError(f"{m.at('patches')}: patch entries must be file names in patches/, got {f!r}")
    patch_dir = directory / "patches"
    patches = []
    for f in filenames:
        path = patch_dir / f
        if not path.is_file():
            raise SeriesError(f"{m.at('patches', f)}: patch file {path} does not exist",
                              hint="add the file or remove it from `patches`")
        patches.append(load_patch(path))
    title, body = _load_cover(directory / COVER)
    return Series(
        name=m.get("name", str), upstream=m.get("upstream", str), base=m.get("base", str),
        subject_prefix=m.get("subject_prefix", str, "PATCH"), to=m.get_strs("to"), cc=m.get_strs("cc"),
        guests=m.get_strs("guests"), version=m.get("version", int, 1), versions=versions,
        cover_title=title, cover_body=body, patches=patches, path=directory,
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
        for path in _paths_in(line):
            problem = unsafe_path(path)
            if problem:
                raise SeriesError(f"{at}: patch touches {path!r}, {problem}",
                                  hint="a patch may only change files inside the tree")
    if old_left > 0 or new_left > 0:
        raise SeriesError(f"{where}:{first_line + len(lines)}: the diff ends inside the hunk started at line {hunk_at}")
    try:
        parsed = unidiff.PatchSet(diff)
    except unidiff.UnidiffParseError as exc:
        raise SeriesError(f"{where}:{first_line}: the diff does not parse: {exc}") from exc
    if not len(parsed):
        raise SeriesError(f"{where}:{first_line}: the diff changes no file")


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

    def at(self, key: str, needle: str | None = None) -> str:
        """``path:line`` of ``key`` (or of ``needle``'s first occurrence), or just ``path``."""
        for n, line in enumerate(self.text.splitlines(), 1):
            if (needle and needle in line) or (not needle and re.match(rf"\s*{re.escape(key)}\s*=", line)):
                return f"{self.path}:{n}"
        return str(self.path)

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


def _version(m: _Manifest, index: int, entry: Any) -> VersionInfo:
    where = f"{m.path}: [[versions]] entry {index + 1}"
    if not isinstance(entry, dict) or not isinstance(entry.get("number"), int):
        raise SeriesError(f"{where} needs an integer `number`")
    for key in ("changelog", "sent", "tag"):
        if key in entry and not isinstance(entry[key], str):
            raise SeriesError(f"{where}: '{key}' must be a string")
    return VersionInfo(number=entry["number"], changelog=entry.get("changelog", ""),
                       sent=entry.get("sent"), tag=entry.get("tag"))


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
    return data


def _save_manifest(path: Path, data: dict[str, Any]) -> None:
    """Write the manifest unless it already says the same (keeps hand formatting and extra keys)."""
    if path.is_file():
        try:
            old = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            old = {}
        old_versions = old.pop("versions", None)
        merged = {**old, **data}
        if old_versions is not None:
            old["versions"] = old_versions
        if merged == old:
            return
        data = merged
    _write_if_changed(path, tomli_w.dumps(data, multiline_strings=True))


def _write_if_changed(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return
    atomic_write(path, data)
