"""Shell completion of what a project holds: series, their versions, configurations and guests.

click completes subcommands and options itself (``eval "$(_PATCHKIT_COMPLETE=bash_source patchkit)"``,
README); these callbacks add the values. They read the project named by -C (or the working
directory) and stay silent when there is none or it cannot be read.
"""

from __future__ import annotations

from pathlib import Path

import click
from click.shell_completion import CompletionItem

from patchkit.errors import PatchkitError
from patchkit.guests import GUEST_NAMES, HARNESS_NAMES, KEEP_SAN_NAMES
from patchkit.project import Project
from patchkit.series.io import available_versions
from patchkit.series.model import Series
from patchkit.store import Store


def _project(ctx: click.Context) -> Project:
    root = ctx.find_root().params.get("project") or Path(".")
    return Project.find(Path(root), Store.from_environment())


def _series(ctx: click.Context) -> Series | None:
    """The series the command line names so far (its SERIES argument), else the only one; None if none."""
    try:
        return _project(ctx).series(ctx.params.get("series") or ctx.params.get("series_name"))
    except (PatchkitError, OSError):
        return None


def _items(values: list[str], incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(v) for v in values if v.startswith(incomplete)]


def series_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    try:
        return _items(_project(ctx).series_names(), incomplete)
    except (PatchkitError, OSError):
        return []


def versions(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    series = _series(ctx)
    return [] if series is None else _items([f"v{n}" for n in available_versions(series)], incomplete)


def configs(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    series = _series(ctx)
    return [] if series is None else _items([c.name for c in series.test_configs()], incomplete)


def guests(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    series = _series(ctx)
    images = [] if series is None else [i.name for i in series.images]
    return _items([*GUEST_NAMES, *KEEP_SAN_NAMES, *HARNESS_NAMES, *images, "all"], incomplete)
