"""The project a command works on: its root, its pin, its series (each read once) and the cache.

The CLI builds one ``Project`` and passes it down; nothing below it re-reads pin.toml
or a series manifest, nor looks at the environment for the cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

from patchkit.errors import NotAProjectError, SeriesError
from patchkit.pin import Pin, load_pin, pin_file
from patchkit.series.io import MANIFEST, load_series
from patchkit.series.model import Series
from patchkit.store import Store, dir_lock


class Project:
    """A patchkit project (``series/`` and ``gpxe-tree/pin.toml`` under ``root``) and the cache it uses."""

    def __init__(self, root: Path, store: Store) -> None:
        self.root = root
        self.store = store
        self._series: dict[str, Series] = {}

    @classmethod
    def find(cls, start: Path, store: Store) -> Project:
        """The project at the nearest directory at or above ``start`` holding gpxe-tree/pin.toml (as git
        finds .git); ``start`` itself when there is none (commands needing the pin then say so)."""
        start = start.resolve()
        for directory in (start, *start.parents):
            if pin_file(directory).is_file():
                return cls(directory, store)
        return cls(start, store)

    @cached_property
    def pin(self) -> Pin:
        return load_pin(self.root)

    @property
    def series_root(self) -> Path:
        return self.root / "series"

    def series_names(self) -> list[str]:
        """Names of the series (directories of ``series/`` holding a series.toml), sorted; NotAProjectError
        outside a project (neither gpxe-tree/pin.toml nor series/ here)."""
        if not self.series_root.is_dir():
            if not pin_file(self.root).is_file():
                raise NotAProjectError(f"not a patchkit project: {self.root} (no gpxe-tree/pin.toml or series/ "
                                       "here or above)", hint="cd into one or pass -C")
            return []
        return sorted(d.name for d in self.series_root.iterdir() if (d / MANIFEST).is_file())

    def series(self, name: str | None = None) -> Series:
        """Series ``name`` (read and checked on first use), or the only series when ``name`` is None."""
        name = self._series_name(name)
        if name not in self._series:
            self._series[name] = load_series(self.series_root / name)
        return self._series[name]

    def _series_name(self, name: str | None) -> str:
        """``name`` if it is a series here, or the only series' name for None; SeriesError otherwise."""
        names = self.series_names()
        if name is None:
            if len(names) == 1:
                name = names[0]
            elif not names:
                raise SeriesError(f"no series in {self.series_root}",
                                  hint="create series/<name>/series.toml, or pass -C PROJECT")
            else:
                raise SeriesError(f"several series, name one of: {', '.join(names)}")
        if name not in names:
            known = ", ".join(names) or "none"
            raise SeriesError(f"unknown series '{name}' (known: {known})",
                              hint="run `patchkit status` to list the series")
        return name

    def series_changed(self, series: Series) -> None:
        """Take ``series`` as what its files now hold (after patchkit wrote them)."""
        self._series[series.name] = series

    @contextmanager
    def editing(self, name: str | None = None) -> Iterator[Series]:
        """Series ``name`` read again under its lock, held while the caller writes its files.

        Every command that writes series files does it in here (an flock on the series directory), so
        a command that read the series earlier (send-email) never writes its stale copy over another's
        change (`version new`).
        """
        name = self._series_name(name)
        with dir_lock(self.series_root / name):
            self.forget_series(name)
            yield self.series(name)
        self.forget_series(name)

    def forget_series(self, name: str) -> None:
        """Read series ``name`` again on next use (its files changed in a way not held in memory)."""
        self._series.pop(name, None)
