"""Damaged cache entries: a message naming the path and what to do, or a rebuild; never "patchkit crashed".

Each test damages one entry of the test's own cache (garbage, a directory where a
file belongs, a file where a directory belongs) and runs patchkit as a user would.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from fixtures.cli import run_patchkit
from fixtures.gated import GatedProject
from fixtures.guests import guest_or_skip

from patchkit.store import Store


def assert_clear_error(done: subprocess.CompletedProcess[str], path: Path) -> None:
    assert done.returncode == 1, done.stdout
    assert str(path) in done.stdout and "crashed" not in done.stdout and "Traceback" not in done.stdout


@pytest.mark.parametrize("damage", ["garbage", "directory"])
def test_a_damaged_results_database_is_named(gated: GatedProject, damage: str) -> None:
    db = gated.cache / "results.sqlite"
    if damage == "garbage":
        db.write_bytes(b"this is not an sqlite database" * 100)
    else:
        db.mkdir()
    done = gated.run("status", "demo")
    assert_clear_error(done, db)
    assert "results database" in done.stdout and "move it aside" in done.stdout


def build_out(gated: GatedProject) -> str:
    done = gated.run("build", "demo")
    assert done.returncode == 0, done.stdout
    return done.stdout


@pytest.mark.parametrize("damage", ["garbage", "directory", "rom-missing"])
def test_a_damaged_build_is_built_again(gated: GatedProject, damage: str) -> None:
    first = build_out(gated)
    [manifest] = (gated.cache / "builds").glob("*/manifest.json")
    if damage == "garbage":
        manifest.write_text("{not json")
    elif damage == "directory":
        manifest.unlink()
        manifest.mkdir()
    else:
        rom = manifest.parent / json.loads(manifest.read_text())["rom"]
        rom.unlink()
    again = build_out(gated)
    assert "damaged or incomplete: building it again" in again and str(manifest.parent) in again
    assert "reused" not in again.split("build:")[-1]
    assert build_out(gated).count("reused") >= 1  # and the rebuilt entry is whole
    assert first


def test_runs_as_a_file_is_named(inputs_cache: Path, store: Store) -> None:
    guest_or_skip("probe", store)
    runs = inputs_cache / "runs"
    runs.write_text("not a directory")
    done = run_patchkit("test", "--reference", "--guest", "probe")
    assert_clear_error(done, runs)


def test_a_mirror_path_that_is_a_file_is_replaced_by_vendor(gated: GatedProject) -> None:
    mirror = gated.cache / "upstream" / "gpxe.git"
    subprocess.run(["rm", "-rf", str(mirror)], check=True)
    mirror.write_text("not a mirror")
    done = gated.run("apply", "demo")
    assert done.returncode == 1 and "patchkit vendor" in done.stdout
    vendored = gated.run("vendor", "--from", str(gated.upstream))
    assert vendored.returncode == 0, vendored.stdout
    assert gated.run("apply", "demo").returncode == 0


def test_a_cache_entry_in_the_way_is_named_with_what_to_do(gated: GatedProject) -> None:
    trees = gated.cache / "trees"
    trees.write_text("a file where a directory belongs")
    done = gated.run("apply", "demo")
    assert_clear_error(done, trees)
    assert "patchkit's cache" in done.stdout and "remove it" in done.stdout
