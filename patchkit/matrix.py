"""The test matrix: which guests boot on which configurations, and the table of their verdicts.

A cell is one guest on one configuration of the series (``[[configs]]`` in series.toml,
see patchkit.series.model.Config). The guest is the configuration's variant of it
(its disk shape, a read-only disk). No I/O here beyond asking guests for their variants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from patchkit.errors import PatchkitError
from patchkit.guests import Guest, get_guest
from patchkit.series.model import Config
from patchkit.store import Store
from patchkit.table import table


@dataclass(frozen=True)
class Cell:
    """One guest on one configuration."""

    config: Config
    guest: Guest

    @property
    def name(self) -> str:
        """``config/guest``, as progress lines and errors name the cell."""
        return f"{self.config.name}/{self.guest.name}"


@dataclass(frozen=True)
class Plan:
    """The cells to boot, and the ones that cannot run ((config, guest) -> why)."""

    cells: list[Cell]
    unrunnable: dict[tuple[str, str], str]


def select_configs(configs: Sequence[Config], names: Sequence[str], matrix: bool) -> list[Config]:
    """The configurations a run covers: all (``matrix``), the named ones, or else the first."""
    if matrix:
        return list(configs)
    if not names:
        return [configs[0]]
    by_name = {c.name: c for c in configs}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise PatchkitError(f"unknown configuration {', '.join(unknown)} (known: {', '.join(by_name)})",
                            hint="configurations are the [[configs]] tables of series.toml")
    return [by_name[n] for n in dict.fromkeys(names)]


def plan_cells(store: Store, configs: Sequence[Config], guest_names: Sequence[str], matrix: bool,
               extra: Mapping[str, Guest] | None = None) -> Plan:
    """Guests x configurations. ``guest_names`` "all" means each configuration's guests.

    The guests cache their images in ``store``. ``extra`` holds guests known by name besides
    the built-in ones (the manifest's images).

    With ``matrix``, named guests filter each configuration's own list; otherwise the
    named guests run on the chosen configurations whether those list them or not.
    """
    cells: list[Cell] = []
    unrunnable: dict[tuple[str, str], str] = {}
    everything = "all" in guest_names
    for config in configs:
        if everything:
            names = list(config.guests)
        elif matrix:
            names = [g for g in config.guests if g in guest_names]
        else:
            names = list(dict.fromkeys(guest_names))
        for name in names:
            try:
                known = (extra or {}).get(name) or get_guest(name, store)
                guest = known.variant(disk_shape=config.disk_shape, read_only=config.readonly)
            except PatchkitError as exc:
                unrunnable[config.name, name] = exc.message
                continue
            cells.append(Cell(config, guest))
    return Plan(cells, unrunnable)


def summary_table(configs: Sequence[Config], verdicts: Mapping[tuple[str, str], str]) -> list[str]:
    """Configuration x guest table of ``verdicts`` ((config, guest) -> PASS/FAIL/...); "-" where none."""
    guests: list[str] = []
    for config in configs:
        guests.extend(g for g in config.guests if g not in guests)
    guests.extend(g for _, g in verdicts if g not in guests)
    rows = [["configuration", *guests]]
    for config in configs:
        rows.append([config.name + ("" if config.required else " (optional)"),
                     *(verdicts.get((config.name, g), "-") for g in guests)])
    return table(rows)


def cell_named(store: Store, configs: Sequence[Config], name: str) -> Cell:
    """The cell ``config/guest`` of ``configs`` (a bare guest: on the first configuration)."""
    config_name, _, guest = name.rpartition("/")
    config = next((c for c in configs if c.name == (config_name or configs[0].name)), None)
    if config is None:
        raise PatchkitError(f"no configuration {config_name!r} in the manifest",
                            hint=f"name a cell as CONFIG/GUEST, CONFIG one of {', '.join(c.name for c in configs)}")
    plan = plan_cells(store, [config], [guest], False)
    if not plan.cells:
        raise PatchkitError(f"{name}: {next(iter(plan.unrunnable.values()), 'no such cell')}")
    return plan.cells[0]
