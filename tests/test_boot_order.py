"""The order a run starts its boots in: the longest first, as long as each cell's newest boot took."""

from __future__ import annotations

from pathlib import Path

from patchkit import store
from patchkit.guests import get_guest
from patchkit.matrix import Cell
from patchkit.series.model import Config
from patchkit.store import ResultKey, Results, Store
from patchkit.validate import longest_first


def recorded(guest: str, config: str, passed: bool, total: float, created: float) -> store.TestResult:
    key = ResultKey("s", "rev", "rom", guest, "img", "7.2", "tcg", config)
    return store.TestResult(key=key, passed=passed, reason="", run_dir="/r", timings={"total": total},
                            created=created)


def test_durations_are_the_newest_passing_boots_per_cell(tmp_path: Path) -> None:
    with Results(tmp_path / "results.sqlite") as results:
        results.record(recorded("probe", "pc", True, 4.0, created=1.0))
        results.record(recorded("probe", "pc", True, 3.0, created=2.0))
        results.record(recorded("probe", "pc", False, 0.5, created=3.0))  # a failure ends early: not the figure
        results.record(recorded("debian", "q35", False, 2.0, created=1.0))
        assert results.durations("s") == {("pc", "probe"): 3.0, ("q35", "debian"): 2.0}
        assert results.durations("other") == {}


def test_the_longest_boots_start_first_and_cells_never_booted_by_their_timeout(tmp_path: Path) -> None:
    pc, q35 = Config("pc", ("freedos", "debian", "probe")), Config("q35", ("probe",))
    cache = Store(tmp_path)
    cells = [Cell(pc, get_guest("freedos", cache)), Cell(pc, get_guest("debian", cache)),
             Cell(pc, get_guest("probe", cache)), Cell(q35, get_guest("probe", cache))]
    took = {("pc", "freedos"): 2.0, ("pc", "debian"): 12.0, ("pc", "probe"): 4.0, ("q35", "probe"): 4.0}
    assert [c.name for c in longest_first(cells, took)] == ["pc/debian", "pc/probe", "q35/probe", "pc/freedos"]
    del took["pc", "freedos"]  # never booted: its timeout (90 s) puts it first
    assert longest_first(cells, took)[0].name == "pc/freedos"
