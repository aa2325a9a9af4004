"""`patchkit report` opened in real headless Chromium: the matrix and the run screenshots render.

The runs' screenshots are small PNGs of one colour each; Chromium's screenshot of the
page must contain the colours of the newest run of every cell and none of the colour
of a run that is only in a cell's history (a link, not an image): the negative control
that the pixel check sees what the page shows. The page screenshot is kept in
``$PATCHKIT_TEST_ARTIFACTS`` (default ``tests/artifacts/``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from fixtures.review import BOB, SentSeries, quote, reply

from patchkit.report.data import save_builds
from patchkit.review.thread import import_replies
from patchkit.run import run
from patchkit.store import ResultKey, TestResult as StoredResult  # a Test* name pytest would collect

ARTIFACTS = Path(os.environ.get("PATCHKIT_TEST_ARTIFACTS") or Path(__file__).parent / "artifacts")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
FREEDOS, DEBIAN, PROBE_FAIL, OLD = (255, 0, 255), (255, 160, 0), (0, 90, 255), (0, 255, 255)


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour RGB PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\0" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes): width, height, unfiltered rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 3
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * channels, [], bytearray(width * channels)
    for y in range(height):
        ftype, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], (prev[i - channels] if i >= channels else 0)
            if ftype == 1:
                line[i] = (line[i] + a) & 255
            elif ftype == 2:
                line[i] = (line[i] + b) & 255
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line) if channels == 3 else bytes(v for j, v in enumerate(line) if j % 4 != 3))
        prev = line
    return width, height, rows


def count(rows: list[bytes], rgb: tuple[int, int, int]) -> int:
    needle = bytes(rgb)
    return sum(sum(1 for i in range(0, len(row), 3) if row[i:i + 3] == needle) for row in rows)


def _run_dir(root: Path, name: str, colour: tuple[int, int, int] | None, passed: bool) -> str:
    d = root / name
    d.mkdir(parents=True)
    if colour is not None:
        (d / ("end.png" if passed else "failure.png")).write_bytes(png(64, 40, colour))
    (d / "serial.log").write_text(f"{name}: serial output\n")
    (d / "screen.txt").write_text(f"{name}: screen\n")
    return str(d)


def _record(ss: SentSeries, guest: str, run_dir: str, passed: bool, created: float) -> None:
    s = ss.mp.series()
    key = ResultKey(s.name, s.revision_hash(), "ab" * 32, guest, "cd" * 32, "7.2.0", "tcg")
    with ss.mp.store.results() as results:
        results.record(StoredResult(key, passed, "marker seen" if passed else "no marker within 60 s", run_dir,
                                        {"success": 2.5} if passed else {}, 65536, s.version, created))


@pytest.fixture
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "chromium-headless-shell"):
        if path := shutil.which(name):
            return path
    pytest.skip("chromium is missing: apt-get install chromium (ci/setup.sh installs it)")


def test_report_of_v3_renders_matrix_and_screenshots_in_chromium(sent_series: SentSeries, tmp_path: Path,
                                                                 chromium: str) -> None:
    ss = sent_series
    bob = reply(ss.sent[1], BOB, f"{quote(ss.sent[1], slice(0, 2))}\n\nWhy?\n\nReviewed-by: {BOB}\n")
    import_replies(ss.mp.store, [ss.mbox(tmp_path / "r.mbox", [bob])], ["demo"])
    for args in (("version", "new", "--changelog", "- v3"), ("trailers", "--update")):
        status, said = ss.mp.cli(*args)
        assert status == 0, said
    runs = tmp_path / "runs"
    _record(ss, "freedos", _run_dir(runs, "1-freedos-old", OLD, True), True, 1000.0)  # history only
    _record(ss, "freedos", _run_dir(runs, "2-freedos", FREEDOS, True), True, 2000.0)
    _record(ss, "debian", _run_dir(runs, "3-debian", DEBIAN, True), True, 2100.0)
    _record(ss, "probe", _run_dir(runs, "4-probe", PROBE_FAIL, False), False, 2200.0)
    _record(ss, "keepsan", _run_dir(runs, "5-keepsan", None, True), True, 2300.0)  # a guest beyond the manifest
    s = ss.mp.series()
    save_builds(ss.mp.store, s.name, s.revision_hash(),
                [(0, "base", {"bin/x.rom": 60000}, 3, []),
                 (1, s.patches[0].filename, {"bin/x.rom": 60000}, 3, []),
                 (2, s.patches[1].filename, {"bin/x.rom": 61440}, 4, ["virtio-blk.c:3: warning: unused variable 'x'"])])
    bench = ss.mp.root / "bench" / "results"
    bench.mkdir(parents=True)
    (bench / "20261126-120000.json").write_text(json.dumps({"format": 1, "meta": {}, "missing": [], "sections": [],
        "rows": [{"key": "boot.debian", "label": "boot debian", "unit": "s", "value": 1.1, "reference": 1.0,
                  "ratio": 1.1, "share": False, "target": {"kind": "ratio<=", "limit": 1.1}, "note": "",
                  "samples": {}, "verdict": "PASS"}]}))

    out = tmp_path / "report"
    status, said = ss.mp.cli("report", "demo", "--rev", "v3", "-o", out)
    assert status == 0, said
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # nothing fetched
    assert "tab-size:8" in html  # diffs' tabs at 8 columns, as git and gPXE's sources mean them

    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = run([chromium, *flags, "--dump-dom", (out / "index.html").as_uri()], timeout=120).stdout.decode()
    assert "<h1>demo v3</h1>" in dom
    cells = {guest: verdict for verdict, guest in re.findall(r'<td class="(\w+)" id="cell-pc-\w+" '
                                                             r'data-guest="(\w+)" data-config="pc"',
                                                             dom)}
    assert cells == {"freedos": "pass", "debian": "pass", "probe": "fail", "keepsan": "pass"}
    assert dom.count('<img class="shot"') == 3 and "no screenshot" in dom
    assert "1 earlier run(s)" in dom and "runs/1-freedos-old/end.png" in dom
    assert 'class="add">+static int line7 = 7;</span>' in dom and "warning delta: <b>+1</b>" in dom
    assert f"Reviewed-by: {BOB.replace('<', '&lt;').replace('>', '&gt;')}" in dom
    assert "Range-diff v2..v3" in dom and "boot debian" in dom

    # The summary grid first, each cell a mark linking to its details; configurations are the matrix's rows.
    assert dom.index('<table class="grid">') < dom.index('id="cover"') < dom.index('<table class="matrix">')
    assert '<a href="#cell-pc-probe" title="probe on pc: fail">✗' in dom and 'id="cell-pc-probe"' in dom
    assert "<tr><th>configuration</th><th scope=\"col\">freedos</th>" in dom
    first = tmp_path / "first-screen.png"
    run([chromium, *flags, "--window-size=1280,800", f"--screenshot={first}", (out / "index.html").as_uri()],
        timeout=120)
    width, height, rows = pixels(first.read_bytes())
    assert (width, height) == (1280, 800)
    assert count(rows, (0x2E, 0x7D, 0x32)) > 100 and count(rows, (0xC6, 0x28, 0x28)) > 100  # on the first screen
    assert (out / "index.html").stat().st_mode & 0o777 == 0o644

    # No horizontal scroll at 1280 wide: a copy of the page writes its laid-out width into the DOM;
    # the control, a copy with a 2000-pixel block, measures wider.
    def laid_out_width(extra: str) -> int:
        measured = out / "measured.html"
        measured.write_text(html.replace("</body>", f"{extra}<script>document.body.dataset.scrollWidth = "
                                                    "document.documentElement.scrollWidth;</script></body>"),
                            encoding="utf-8")
        dom = run([chromium, *flags, "--window-size=1280,800", "--dump-dom", measured.as_uri()],
                  timeout=120).stdout.decode()
        found = re.search(r'data-scroll-width="(\d+)"', dom)
        assert found is not None, dom[-500:]
        return int(found[1])

    assert laid_out_width("") <= 1280
    assert laid_out_width('<div style="width:2000px">wide</div>') > 1280

    shot = tmp_path / "page.png"
    run([chromium, *flags, "--window-size=1200,2000", f"--screenshot={shot}", (out / "index.html").as_uri()],
        timeout=120)
    width, height, rows = pixels(shot.read_bytes())
    assert (width, height) == (1200, 2000)
    shown = {name: count(rows, rgb) for name, rgb in
             [("freedos", FREEDOS), ("debian", DEBIAN), ("probe", PROBE_FAIL), ("old", OLD)]}
    assert shown["freedos"] > 20000 and shown["debian"] > 20000 and shown["probe"] > 20000, shown
    assert shown["old"] == 0, shown
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "report-demo-v3.png")


def test_matrix_reads_the_config_field_when_results_have_one(sent_series: SentSeries) -> None:
    # Results recorded before configurations existed land in "pc"; a key with `config` gets its own column.
    from dataclasses import replace

    from patchkit.report.data import matrix

    s = sent_series.mp.series()
    plain = ResultKey(s.name, "r", "", "freedos", "", "7.2.0", "tcg")
    results = [StoredResult(replace(plain, config="q35"), False, "no marker", "", created=3.0),
               StoredResult(plain, True, "marker seen", "", created=2.0),
               StoredResult(plain, False, "no marker", "", created=1.0)]
    m = matrix(s, results)
    assert m.configs == ["pc", "q35"] and m.guests == ["freedos", "probe"]
    assert [r.result.passed for r in m.cells[("freedos", "pc")]] == [True, False]  # newest first
    assert [r.config for r in m.cells[("freedos", "q35")]] == ["q35"]
    assert ("probe", "pc") in m.planned and ("probe", "q35") not in m.planned  # an empty q35 cell shows "-"


def test_the_matrix_marks_a_flaky_cell_and_what_changed_in_a_failing_one(sent_series: SentSeries,
                                                                          tmp_path: Path) -> None:
    from patchkit.report.data import matrix
    from patchkit.report.page import _matrix

    s = sent_series.mp.series()
    runs = {}
    logs = {"passed": "gPXE> sanboot\nPROBE start drive 0x80\n", "failed": "gPXE> sanboot\nBoot failed\n"}
    for name, text in logs.items():
        runs[name] = tmp_path / name
        runs[name].mkdir()
        (runs[name] / "serial.log").write_text(text)
    freedos = ResultKey(s.name, "r", "ab" * 32, "freedos", "", "7.2.0", "tcg")
    probe = ResultKey(s.name, "r", "ab" * 32, "probe", "", "7.2.0", "tcg")
    results = [StoredResult(freedos, True, "marker seen", "", created=3.0),
               StoredResult(freedos, False, "no marker", "", created=2.0),
               StoredResult(probe, False, "no marker", str(runs["failed"]), created=5.0)]
    earlier = StoredResult(replace_revision(probe, "q"), True, "marker seen", str(runs["passed"]), created=4.0)
    m = matrix(s, results, [*results, earlier])
    assert list(m.flaky) == [("freedos", "pc")]
    since, [found] = m.changed["probe", "pc"]
    assert since == "passed" and found.describe() == ("serial.log line 2: passing run 'PROBE start drive 0x#', "
                                                      "this run 'Boot failed'")
    html = _matrix(m)
    assert '<td class="flaky"' in html and "FLAKY: 1 pass, 1 FAIL on ROM abababababab (FAIL pass)" in html
    assert "what changed since the last pass (passed)" in html


def replace_revision(key: ResultKey, revision: str) -> ResultKey:
    from dataclasses import replace

    return replace(key, revision=revision)
