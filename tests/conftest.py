"""Shared fixtures: an isolated cache per test, and the imported inputs when present.

Tests never write the user's real cache. Inputs that cannot be made here (the gPXE
mirror, FreeDOS media) are read from the real cache when the user imported them;
otherwise the tests needing them skip, naming the command that provides them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from patchkit.store import cache_dir

# Shared fixtures: world (a fixture upstream and a project pinned to it), the ROMs (fixtures/roms.py).
pytest_plugins = ("fixtures.world", "fixtures.roms")

REAL_CACHE = cache_dir()
PROJECT_ROOT = Path(__file__).resolve().parent.parent
GPXE_MIRROR = REAL_CACHE / "upstream" / "gpxe.git"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point PATCHKIT_CACHE at a fresh directory for every test."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("PATCHKIT_CACHE", str(cache))
    return cache


@pytest.fixture
def gpxe_mirror() -> Path:
    """The vendored gPXE mirror from the user's cache (read only), or skip."""
    if not (GPXE_MIRROR / "HEAD").exists():
        pytest.skip(
            f"gPXE upstream not imported ({GPXE_MIRROR} missing): "
            "run `patchkit vendor --from PATH-TO-GPXE-MIRROR` (or `patchkit vendor` with network)"
        )
    return GPXE_MIRROR


@pytest.fixture
def inputs_cache(isolated_cache: Path) -> Path:
    """An isolated cache that sees the user's imported inputs (mirror, media, images).

    The shared directories are linked, not copied: tests only read them (images are
    content-keyed and never written after creation; runs write to the isolated cache).
    """
    for name in ("upstream", "inputs", "images", "builds"):
        real = REAL_CACHE / name
        if real.exists():
            os.symlink(real, isolated_cache / name)
    return isolated_cache
