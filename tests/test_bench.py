"""The benchmark's table, ratio, target and JSON code (no QEMU, no timed assertions)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` lives beside the package

from bench import coverage, figures, loop, matrix, report
from bench.boots import ROM, SEABIOS, BootSample
from patchkit.errors import PatchkitError
from patchkit.series.model import Config


def boot(guest: str, side: str, boot_s: float | None, passed: bool = True,
         throughput: dict[int, float] | None = None) -> BootSample:
    return BootSample(guest, side, passed, "ok" if passed else "sanboot returned", boot_s,
                      None if boot_s is None else boot_s + 2, throughput or {})


def test_median_and_ratio() -> None:
    assert report.median([3.0, 1.0, 2.0, 10.0, 2.5]) == 2.5
    assert report.median([]) is None
    assert report.ratio(3.0, 2.0) == 1.5
    assert report.ratio(None, 2.0) is None
    assert report.ratio(1.0, 0.0) is None


@pytest.mark.parametrize(("target", "value", "ratio", "verdict"), [
    (report.Target("ratio<=", 1.1), 1.0, 1.1, "PASS"),
    (report.Target("ratio<=", 1.1), 1.0, 1.11, "MISS"),
    (report.Target("ratio>=", 0.9), 1.0, 0.9, "PASS"),
    (report.Target("ratio>=", 0.9), 1.0, 0.89, "MISS"),
    (report.Target("value<", 20.0), 19.9, None, "PASS"),
    (report.Target("value<", 20.0), 20.0, None, "MISS"),
    (report.Target("ratio<=", 1.1), None, None, "n/a"),
])
def test_target_verdicts(target: report.Target, value: float | None, ratio: float | None, verdict: str) -> None:
    row = report.Row("k", "label", "s", value=value, ratio=ratio, target=target)
    assert row.verdict() == verdict


def test_boot_rows_use_medians_of_passing_runs_and_say_what_failed() -> None:
    samples = [boot("debian", ROM, b) for b in (5.0, 6.0, 5.5)] + [boot("debian", ROM, None, passed=False)]
    samples += [boot("debian", SEABIOS, b) for b in (5.0, 4.0, 5.0, 6.0)]
    boot_row, wall_row = figures.boot_rows(samples, ["debian"])
    assert (boot_row.value, boot_row.reference) == (5.5, 5.0)
    assert boot_row.ratio == pytest.approx(1.1)
    assert boot_row.verdict() == "PASS"
    assert "rom 3/4 ok (5-6 s)" in boot_row.note and "seabios 4/4 ok (4-6 s)" in boot_row.note
    assert "first failure (rom): sanboot returned" in boot_row.note
    assert (wall_row.value, wall_row.reference) == (7.5, 7.0)
    assert wall_row.verdict() == "PASS" and wall_row.target == figures.WALL_TARGET  # within 1.5x
    assert wall_row.note == ""
    retyped = [boot("probe", ROM, 1.0), boot("probe", ROM, 1.0), boot("probe", SEABIOS, 1.0)]
    retyped[0].retyped = True
    probe_wall = figures.boot_rows(retyped, ["probe"])[1]
    assert probe_wall.target is None and probe_wall.note == "gPXE's command retyped in 1 of 2 runs"


def test_without_the_rom_side_only_the_reference_is_shown() -> None:
    samples = [boot("freedos", SEABIOS, b) for b in (1.0, 1.2, 0.9)]
    row = figures.boot_rows(samples, ["freedos"])[0]
    assert row.value is None and row.reference == 1.0 and row.ratio is None
    assert row.verdict() == "n/a"
    assert report.cells(row)[1:6] == ("-", "1.00 s", "", "<= 1.10x", "n/a")


def test_throughput_rows_hold_the_127_sector_target() -> None:
    samples = [boot("probe", ROM, 3.0, throughput={1: 0.5, 127: 90.0}),
               boot("probe", SEABIOS, 3.0, throughput={1: 1.0, 127: 100.0})]
    rows = {r.key: r for r in figures.throughput_rows(samples)}
    assert rows["tput.1"].ratio == 0.5 and rows["tput.1"].target is None
    assert rows["tput.127"].ratio == pytest.approx(0.9) and rows["tput.127"].verdict() == "PASS"
    assert rows["tput.8"].value is None and rows["tput.8"].verdict() == ""
    assert rows["tput.127"].note == "rom 1/1 ok (90-90 MB/s); seabios 1/1 ok (100-100 MB/s)"


def test_loop_rows_give_each_stage_its_share() -> None:
    cold = loop.LoopRun({"vendor": 1.0, "apply": 1.0, "build": 6.0, "guests": 12.0}, passed={"debian": True})
    warm = [loop.LoopRun({"apply": 1.0, "build": build, "guests": 12.0}, passed={"debian": True, "probe": True})
            for build in (3.0, 2.0, 5.0)]
    by_key = {r.key: r for r in figures.loop_rows(cold, warm)}
    assert by_key["loop.cold"].value == 20.0 and by_key["loop.cold"].verdict() == ""
    assert by_key["loop.cold.build"].ratio == pytest.approx(0.3)
    assert report.cells(by_key["loop.cold.build"])[1:4] == ("6.00 s", "", "30%")
    assert by_key["loop.warm"].label == "warm: 1-line driver change, the median of 3"
    assert by_key["loop.warm"].value == 16.0 and by_key["loop.warm"].verdict() == "MISS"  # target: under 10 s
    assert by_key["loop.warm.build"].value == 3.0  # the median loop's own stages
    assert by_key["loop.warm"].note == "2 guests passed"
    assert by_key["loop.floor"].verdict() == "n/a" and "loop.gap" not in by_key  # no floor measured


def test_a_loop_with_failed_guests_gets_no_verdict_and_a_missing_loop_is_na() -> None:
    warm = loop.LoopRun({"build": 3.0, "guests": 2.0}, passed={"debian": False, "probe": True})
    row = {r.key: r for r in figures.loop_rows(None, [warm])}["loop.warm"]
    assert row.value == 5.0 and row.verdict() == ""
    assert row.note.startswith("guests failed: debian")
    missing = figures.loop_rows(None, [])
    assert [r.key for r in missing] == ["loop.cold", "loop.warm", "loop.floor"]
    assert missing[1].value is None and missing[1].verdict() == "n/a"
    assert missing[2].verdict() == "n/a"


def rom_boot(post: float, sanboot: float, success: float) -> dict[str, float]:
    return {"gpxe_post": post, "sanboot": sanboot, "boot_sector": sanboot + 0.02, "success": success}


def test_the_warm_loop_against_its_floor_and_what_separates_them() -> None:
    warm = loop.LoopRun({"apply": 0.5, "build": 2.0, "guests": 7.0}, passed={"debian": True, "freedos": True},
                        timings={"debian": rom_boot(0.3, 0.8, 6.5), "freedos": rom_boot(0.3, 0.7, 1.7)})
    native = {"debian": {"boot_sector": 0.2, "success": 5.5}, "freedos": {"boot_sector": 0.2, "success": 1.1}}
    floor = loop.Floor(6.0, {"debian": True, "freedos": True}, native)
    assert floor.slowest == ("debian", 5.5)
    rows = figures.loop_rows(None, [warm], [floor])
    by_key = {r.key: r for r in rows}
    assert by_key["loop.floor"].value == 9.5 and by_key["loop.floor"].reference == 5.5
    assert by_key["loop.floor"].ratio == pytest.approx(9.5 / 5.5) and by_key["loop.floor"].verdict() == "MISS"
    gap = by_key["loop.gap"]
    assert gap.value == pytest.approx(9.5 - 5.5)
    parts = {r.label.strip(): r.value for r in rows if r.key.startswith("loop.gap.")}
    assert parts == pytest.approx({"apply": 0.5, "build": 2.0, "gPXE banner, prompt, typing (debian)": 0.6,
                                   "debian's boot through the ROM vs the floor": 0.4,
                                   "run overhead (disks, QEMU start/stop, checks)": 0.5})
    others = [loop.LoopRun({**warm.stages, "build": build}, passed=warm.passed, timings=warm.timings)
              for build in (4.5, 0.0)]
    median = {r.key: r for r in figures.loop_rows(None, [others[0], warm, others[1]], [floor] * 3)}
    assert median["loop.floor"].value == 9.5 and median["loop.warm.build"].value == 2.0
    assert median["loop.floor"].note.endswith("3 loops: 1.36-2.18x")
    failed = loop.Floor(6.0, {"debian": True, "freedos": False}, floor.timings)
    assert failed.slowest is None
    assert "loop.floor" in {r.key for r in figures.loop_rows(None, [warm], [failed])}  # no figures, no gap
    assert "loop.gap" not in {r.key for r in figures.loop_rows(None, [warm], [failed])}


def config(name: str, guests: int = 1) -> Config:
    return Config(name, tuple(f"g{n}" for n in range(guests)))


def test_the_matrix_grows_by_powers_of_two_of_cells_up_to_the_whole() -> None:
    configs = [config("pc", 3), *(config(f"c{n}") for n in range(1, 11))]
    steps = [[c.name for c in step] for step in matrix.growth_steps(configs)]
    assert [len(step) for step in steps] == [1, 2, 4, 8, 11]
    assert steps[0] == ["c1"] and steps[-1][-1] == "pc"


def test_matrix_rows_compare_the_jobs_and_cost_each_added_cell() -> None:
    runs = [matrix.MatrixRun(["pc"], 8, 1, 40.0, 8, 0), matrix.MatrixRun(["pc"], 8, 2, 24.0, 7, 1),
            matrix.MatrixRun(["c1"], 1, 2, 4.0, 1, 0), matrix.MatrixRun(["c1", "c2"], 4, 2, 10.0, 4, 0)]
    rows = {r.key: r for r in figures.matrix_rows(runs)}
    assert rows["matrix.jobs1"].value == 40.0 and rows["matrix.jobs1"].ratio is None
    assert rows["matrix.jobs2"].reference == 40.0 and rows["matrix.jobs2"].ratio == pytest.approx(0.6)
    assert rows["matrix.jobs2"].note == "7 passed, 1 failed"
    assert [k for k in rows if k.startswith("matrix.size")] == ["matrix.size1", "matrix.size4", "matrix.size8"]
    assert rows["matrix.size4"].note == "2.50 s per cell; +2.00 s per cell added since 1; 4 passed, 0 failed"
    assert rows["matrix.size8"].note.startswith("3.00 s per cell; +3.50 s per cell added since 4")


def test_size_row_states_the_cost() -> None:
    row = figures.size_row(71680, 69632)
    assert row.ratio == pytest.approx(71680 / 69632)
    assert row.note == "cost +2,048 B (+2.0 KiB)"
    assert report.cells(row)[1:3] == ("71,680 B", "69,632 B")
    assert figures.size_row(None, None).note == ""


def test_table_has_one_header_sections_and_aligned_columns() -> None:
    rows = figures.boot_rows([boot("debian", ROM, 6.0), boot("debian", SEABIOS, 5.0)], ["debian"])
    rows.append(figures.size_row(100, 90))
    text = report.render_table(rows, [("boot", 0), ("size", 2)])
    lines = text.splitlines()
    assert lines[0].startswith("measurement") and "result" in lines[0]
    assert lines[2] == "[boot]" and lines[5] == "[size]"
    assert "1.20x" in lines[3] and "MISS" in lines[3]
    bars = {line.index("|") for line in lines if "|" in line}
    assert len(bars) == 1  # the first column has one width


def test_json_round_trip_and_deltas(tmp_path: Path) -> None:
    old = figures.boot_rows([boot("debian", ROM, 6.0), boot("debian", SEABIOS, 5.0)], ["debian"])
    old += figures.loop_rows(loop.LoopRun({"build": 30.0}), [loop.LoopRun({"build": 2.0})])
    sections = [("boot", 0), ("loop", 2)]
    path = tmp_path / "results" / "old.json"
    report.save(path, report.to_json(old, sections, {"date": "d"}, ["the freedos guest: run `x`"]))
    rows, loaded_sections, meta, missing = report.load(path)
    assert rows == old and loaded_sections == sections
    assert meta == {"date": "d"} and missing == ["the freedos guest: run `x`"]

    new = figures.boot_rows([boot("debian", ROM, 5.0), boot("debian", SEABIOS, 5.0)], ["debian"])
    deltas = report.render_deltas(rows, new).splitlines()
    boot_line = next(line for line in deltas if line.startswith("debian: boot start"))
    assert "6.00 s" in boot_line and "5.00 s" in boot_line and "-16.7%" in boot_line
    assert "1.20x" in boot_line and "1.00x" in boot_line
    assert deltas[-1].startswith("not measured this time: cold:")


def test_unknown_json_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown results format"):
        report.from_json({"format": 99})


def test_warm_edit_adds_one_line_to_the_drivers_last_hunk() -> None:
    diff = ("diff --git a/src/a.c b/src/a.c\n--- a/src/a.c\n+++ b/src/a.c\n@@ -1,2 +1,3 @@\n x\n+y\n z\n"
            f"diff --git a/{loop.DRIVER} b/{loop.DRIVER}\nnew file mode 100644\n--- /dev/null\n"
            f"+++ b/{loop.DRIVER}\n@@ -0,0 +1,2 @@\n+int a;\n+int b;\n")
    edited = loop.add_line(diff, loop.DRIVER, "/* c */").splitlines()
    assert "@@ -1,2 +1,3 @@" in edited  # the other file is untouched
    at = edited.index("@@ -0,0 +1,3 @@")
    assert edited[at + 1:] == ["+/* c */", "+int a;", "+int b;"]
    with pytest.raises(PatchkitError, match=r"no section for src/other\.c"):
        loop.add_line(diff, "src/other.c", "x")


def test_the_coverage_table_compares_medians_per_cell() -> None:
    def run(traced: bool, boot_s: float) -> dict[str, Any]:
        cell = {"passed": True, "boot_s": boot_s, "log_bytes": 2048 if traced else None}
        if traced:
            cell["map_s"] = 0.25
        return {"coverage": traced, "wall_s": boot_s + 1, "cells": {"pc/freedos": cell}}

    rows = coverage.table([run(False, 2.0), run(True, 3.0), run(True, 2.0), run(False, 2.0)])
    assert rows[1].split() == ["pc/freedos", "2.00", "s", "2.50", "s", "1.25x", "2,048", "B", "0.25", "s"]
    assert rows[2].split()[:4] == ["whole", "run", "(1", "cells)"]
