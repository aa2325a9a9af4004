"""What changed in the logs: volatile parts (tokens, times, addresses, counts) never make a difference;
a failing run is compared with the last passing run of its cell, in the terminal and in the report's data."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.guests import guest_or_skip

from patchkit.project import Project
from patchkit.report.data import matrix
from patchkit.store import Store
from patchkit.triage.logdiff import first_divergence, normalise
from patchkit.validate import run_tests

PASSING = "\x1b[0mgPXE> sanboot virtio_blk:PCI00:04.0\r\nBooted at 0x7c00 in 1.25 s\nPATCHKIT-PASS 27c4c3d3650f\n"


def test_volatile_parts_make_no_difference() -> None:
    other = PASSING.replace("0x7c00", "0x8000").replace("1.25", "0.75").replace("27c4c3d3650f", "9b1e00aa0c3d")
    assert first_divergence(normalise(PASSING), normalise(other), "serial.log") is None


def test_the_first_real_difference_is_named() -> None:
    failing = PASSING.replace("Booted at 0x7c00 in 1.25 s", "Boot failed")
    found = first_divergence(normalise(PASSING), normalise(failing), "serial.log")
    assert found is not None and found.line == 2
    assert found.describe() == "serial.log line 2: passing run 'Booted at 0x# in #.# s', this run 'Boot failed'"
    ended = first_divergence(normalise(PASSING), normalise(PASSING.split("\n")[0]), "serial.log")
    assert ended is not None and ended.describe().endswith("this run '(ended)'")


@pytest.mark.boot
def test_a_failing_run_is_compared_with_the_cells_last_pass(inputs_cache: Path, store: Store, project: Project,
                                                             series_rom: Path, base_rom: Path) -> None:
    guest_or_skip("probe", store)
    run_tests(project, ["probe"], rom=series_rom, accel="tcg", progress=lambda _m: None)
    said: list[str] = []
    [failed] = run_tests(project, ["probe"], rom=base_rom, accel="tcg", reruns=0, progress=said.append)
    [shown] = [line for line in said if line.startswith("pc/probe: what changed since the last pass")]
    assert "serial.log line " in shown and "this run 'Boot failed'" not in shown, shown
    with store.results() as db:
        m = matrix(project.series(None), db.for_revision(failed.key.series, failed.key.revision),
                   db.for_series(failed.key.series))
    since, found = m.changed["probe", "pc"]
    assert found and found[0].text == "serial.log" and since != Path(failed.run_dir).name
