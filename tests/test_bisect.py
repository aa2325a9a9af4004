"""`patchkit bisect` on a fixture series: the real series with three patches after it, the middle one
broken on purpose (the driver reads one sector late). Bisect names that patch and confirms it (fails
N of N, its parent passes N of N); a cell that fails at the bisection's base (an I/O error on sector 0,
whatever the ROM) is reported as a base failure, blamed on no patch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import GPXE_MIRROR, share_inputs
from fixtures.cli import run_patchkit
from fixtures.guests import guest_or_skip

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` lives beside the package

from bench.triage import SERIES, broken_project
from patchkit.project import Project
from patchkit.store import Store
from patchkit.triage.bisect import bisect_cell

pytestmark = pytest.mark.boot

ALWAYS_FAILS = '''
[[configs]]
name = "sector0-error"
guests = ["probe"]
required = false
inject_error = { event = "read_aio", errno = 5, sector = 0 }
'''


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The fixture project (bench.triage.broken_project) with a configuration that always fails, on a cache
    that sees the inputs."""
    if not (GPXE_MIRROR / "HEAD").exists():
        pytest.skip("gPXE upstream not imported: run `patchkit vendor --from PATH-TO-GPXE-MIRROR`")
    cache = tmp_path_factory.mktemp("broken-cache")
    share_inputs(cache)
    return broken_project(tmp_path_factory.mktemp("broken-project"), Store(cache), ALWAYS_FAILS)


def test_bisect_names_the_broken_patch_and_confirms_it(broken: Project) -> None:
    guest_or_skip("probe", broken.store)
    done = run_patchkit("-C", broken.root, "bisect", "pc/probe", SERIES, "--confirm", "2", "--accel", "tcg",
                        cache=broken.store.root, merged=False, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ("pc/probe: first bad: 8/9 [[virtio] Start requests one sector later]; confirmed: "
                                   "fails 2 of 2, 7/9 passes 2 of 2"), done.stdout + done.stderr
    recorded = json.loads((broken.store.root / "triage" / SERIES / "pc-probe.json").read_text())
    assert recorded["first_bad"] == "8/9" and recorded["untestable"] == ["base", *(f"{n}/9" for n in range(1, 6))]
    assert all(Path(d).is_dir() for runs in recorded["runs"].values() for d in runs)  # each boot's artifacts


def test_a_cell_failing_at_the_base_is_a_base_failure(broken: Project) -> None:
    guest_or_skip("probe", broken.store)
    said: list[str] = []
    result = bisect_cell(broken, SERIES, "sector0-error/probe", confirm=2, accel="tcg", progress=said.append)
    assert result.base_failure and result.first_bad is None and result.confirmed
    assert result.summary() == ("sector0-error/probe: base failure, it fails already at 6/9 (steps before it do "
                                "not build the ROM: base, 1/9, 2/9, 3/9, 4/9, 5/9): no patch after it is the culprit; "
                                "fails 2 of 2")
    assert result.boots == {"9/9": [False], "6/9": [False, False]}  # the tip, the base: nothing in between


def test_a_failing_test_run_bisects_its_failing_cells(broken: Project) -> None:
    guest_or_skip("probe", broken.store)
    done = run_patchkit("-C", broken.root, "test", SERIES, "--guest", "probe", "--reruns", "0", "--bisect",
                        "--accel", "tcg", cache=broken.store.root, merged=False, timeout=1800)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL probe on pc (tcg)" in done.stdout
    assert done.stdout.splitlines()[-1] == ("pc/probe: first bad: 8/9 [[virtio] Start requests one sector later]; "
                                            "confirmed: fails 3 of 3, 7/9 passes 3 of 3"), done.stdout


@pytest.fixture(scope="module")
def broken_next_version(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The series' current version (v4) frozen, and the next one (v5) with the fixture patches after it."""
    if not (GPXE_MIRROR / "HEAD").exists():
        pytest.skip("gPXE upstream not imported: run `patchkit vendor --from PATH-TO-GPXE-MIRROR`")
    cache = tmp_path_factory.mktemp("broken-v5-cache")
    share_inputs(cache)
    return broken_project(tmp_path_factory.mktemp("broken-v5-project"), Store(cache), new_version=True)


def test_across_versions_the_patch_of_the_new_version_is_named(broken_next_version: Project) -> None:
    # v4 passed the cell, v5 (v4 plus the fixture patches) fails it: bisect goes from v4 to v5's patches.
    guest_or_skip("probe", broken_next_version.store)
    said: list[str] = []
    result = bisect_cell(broken_next_version, SERIES, "pc/probe", confirm=2, since=4, accel="tcg", jobs=2,
                         progress=said.append)
    assert result.steps == ["v4", "6/9", "7/9", "8/9", "9/9"]  # v5's steps before its driver patch left out
    assert (result.first_bad, result.parent, result.confirmed) == ("8/9", "7/9", True), said
    assert result.boots["v4"] == [True]
