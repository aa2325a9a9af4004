"""Flakes: a failing cell is booted again; one that fails and passes on the same ROM is FLAKY (never
pass or FAIL), recorded with its history, and shown by `patchkit status`. The fixture guest fails on
alternate boots, decided by a seed (not by chance): with seed 1 its first boot fails and the rerun
passes; with seed 0 it passes at once (no rerun); the base ROM fails every boot (FAIL, not FLAKY)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.guests import guest_or_skip

from patchkit.guests.probe import ProbeGuest
from patchkit.project import Project
from patchkit.status import status_lines
from patchkit.store import Store
from patchkit.triage.flaky import flakes
from patchkit.validate import run_tests

pytestmark = pytest.mark.boot


class AlternatingProbe(ProbeGuest):
    """The probe, given a wrong token on its boots n with seed + n odd: it then prints another token's
    marker, and the run fails."""

    def __init__(self, store: Store, seed: int) -> None:
        super().__init__(store)
        self.seed = seed
        self.boots = 0

    def _inject_token(self, disk_path: Path, token: str) -> None:
        failing = (self.seed + self.boots) % 2 == 1
        self.boots += 1
        super()._inject_token(disk_path, "f" * len(token) if failing else token)


@pytest.fixture
def probe_ready(inputs_cache: Path, store: Store) -> None:
    guest_or_skip("probe", store)


def test_a_guest_failing_on_alternate_boots_is_flaky(probe_ready: None, project: Project,
                                                     series_rom: Path) -> None:
    said: list[str] = []
    guest = AlternatingProbe(project.store, seed=1)
    results = run_tests(project, (), rom=series_rom, more_guests=[guest], accel="tcg", progress=said.append)
    assert [r.passed for r in results] == [False, True]  # the rerun stopped at the first pass
    assert len({r.run_dir for r in results}) == 2  # each boot keeps its own artifacts
    found = flakes(results)
    assert list(found) == [("pc", "probe")]
    assert found["pc", "probe"].describe().startswith("FLAKY: 1 pass, 1 FAIL on ROM")
    assert any(line.startswith("pc/probe: FLAKY: 1 pass, 1 FAIL") for line in said), said
    with project.store.results() as db:
        shown = "\n".join(status_lines(project, project.series("gpxe-virtio-blk"), db))
    assert "FLAKY" in shown and "pc/probe: FLAKY: 1 pass, 1 FAIL" in shown, shown


def test_the_seed_decides_a_first_boot_that_passes_is_not_booted_again(probe_ready: None, project: Project,
                                                                        series_rom: Path) -> None:
    results = run_tests(project, (), rom=series_rom, more_guests=[AlternatingProbe(project.store, seed=0)],
                        accel="tcg", progress=lambda _: None)
    assert [r.passed for r in results] == [True] and not flakes(results)


def test_a_cell_failing_every_boot_is_a_fail(probe_ready: None, project: Project, base_rom: Path) -> None:
    said: list[str] = []
    results = run_tests(project, ["probe"], rom=base_rom, reruns=1, accel="tcg", progress=said.append)
    assert [r.passed for r in results] == [False, False] and not flakes(results)
    assert any(line.startswith("booting again (1 of 1) what failed: ") and "probe" in line for line in said), said
