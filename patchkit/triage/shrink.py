"""`patchkit shrink CELL`: the smallest set of a failing configuration's settings that still fails.

A configuration's settings are the axes it moves off the default: machine, boot mode, root
path, the guest disk's address and shape, read-only, blank and BIOS-driven disks, each
virtio-blk property on its own, an injected fault, a hold. The cell is booted once as it is
(it must fail), then with each setting in turn set back to the default: a setting whose
removal still fails is dropped for good. What is left is a failing configuration from which
no single setting can be taken away (1-minimal, one boot per setting). A setting whose removal
makes a configuration patchkit or QEMU refuses is kept. The verdict's own terms
(expect_refusal, expect_failure) are not settings: they stay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from patchkit.boot.run import boot_planned
from patchkit.build.series import ensure_series_rom
from patchkit.errors import PatchkitError
from patchkit.matrix import cell_named, plan_cells
from patchkit.progress import Progress
from patchkit.project import Project
from patchkit.series.model import Config
from patchkit.store import Store

# The fields of Config that are settings (the rest name the configuration or judge the run).
AXES = ("machine", "boot", "root_path", "disk_addr", "disk_shape", "readonly", "blank_disks", "bios_disks",
        "virtio_blk", "inject_error", "hold")

Setting = tuple[str, object]  # (axis, value); a virtio-blk property is ("virtio_blk", (name, value))


@dataclass
class Shrink:
    """The settings of the failing configuration, and the smallest failing set found."""

    cell: str
    settings: list[Setting]
    needed: list[Setting] = field(default_factory=list)
    tried: list[tuple[str, str]] = field(default_factory=list)  # (what was set back, "pass"/"FAIL"/"refused: ...")
    fails_as_is: bool = True

    def summary(self) -> str:
        if not self.fails_as_is:
            return f"{self.cell} passes as configured: nothing to shrink"
        shown = ", ".join(describe(s) for s in self.needed) or "none (it fails on the default configuration)"
        return f"{self.cell}: smallest failing configuration: {shown} (of {len(self.settings)} setting(s))"


def describe(setting: Setting) -> str:
    """``axis = value`` as the manifest writes it."""
    axis, value = setting
    if axis == "virtio_blk" and isinstance(value, tuple):  # one (name, value) property
        return f"virtio_blk.{value[0]} = {value[1]!r}"
    return f"{axis} = {value!r}"


def settings_of(config: Config) -> list[Setting]:
    """The settings ``config`` moves off the default, one per axis (one per virtio-blk property)."""
    defaults = {f.name: f.default for f in fields(Config) if f.name in AXES}
    found: list[Setting] = []
    for axis in AXES:
        value = getattr(config, axis)
        if axis == "virtio_blk":
            found += [(axis, prop) for prop in value]
        elif value != defaults[axis]:
            found.append((axis, value))
    return found


def with_settings(config: Config, kept: list[Setting]) -> Config:
    """``config`` with only the settings ``kept``; every other axis at its default."""
    defaults = {f.name: f.default for f in fields(Config) if f.name in AXES}
    values: dict[str, object] = {**defaults, "virtio_blk": tuple(v for a, v in kept if a == "virtio_blk")}
    values.update({a: v for a, v in kept if a != "virtio_blk"})
    return replace(config, **values)  # type: ignore[arg-type]  # the values came from a Config's own fields


Boot = Callable[[Config], bool]  # a configuration booted once: passed?


def shrink(cell: str, config: Config, boot: Boot, progress: Progress) -> Shrink:
    """Shrink ``config``'s settings with ``boot`` (see the module)."""
    settings = settings_of(config)
    result = Shrink(cell, settings)
    progress(f"{cell}: {len(settings)} setting(s): {', '.join(describe(s) for s in settings) or 'none'}")
    if boot(config):
        result.fails_as_is = False
        return result
    kept = list(settings)
    for setting in settings:
        trial = [s for s in kept if s != setting]
        try:
            passed = boot(with_settings(config, trial))
        except PatchkitError as exc:
            result.tried.append((describe(setting), f"refused: {exc.message}"))
            progress(f"  without {describe(setting)}: refused ({exc.message}): kept")
            continue
        result.tried.append((describe(setting), "pass" if passed else "FAIL"))
        progress(f"  without {describe(setting)}: {'pass: it matters' if passed else 'FAIL: not needed'}")
        if not passed:
            kept = trial
    result.needed = kept
    return result


def local_boot(store: Store, guest_name: str, rom: Path, accel: str) -> Boot:
    """Boot ``guest_name`` through ``rom`` on a configuration, here."""

    def boot(config: Config) -> bool:
        plan = plan_cells(store, [config], [guest_name], False)
        if not plan.cells:
            raise PatchkitError(next(iter(plan.unrunnable.values()), f"{guest_name} cannot run on {config.name}"))
        guest = plan.cells[0].guest
        if guest.self_contained:
            guest.build()
        return boot_planned(guest, rom=rom, config=config, accel=accel).passed

    return boot


def shrink_cell(project: Project, series_name: str | None, cell_name: str, *, accel: str = "auto",
                progress: Progress = print) -> Shrink:
    """Shrink the manifest's cell ``cell_name`` on the series' current ROM (built if missing)."""
    series = project.series(series_name)
    cell = cell_named(project.store, series.test_configs(), cell_name)
    rom = ensure_series_rom(project, series.name, progress).path
    guest = cell_name.rpartition("/")[2]  # the guest as named, not its variant for this configuration
    return shrink(cell.name, cell.config, local_boot(project.store, guest, rom, accel), progress)
