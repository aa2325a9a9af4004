"""The machine's memory: --memory, a configuration's `memory`, an [[images]] table's `memory`, and defaults that
fit what people boot (an installer needs more than the 128 MiB of the small built-in guests)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fixtures.cli import run_patchkit
from fixtures.repos import BASE, patch_text, write_series

from patchkit.errors import SeriesError
from patchkit.guests.image import DEFAULT_MEMORY
from patchkit.series.io import load_series


@pytest.fixture
def series_dir(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "series").mkdir(parents=True)
    return write_series(root, "demo", BASE, [patch_text()])


def test_memory_keys_are_read_checked_and_described(series_dir: Path) -> None:
    manifest = series_dir / "series.toml"
    text = manifest.read_text()
    manifest.write_text(text + '\n[[configs]]\nname = "big"\nmemory = 1024\n\n[[images]]\nname = "installer"\n'
                               'path = "installer.img"\nmemory = 768\n')
    s = load_series(series_dir)
    assert s.config("big").memory == 1024 and s.config("big").describe().endswith("; 1024 MiB")
    assert s.images[0].memory == 768
    manifest.write_text(text + '\n[[configs]]\nname = "big"\nmemory = 8\n')
    with pytest.raises(SeriesError, match=r"series.toml:17: 'memory' is the machine's memory in MiB, a whole "
                                          r"number from 16 to 16384, got 8"):
        load_series(series_dir)
    assert DEFAULT_MEMORY == 512


def memory_of_run(out: str) -> str:
    run = re.search(r"\[run: (\S+)\]", out)
    assert run, out
    found = re.search(r" -m (\d+) ", (Path(run.group(1)) / "qemu-cmdline.txt").read_text())
    assert found
    return found.group(1)


@pytest.mark.boot
@pytest.mark.needs_gpxe
def test_memory_option_sets_the_machines_memory(inputs_cache: Path) -> None:
    done = run_patchkit("test", "--config", "pc", "--guest", "freedos", "--accel", "tcg")
    assert done.returncode == 0, done.stdout
    assert memory_of_run(done.stdout) == "128"  # the small guest's own
    run_dir = Path(done.stdout.split("[run: ")[1].split("]")[0])
    assert (run_dir / "marker.png").read_bytes().startswith(b"\x89PNG")  # the report shows the screen at the marker
    done = run_patchkit("test", "--config", "pc", "--guest", "freedos", "--accel", "tcg", "--memory", "256")
    assert done.returncode == 0, done.stdout
    assert memory_of_run(done.stdout) == "256"
    done = run_patchkit("test", "--memory", "8")
    assert done.returncode == 2 and "--memory" in done.stdout
