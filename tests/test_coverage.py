"""Coverage of the series' changed lines (issue 19).

Without boots: the changed lines follow a line through later patches; --coverage is
refused where it cannot be measured. With two boots of a fixture series (the series
plus a patch adding a gPXE command nothing types and a PCI driver only q35's host
bridge matches): the command's lines are reported not run, the driver's probe ran in
the q35 cell only (the pc cell is its negative control), gPXE's own lines never count,
and the mapping puts the probe function's first instruction on its own first statement's line.
"""

from __future__ import annotations

import difflib
import shutil
import tomllib
from pathlib import Path

import pytest
import tomli_w
from fixtures.guests import guest_or_skip
from fixtures.roms import PROJECT_ROOT, SERIES

from patchkit.coverage.changes import changed_lines
from patchkit.coverage.collect import LineCoverage, SeriesCoverage, collect, line_ranges, report_lines
from patchkit.coverage.debuginfo import DebugInfo
from patchkit.coverage.gate import NOTES, coverage_problems, read_notes
from patchkit.coverage.result import load
from patchkit.coverage.trace import TRACE_LOG, read_trace
from patchkit.errors import PatchkitError, SeriesError
from patchkit.git.apply import apply_series
from patchkit.mailer import gate as mail_gate
from patchkit.project import Project
from patchkit.report.page import highlight_diff
from patchkit.series.io import load_series, save_series
from patchkit.series.model import CoverageGate, Patch, Series
from patchkit.store import Store
from patchkit.validate import run_tests

DRIVER = "src/drivers/block/virtio-blk.c"
FIXTURE_CODE = """
/* patchkit's coverage fixture: a command nobody types, a driver only q35 probes */
#include <gpxe/command.h>

static volatile unsigned int coverage_fixture_count;

static int coverage_fixture_exec ( int argc, char **argv __unused ) {
\tcoverage_fixture_count += argc;
\tprintf ( "coverage fixture\\n" );
\treturn 0;
}

struct command coverage_fixture_command __command = {
\t.name = "coverage-fixture",
\t.exec = coverage_fixture_exec,
};

static int coverage_fixture_probe ( struct pci_device *pci __unused,
\t\t\t\t    const struct pci_device_id *id __unused ) {
\tcoverage_fixture_count++;
\treturn -ENODEV;
}

static void coverage_fixture_remove ( struct pci_device *pci __unused ) {
\tcoverage_fixture_count--;
}

static struct pci_device_id coverage_fixture_ids[] = {
\tPCI_ROM ( 0x8086, 0x29c0, "q35-host", "Q35 host bridge", 0 ),
};

struct pci_driver coverage_fixture_driver __pci_driver = {
\t.ids = coverage_fixture_ids,
\t.id_count = 1,
\t.probe = coverage_fixture_probe,
\t.remove = coverage_fixture_remove,
};
"""


def patch(diff: str, subject: str = "[test] A change") -> Patch:
    return Patch(subject, "A U Thor", "author@example.org", "Tue, 26 Jan 2010 12:00:00 +0000", "", diff,
                 "0001-x.patch")


def test_changed_lines_follow_a_line_through_later_patches() -> None:
    first = patch("diff --git a/f.c b/f.c\n--- a/f.c\n+++ b/f.c\n@@ -1,2 +1,4 @@\n a\n+one\n+two\n b\n")
    second = patch("diff --git a/f.c b/f.c\n--- a/f.c\n+++ b/f.c\n@@ -1,4 +1,5 @@\n+zero\n a\n one\n-two\n+TWO\n b\n")
    lines = changed_lines([first, second])
    assert [(c.line, c.patch, c.patch_line, c.code) for c in lines] == [(1, 2, 1, "zero"), (3, 1, 2, "one"),
                                                                         (4, 2, 4, "TWO")]


def test_line_ranges_group_consecutive_lines() -> None:
    lines = [LineCoverage("d/f.c", n, 1, n, "x;", ()) for n in (2, 3, 5)] + [LineCoverage("g.c", 1, 1, 1, "y;", ())]
    assert line_ranges(lines) == "f.c:2-3,5; g.c:1"


