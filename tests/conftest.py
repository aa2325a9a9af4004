"""Shared fixtures: an isolated cache (a ``Store``) per test, and the imported inputs when present.

Tests never write the user's real cache. Inputs that cannot be made here (the gPXE
mirror, FreeDOS media) are read from the real cache when the user imported them;
otherwise the tests needing them skip, naming the command that provides them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from patchkit.project import Project
from patchkit.store import Store

# Shared fixtures: world (a fixture upstream and a project pinned to it), the ROMs (fixtures/roms.py),
# gated (a project whose make can be held, fixtures/gated.py), mail_project and sent_series (a series
# mailed to SMTP servers on 127.0.0.1, fixtures/mail.py and fixtures/review.py).
pytest_plugins = ("fixtures.world", "fixtures.roms", "fixtures.gated", "fixtures.mail", "fixtures.review")

REAL_STORE = Store.from_environment()  # the user's cache: its inputs are read, never written
PROJECT_ROOT = Path(__file__).resolve().parent.parent
GPXE_MIRROR = REAL_STORE.mirror("gpxe")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache directory for every test.

    Tests pass it explicitly (the ``store`` fixture); PATCHKIT_CACHE names it too, so a
    ``patchkit`` process a test starts uses it, and nothing can reach the user's cache.
    """
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("PATCHKIT_CACHE", str(cache))
    return cache


@pytest.fixture
def store(isolated_cache: Path) -> Store:
    """The test's cache."""
    return Store(isolated_cache)


@pytest.fixture
def project(store: Store) -> Project:
    """This repository's project (its real series and pin) on the test's cache."""
    return Project(PROJECT_ROOT, store)


@pytest.fixture
def gpxe_mirror() -> Path:
    """The vendored gPXE mirror from the user's cache (read only), or skip."""
    if not (GPXE_MIRROR / "HEAD").exists():
        pytest.skip(
            f"gPXE upstream not imported ({GPXE_MIRROR} missing): "
            "run `patchkit vendor --from PATH-TO-GPXE-MIRROR` (or `patchkit vendor` with network)"
        )
    return GPXE_MIRROR


def share_inputs(cache: Path) -> None:
    """Let ``cache`` see the user's imported inputs without writing them.

    The mirror, media and images are linked (tests only read them: images are content-keyed
    and never written after creation); the small build cache is copied, so ROMs built before
    are reused by their key while new builds land in ``cache``.
    """
    for name in ("upstream", "inputs", "images"):
        real = REAL_STORE.root / name
        if real.exists():
            os.symlink(real, cache / name)
    if REAL_STORE.builds.is_dir():
        shutil.copytree(REAL_STORE.builds, cache / "builds", symlinks=True,
                        ignore=shutil.ignore_patterns(".*.lock", ".tmp*", "each-patch"))


@pytest.fixture
def inputs_cache(isolated_cache: Path) -> Path:
    """An isolated cache that sees the user's imported inputs (mirror, media, images) and earlier ROM builds."""
    share_inputs(isolated_cache)
    return isolated_cache
