"""The pinned upstream (``gpxe-tree/pin.toml``): URL, commit, and typed build and ROM settings."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patchkit.errors import UpstreamError

PIN_FILE = Path("gpxe-tree") / "pin.toml"


@dataclass(frozen=True)
class BuildSettings:
    """How the tree is built: make runs in ``directory`` with ``make_args``."""

    target: str  # the series' ROM, e.g. bin/1af41001.rom
    base_target: str  # a ROM the base tree builds too (what the series costs in size; the NIC ROM); default: target
    directory: str = "."
    make_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class RomIds:
    """The PCI vendor and device the series' ROM must carry."""

    vendor: int
    device: int


@dataclass(frozen=True)
class Pin:
    """An upstream pinned by URL and commit, with its build and ROM settings."""

    name: str
    url: str
    commit: str
    build: BuildSettings
    rom: RomIds | None = None  # for targets whose name carries no PCI ids (bin/VVVVDDDD.rom does)
    latest: str | None = None
    path: Path = field(default=Path(), compare=False)  # the pin.toml it was read from


def pin_file(project_root: Path) -> Path:
    """``<project>/gpxe-tree/pin.toml``."""
    return project_root / PIN_FILE


def load_pin(project_root: Path) -> Pin:
    """Read and check the pin of the project at ``project_root``."""
    path = pin_file(project_root)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UpstreamError(f"{path} does not exist",
                            hint="run patchkit from the project root or pass -C PROJECT") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UpstreamError(f"{path}: {exc}", hint="fix the TOML syntax at that line") from exc
    for key in ("name", "url", "commit"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise UpstreamError(f"{path}: missing or empty string '{key}'")
    latest = data.get("latest")
    if latest is not None and not isinstance(latest, str):
        raise UpstreamError(f"{path}: 'latest' must be a commit id (a string)")
    return Pin(name=data["name"], url=data["url"], commit=data["commit"], latest=latest or None,
               build=_build(path, data.get("build", {})), rom=_rom(path, data.get("rom", {})), path=path)


def _build(path: Path, table: Any) -> BuildSettings:
    table = _table(path, "build", table)
    make_args = table.get("make_args", [])
    if not isinstance(make_args, list) or not all(isinstance(a, str) for a in make_args):
        raise UpstreamError(f"{path}: [build] make_args must be a list of strings")
    target = _string(path, "build", table, "target")
    return BuildSettings(target=target, base_target=_string(path, "build", table, "base_target", target),
                         directory=_string(path, "build", table, "directory", "."), make_args=tuple(make_args))


def _rom(path: Path, table: Any) -> RomIds | None:
    table = _table(path, "rom", table)
    if not table:
        return None
    ids = []
    for key in ("vendor", "device"):
        value = table.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF:
            raise UpstreamError(f"{path}: [rom] {key} must be a PCI id (an integer such as 0x1af4)")
        ids.append(value)
    return RomIds(vendor=ids[0], device=ids[1])


def _table(path: Path, name: str, table: Any) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise UpstreamError(f"{path}: [{name}] must be a table")
    return table


def _string(path: Path, table_name: str, table: dict[str, Any], key: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise UpstreamError(f"{path}: [{table_name}] {key} must be a non-empty string")
    return value