def test_coverage_is_refused_on_a_cluster(project: Project) -> None:
    with pytest.raises(PatchkitError, match="--coverage") as caught:
        run_tests(project, ["freedos"], cluster="tcp://127.0.0.1:9", coverage=True)
    assert caught.value.hint is not None and "--cluster" in caught.value.hint


@pytest.fixture
def fixture_project(gpxe_mirror: Path, inputs_cache: Path, store: Store, tmp_path: Path) -> Project:
    """This project's series plus a fixture patch, with two configurations: pc and q35, FreeDOS on each."""
    root = tmp_path / "project"
    shutil.copytree(PROJECT_ROOT / "gpxe-tree", root / "gpxe-tree")
    shutil.copytree(PROJECT_ROOT / "series" / SERIES, root / "series" / SERIES)
    tree = apply_series(Project(root, store), SERIES).tree
    old = (tree / DRIVER).read_text().splitlines(keepends=True)
    diff = "".join(difflib.unified_diff(old, old + FIXTURE_CODE.splitlines(keepends=True), f"a/{DRIVER}",
                                        f"b/{DRIVER}"))
    (root / "series" / SERIES / "patches" / "0099-coverage-fixture.patch").write_text(
        "From: A U Thor <author@example.org>\nDate: Tue, 26 Jan 2010 12:00:00 +0000\n"
        "Subject: [test] Coverage fixture\n\nA command nobody types, a driver only q35 probes.\n---\n"
        f"diff --git a/{DRIVER} b/{DRIVER}\n{diff}")
    manifest = root / "series" / SERIES / "series.toml"
    data = tomllib.loads(manifest.read_text())
    data["patches"].append("0099-coverage-fixture.patch")
    data["guests"] = ["freedos"]
    data["configs"] = [{"name": "pc"}, {"name": "q35", "machine": "q35"}]
    data.pop("images", None)
    manifest.write_text(tomli_w.dumps(data))
    guest_or_skip("freedos", store)
    return Project(root, store)


@pytest.mark.boot
def test_the_matrix_reports_which_changed_lines_ran(fixture_project: Project) -> None:
    results = run_tests(fixture_project, ["freedos"], matrix=True, coverage=True)
    assert sorted((r.key.config, r.passed) for r in results) == [("pc", True), ("q35", True)]
    series = fixture_project.series(SERIES)
    with fixture_project.store.results() as db:
        measured = collect(db, series)
    assert measured is not None and measured.cells == ["pc/freedos", "q35/freedos"]
    tree = fixture_project.store.tree(SERIES)
    source = (tree / DRIVER).read_text().splitlines()

    def line_of(text: str) -> int:  # the fixture's (it ends the file)
        return max(n for n, line in enumerate(source, 1) if text in line)

    fixture = {c.line: c for c in measured.of_patch(len(series.patches))}
    # The command nobody types: its lines are reported not run, with their code.
    typed = fixture[line_of("coverage_fixture_count += argc")]
    assert typed.cells == ()
    text = "\n".join(report_lines(series, measured))
    assert f"not run  {DRIVER}:{typed.line}  coverage_fixture_count += argc;" in text
    # The probe only q35's host bridge matches: attributed to that cell only (pc is its negative control).
    probed = fixture[line_of("coverage_fixture_count++")]
    assert probed.cells == ("q35/freedos",)
    assert f"only q35/freedos ran: virtio-blk.c:{line_of('coverage_fixture_count++')}" in text
    # gPXE's own code ran (PCI probing) but is none of the series' lines.
    changed = {(c.path, c.line) for c in changed_lines(series.patches)}
    assert {(c.path, c.line) for c in measured.lines} <= changed
    run = Path(next(r.run_dir for r in results if r.key.config == "q35"))
    cell = load(run)
    assert cell is not None and cell.ran.get("src/drivers/bus/pci.c")
    assert not any(path == "src/drivers/bus/pci.c" for path, _ in changed)
    # The mapping: the probe's first instruction (no prologue at -Os) is on its first statement's line, and
    # q35 ran that instruction at one of the placements found; pc did not.
    debug = DebugInfo(Path(cell.elf), "src")
    assert Path(cell.elf).parent.parent == fixture_project.store.builds  # builds/<key>/<rom>.elf
    start = debug.functions["coverage_fixture_probe"]
    row = debug.row_at(start)
    assert row is not None and (row.path, row.line) == (DRIVER, probed.line)
    trace = read_trace(run / TRACE_LOG)
    assert any(start + p.offset in trace for p in cell.placements)
    pc_run = Path(next(r.run_dir for r in results if r.key.config == "pc"))
    pc_cell = load(pc_run)
    assert pc_cell is not None
    assert not any(start + p.offset in read_trace(pc_run / TRACE_LOG) for p in pc_cell.placements)
    assert all(p.matched >= 0.95 * p.logged for p in cell.placements)


