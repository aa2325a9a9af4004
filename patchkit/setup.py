"""`patchkit setup`: fill the cache with every input the project needs.

Inputs patchkit can make or download from the package registries (the Debian and
probe guests) must succeed. Third-party inputs that may be unreachable from this
machine (the gPXE upstream, FreeDOS media) are imported when a source is given or
reachable, and otherwise reported with the command that provides them: the tests
that need them skip. With the upstream present, the ROMs of every series and of the
base tree are built once, so later builds (and the tests) reuse them by content key, and
so is every guest image of patchkit's own that the series' configurations boot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from patchkit.build.series import base_rom, ensure_series_rom
from patchkit.errors import PatchkitError
from patchkit.guests import Guest, debpkgs, get_guest
from patchkit.guests.freedos import import_media
from patchkit.matrix import plan_cells
from patchkit.progress import Progress, Steps, quiet
from patchkit.project import Project
from patchkit.store import Store
from patchkit.upstream import vendor_report


@dataclass(frozen=True)
class SetupItem:
    """One cache input and what setup did about it."""

    name: str
    ready: bool
    detail: str


def setup(project: Project, gpxe_from: str | None, freedos_media: Path | None, progress: Progress,
          steps: Progress = quiet) -> list[SetupItem]:
    """Import or build every input; raise only for inputs that should always be obtainable. ``steps`` hears
    "[3/7] debian guest, about 2 min left" after each part."""
    variants = [g for g in configured_guests(project) if f"{g.image_name} guest" not in _FIXED]
    counter = Steps(7 + len(variants), steps)
    gpxe = _gpxe(project, gpxe_from, progress)
    items = [gpxe]
    counter.step("gPXE upstream")
    if gpxe.ready:
        items += _roms(project, progress)
    counter.step("ROMs")
    for name in ("debian", "probe"):
        image = get_guest(name, project.store).build(progress)
        items.append(SetupItem(f"{name} guest", True, str(image)))
        counter.step(f"{name} guest")
    items += _freedos(project.store, freedos_media, progress)
    counter.step("FreeDOS guests")
    items.append(_grub_rescue(project.store, progress))
    counter.step("grub-rescue image")
    items.append(_debian_system(project.store, progress))
    counter.step("debian-system guest")
    for guest in variants:
        items.append(SetupItem(f"{guest.image_name} guest", True, str(guest.build(progress))))
        counter.step(f"{guest.image_name} guest")
    return items


# The guests setup builds by name; configured_guests' other images are built after them.
_FIXED = {"debian guest", "probe guest", "freedos guest", "freedos-installed guest", "debian-system guest"}


def configured_guests(project: Project) -> list[Guest]:
    """The images made of patchkit's own sources that some series' configurations boot (variants, harness
    guests such as probe-hold), one guest per image: setup builds them, so no test skips for them."""
    by_image: dict[Path, Guest] = {}
    for name in project.series_names():
        plan = plan_cells(project.store, project.series(name).test_configs(), ["all"], matrix=True)
        for cell in plan.cells:
            if cell.guest.self_contained:
                by_image.setdefault(cell.guest.image_dir(), cell.guest)
    return list(by_image.values())


def _debian_system(store: Store, progress: Progress) -> SetupItem:
    """The installed Debian system: mmdebstrap as root, ~2 minutes and ~500 MB once per pin set."""
    try:
        image = get_guest("debian-system", store).build(progress)
    except PatchkitError as exc:
        return SetupItem("debian-system guest", False, f"{exc.message}; tests needing it skip. Build it as root "
                                                       "with `patchkit guest build debian-system`")
    return SetupItem("debian-system guest", True, str(image))


def _grub_rescue(store: Store, progress: Progress) -> SetupItem:
    """Debian's GRUB rescue image package: the third-party image the `patchkit test --image` tests boot."""
    try:
        deb = debpkgs.fetch(store, (debpkgs.GRUB_RESCUE,), progress)[debpkgs.GRUB_RESCUE.name]
    except PatchkitError as exc:
        return SetupItem("grub-rescue-pc (test image)", False, f"{exc.message}; the --image tests skip")
    return SetupItem("grub-rescue-pc (test image)", True, str(deb))


def _gpxe(project: Project, source: str | None, progress: Progress) -> SetupItem:
    pin, mirror = project.pin, project.store.mirror(project.pin.name)
    if source is None and (mirror / "HEAD").is_file():
        return SetupItem("gPXE upstream", True, f"already imported: {mirror}")
    try:
        report = vendor_report(project.store, pin, source, progress)
    except PatchkitError as exc:
        return SetupItem("gPXE upstream", False,
                         f"{exc.message}; tests needing it skip. Provide it with `patchkit vendor --from PATH`")
    return SetupItem("gPXE upstream", True, f"imported: {report.path}")


def _roms(project: Project, progress: Progress) -> list[SetupItem]:
    rom = base_rom(project, progress)
    items = [SetupItem("base ROM", True, f"{rom.path} ({rom.size} bytes)")]
    for name in project.series_names():
        rom = ensure_series_rom(project, name, progress)
        items.append(SetupItem(f"{name} ROM", True, f"{rom.path} ({rom.size} bytes)"))
        # The series' NIC ROM: gPXE's AoE sanboot (patch 1's case) in the boot tests.
        rom = ensure_series_rom(project, name, progress, target=project.pin.build.base_target)
        items.append(SetupItem(f"{name} NIC ROM", True, f"{rom.path} ({rom.size} bytes)"))
    return items


def _freedos(store: Store, media: Path | None, progress: Progress) -> list[SetupItem]:
    if media is not None:
        import_media(store, media, progress)
    items = []
    for name in ("freedos", "freedos-installed"):
        try:
            image = get_guest(name, store).build(progress)
        except PatchkitError as exc:
            items.append(SetupItem(f"{name} guest", False,
                                   f"{exc.message}; tests needing it skip. Provide it with "
                                   "`patchkit guest import freedos --media PATH` (any FreeDOS boot floppy)"))
        else:
            items.append(SetupItem(f"{name} guest", True, str(image)))
    return items