def measured(*cells: tuple[str, ...]) -> SeriesCoverage:
    """A revision's coverage of lines 1.. of src/f.c (patch 1), line n run by ``cells[n - 1]``."""
    return SeriesCoverage("0" * 64, [LineCoverage("src/f.c", n, 1, n, f"x{n};", ran)
                                     for n, ran in enumerate(cells, 1)], ["pc/freedos", "q35/probe"], [])


def gated(tmp_path: Path, table: str, notes: str | None = None) -> Series:
    """This project's series with ``table`` appended to its manifest (and coverage notes), loaded."""
    root = tmp_path / SERIES
    shutil.copytree(PROJECT_ROOT / "series" / SERIES, root)
    (root / "series.toml").write_text((root / "series.toml").read_text() + "\n" + table)
    if notes is not None:
        (root / NOTES).write_text(notes)
    return load_series(root)


def test_the_coverage_gate_takes_a_minimum_and_reasons(tmp_path: Path) -> None:
    series = gated(tmp_path, "[coverage]\nmin = 60\nreasons = true\n",
                   "# why lines do not run\nsrc/f.c:2 # not run: out-of-memory path\n")
    assert series.coverage == CoverageGate(60, True)
    assert coverage_problems(series, measured(("pc/freedos",), (), ("q35/probe",))) == []
    problems = coverage_problems(series, measured(("pc/freedos",), (), ()))
    assert problems == ["the matrix ran 1 of 3 changed lines (2 cells): below the manifest's [coverage] min = 60%",
                        f"1 changed line(s) no cell ran have no reason in {NOTES}: src/f.c:3"]
    assert coverage_problems(series, None)[0].startswith("the manifest has a [coverage] gate")
    text = report_lines(series, measured(("pc/freedos",), (), ()), read_notes(series))
    assert "   not run  src/f.c:2  x2;  # out-of-memory path" in text
    save_series(series)
    assert load_series(series.path or tmp_path).coverage == CoverageGate(60, True)


@pytest.mark.parametrize(("table", "notes", "message"), [
    ("[coverage]\nmin = 101\n", None, "series.toml:.*min is a percentage"),
    ("[coverage]\nreason = true\n", None, "unknown \\[coverage\\] key 'reason'"),
    ("[coverage]\nreasons = true\n", "src/f.c:2 out-of-memory\n", f"{NOTES}:1: not a coverage note"),
])
def test_a_bad_coverage_gate_names_its_place(tmp_path: Path, table: str, notes: str | None, message: str) -> None:
    with pytest.raises(SeriesError, match=message):
        coverage_problems(gated(tmp_path, table, notes), measured(()))


def test_the_cover_and_the_report_show_the_coverage() -> None:
    series = load_series(PROJECT_ROOT / "series" / SERIES)
    cover = mail_gate.tested_section(series, "0" * 64, {}, mail_gate.GateResult([], None),
                                     measured(("pc/freedos",), ()).figure())
    assert cover.endswith("\nCoverage: the matrix ran 1 of 2 changed lines (2 cells).")
    diff = patch("diff --git a/src/f.c b/src/f.c\n--- a/src/f.c\n+++ b/src/f.c\n@@ -1,1 +1,3 @@\n a\n+x2;\n+x3;\n")
    marks = {(c.path, c.patch_line): c for c in measured((), ("pc/freedos", "q35/probe"), ()).lines}
    html = highlight_diff(diff, marks).splitlines()
    assert html[-2].endswith('<span class="cov ran" title="pc/freedos, q35/probe">ran: pc/freedos, q35/probe</span>')
    assert html[-1].endswith("<span class=\"cov miss\">not run</span>")
