"""The report as one static HTML file plus the run artifacts it links, copied beside it.

Written to a directory: ``index.html`` (inline CSS, no script, no external resource)
and ``runs/<id>/`` with each shown run's screenshot, serial.log and screen.txt, so the
directory can be opened offline, archived or mailed as it is. A matrix cell shows its
newest run; the earlier ones are behind a ``<details>`` so the page stays readable
with many runs.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from html import escape
from pathlib import Path

from patchkit.coverage.collect import LineCoverage
from patchkit.report.data import Matrix, ReportData, Run
from patchkit.review.comments import diff_lines
from patchkit.series.model import Patch
from patchkit.store import atomic_write
from patchkit.triage.flaky import Flake
from patchkit.triage.logdiff import Divergence

CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:78rem;padding:0 1rem 3rem;color:#1d1d1f}
h1{margin:1rem 0 .2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
nav a{margin-right:1rem}.meta{color:#666;font-size:90%}
pre{background:#f6f8fa;padding:.6rem;overflow-x:auto;font:13px/1.35 ui-monospace,monospace;border-radius:4px;
tab-size:8;-moz-tab-size:8}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.35rem .5rem;vertical-align:top;text-align:left}
.wide{overflow-x:auto}table.matrix td{min-width:12rem}
table.grid td,table.grid th{padding:.1rem .35rem;font-size:12px;white-space:nowrap}
table.grid a{text-decoration:none;color:inherit}table.grid td.pass{background:#2e7d32;color:#fff}
table.grid td.fail{background:#c62828;color:#fff}table.grid td.flaky{background:#f9a825}
td.pass{background:#e9f7ec}td.fail{background:#fdecec}td.flaky{background:#fff4d6}td.none{color:#888}
.verdict{font-weight:700}td.pass .verdict{color:#176f2c}td.fail .verdict{color:#b3261e}
img.shot{display:block;width:240px;max-width:100%;image-rendering:pixelated;border:1px solid #999;margin:.3rem 0}
.diff .add{color:#176f2c;background:#e6ffec}.diff .del{color:#b3261e;background:#ffebe9}
.diff .hunk{color:#6639ba}.diff .file{font-weight:700}.diff .ln{color:#999;user-select:none}
article.patch{border:1px solid #ddd;border-radius:6px;padding:0 1rem 1rem;margin:1.2rem 0}
.trailers{color:#176f2c}.comment{border-left:3px solid #e0a800;padding-left:.6rem;margin:.6rem 0}
.comment.open{border-color:#b3261e}.quote{color:#555}details summary{cursor:pointer}
.cov{font-size:85%;margin-left:1.2rem;padding:0 .3rem;border-radius:3px}.cov.ran{color:#176f2c;background:#dff3e4}
.cov.miss{color:#fff;background:#b3261e}
"""


NAV = ("<nav><a href=\"#cover\">cover letter</a><a href=\"#matrix\">test matrix</a><a href=\"#patches\">patches</a>"
       "<a href=\"#range-diff\">range-diff</a><a href=\"#bench\">benchmark</a></nav></header>")


def write_report(data: ReportData, out: Path) -> Path:
    """Write ``out/index.html`` and copy the shown runs' artifacts under ``out/runs/``; the page's path."""
    out.mkdir(parents=True, exist_ok=True)
    for runs in data.matrix.cells.values():
        for run in runs:
            _copy_artifacts(run, out)
    page = out / "index.html"
    atomic_write(page, render(data))
    page.chmod(0o644)  # readable by others, as the copied artifacts beside it
    return page


def render(data: ReportData) -> str:
    """The whole page."""
    s = data.series
    title = f"{s.name} v{s.version}"
    info = s.version_info(s.version)
    sent = f" · sent {escape(info.sent)}" if info and info.sent else " · not sent"
    parts = [
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        (f"<header><h1>{escape(title)}</h1><p class=\"meta\">revision <code>{data.revision[:12]}</code> · base "
         f"<code>{escape(s.base[:12])}</code> ({escape(s.upstream)}){sent} · "
         f"report made {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}</p>"),
        NAV, _summary(data.matrix),
        _cover(data), _matrix(data.matrix), _patches(data), _range_diff(data), _bench(data),
        "</body></html>\n",
    ]
    return "\n".join(parts)


def _cover(data: ReportData) -> str:
    s = data.series
    review = ""
    if data.review is not None:
        review = _review_block(data, 0)
    return (f"<section id=\"cover\"><h2>Cover letter</h2><h3>{escape(s.cover_title or s.name)}</h3>"
            f"<pre>{escape(data.cover)}</pre>{review}</section>")


def _matrix(m: Matrix) -> str:
    if not m.cells:
        note = "<p class=\"meta\">no results for this revision (run <code>patchkit test</code>)</p>"
    else:
        note = f"<p class=\"meta\">{m.runs} run(s); each cell shows its newest run, earlier ones on demand</p>"
    if m.adhoc:
        note += (f"<p class=\"meta\">{m.adhoc} run(s) of your own images (<code>patchkit test --image</code>) are not "
                 "part of the series' matrix and are left out (<code>patchkit status</code> lists them)</p>")
    # Configurations as rows, guests as columns: 20 configurations do not fit side by side, a handful of guests do.
    head = "".join(f"<th scope=\"col\">{escape(g)}</th>" for g in m.guests)
    rows = []
    for config in m.configs:
        cells = "".join(_cell(guest, config, m.cells.get((guest, config), []), (guest, config) in m.planned,
                              m.flaky.get((guest, config)), m.changed.get((guest, config)))
                        for guest in m.guests)
        rows.append(f"<tr><th scope=\"row\">{escape(config)}</th>{cells}</tr>")
    return (f"<section id=\"matrix\"><h2>Test matrix</h2>{note}<div class=\"wide\"><table class=\"matrix\"><thead>"
            f"<tr><th>configuration</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>")


def _summary(m: Matrix) -> str:
    """Every cell as a coloured mark with its boot time, linking to its details in the matrix: one screen."""
    if not m.cells:
        return ""
    head = "".join(f"<th scope=\"col\">{escape(g)}</th>" for g in m.guests)
    rows = []
    for config in m.configs:
        marks = []
        for guest in m.guests:
            runs = m.cells.get((guest, config), [])
            if not runs:
                marks.append(f"<td class=\"none\">{'not tested' if (guest, config) in m.planned else ''}</td>")
                continue
            r = runs[0].result
            verdict = "flaky" if (guest, config) in m.flaky else "pass" if r.passed else "fail"
            boot = r.timings.get("success")
            shown = {"pass": "✓", "fail": "✗", "flaky": "~"}[verdict] + (f" {float(boot):.1f} s" if boot else "")
            marks.append(f"<td class=\"{verdict}\"><a href=\"#{_cell_id(guest, config)}\" "
                         f"title=\"{escape(guest)} on {escape(config)}: {verdict}\">{shown}</a></td>")
        rows.append(f"<tr><th scope=\"row\">{escape(config)}</th>{''.join(marks)}</tr>")
    return (f"<section id=\"summary\"><table class=\"grid\"><thead><tr><th>configuration</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></section>")


def _cell_id(guest: str, config: str) -> str:
    return escape(f"cell-{config}-{guest}")


def _cell(guest: str, config: str, runs: list[Run], planned: bool, flake: Flake | None,
          changed: tuple[str, list[Divergence]] | None) -> str:
    attrs = f"id=\"{_cell_id(guest, config)}\" data-guest=\"{escape(guest)}\" data-config=\"{escape(config)}\""
    if not runs:
        return f"<td class=\"none\" {attrs}>{'not tested' if planned else '-'}</td>"
    newest = runs[0]
    verdict = "flaky" if flake is not None else "pass" if newest.result.passed else "fail"
    body = [f"<div class=\"verdict\">{verdict.upper()}</div>"]
    if flake is not None:
        body.append(f"<div class=\"meta\">{escape(flake.describe())}</div>")
    body.append(_run_detail(newest, guest, config, shot=True))
    if changed is not None:
        since, found = changed
        lines = "".join(f"<li>{escape(d.describe())}</li>" for d in found) or "<li>no difference in the logs</li>"
        body.append(f"<div class=\"meta\">what changed since the last pass ({escape(since)}):</div><ul>{lines}</ul>")
    if len(runs) > 1:
        items = "".join(f"<li>{'PASS' if r.result.passed else 'FAIL'} {_run_detail(r, guest, config, shot=False)}</li>"
                        for r in runs[1:])
        body.append(f"<details><summary>{len(runs) - 1} earlier run(s)</summary><ul>{items}</ul></details>")
    return f"<td class=\"{verdict}\" {attrs}>{''.join(body)}</td>"


def _run_detail(run: Run, guest: str, config: str, *, shot: bool) -> str:
    r = run.result
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.created))
    boot = r.timings.get("success")
    facts = [r.key.accel, when] + ([f"marker at {float(boot):.1f} s"] if boot is not None else [])
    parts = [f"<div class=\"meta\">{escape(' · '.join(facts))}</div>", f"<div>{escape(r.reason)}</div>"]
    base = f"runs/{escape(run.run_id)}"
    if shot and run.screenshot is not None:
        src = f"{base}/{run.screenshot.name}"
        parts.append(f"<a href=\"{src}\"><img class=\"shot\" src=\"{src}\" "
                     f"alt=\"{escape(guest)} on {escape(config)}: {run.screenshot.stem} screen\"></a>")
    elif shot:
        parts.append("<div class=\"meta\">no screenshot</div>")
    links = [f"<a href=\"{base}/{p.name}\">{p.name}</a>" for p in (run.screenshot if not shot else None,
                                                                     run.serial, run.screen) if p is not None]
    if links:
        parts.append(f"<div>{' · '.join(links)}</div>")
    return "".join(parts)


def _copy_artifacts(run: Run, out: Path) -> None:
    if not run.run_id:
        return
    dest = out / "runs" / run.run_id
    for path in (run.screenshot, run.serial, run.screen):
        if path is not None and not (dest / path.name).exists():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest / path.name)


def _patches(data: ReportData) -> str:
    s = data.series
    total = len(s.patches)
    parts = ["<section id=\"patches\"><h2>Patches</h2>"]
    cov = data.coverage
    if cov is not None:
        without = f"; tested without coverage: {', '.join(cov.without)}" if cov.without else ""
        parts.append(f"<p class=\"meta\">coverage: {escape(cov.figure())}{escape(without)}: each added line "
                     "with code is marked with the cells that ran it, or <span class=\"cov miss\">not run</span></p>")
    else:
        parts.append(f"<p class=\"meta\">coverage: {escape(data.coverage_note)}</p>")
    if data.build_note:
        parts.append(f"<p class=\"meta\">build per patch: {escape(data.build_note)}</p>")
    for i, patch in enumerate(s.patches, 1):
        parts.append(f"<article class=\"patch\" id=\"patch-{i}\"><h3>{i}/{total} {escape(patch.subject)}</h3>"
                     f"<p class=\"meta\">{escape(patch.author)} · {escape(patch.date)}</p>")
        build = data.builds.get(i)
        if build is not None:
            roms = ", ".join(f"{escape(Path(t).name)} {size} bytes" for t, size in build.roms.items())
            delta = len(build.new_warnings)
            parts.append(f"<p class=\"build\">build: <b>ok</b> ({roms}); warning delta: <b>{delta:+d}</b>"
                         f" ({build.warnings} warning line(s) in the step)</p>")
            if build.new_warnings:
                parts.append(f"<pre>{escape(chr(10).join(build.new_warnings))}</pre>")
        if data.review is not None:
            parts.append(_review_block(data, i))
        parts.append(f"<pre class=\"msg\">{escape(patch.message)}</pre>")
        marks = {} if cov is None else {(c.path, c.patch_line): c for c in cov.of_patch(i)}
        if cov is not None:
            ran = sum(1 for c in marks.values() if c.cells)
            parts.append(f"<p class=\"build\">coverage: <b>{ran} of {len(marks)}</b> changed lines ran</p>")
        parts.append(f"<pre class=\"diff\">{highlight_diff(patch, marks)}</pre></article>")
    parts.append("</section>")
    return "".join(parts)


def highlight_diff(patch: Patch, coverage: Mapping[tuple[str, int], LineCoverage] | None = None) -> str:
    """The diff as HTML spans (file headers, hunks, added and removed lines) with new-side line numbers;
    an added line in ``coverage`` (by path and new-side number) is marked with the cells that ran it."""
    table = diff_lines(patch.diff)
    out = []
    # diff_lines also numbers the empty line after the diff's last newline: zip stops before it.
    for line, entry in zip(patch.diff.rstrip("\n").split("\n"), table, strict=False):
        text = escape(line)
        number = entry.new if entry.new is not None else entry.old
        ln = f"<span class=\"ln\">{number:>5} </span>" if number is not None else "<span class=\"ln\">      </span>"
        if line.startswith(("diff --git", "+++ ", "--- ")):
            out.append(f"{ln}<span class=\"file\">{text}</span>")
        elif line.startswith("@@"):
            out.append(f"{ln}<span class=\"hunk\">{text}</span>")
        elif line.startswith("+"):
            out.append(f"{ln}<span class=\"add\">{text}</span>" + _coverage_mark((coverage or {}).get(
                (entry.file, entry.new or 0))))
        elif line.startswith("-"):
            out.append(f"{ln}<span class=\"del\">{text}</span>")
        else:
            out.append(f"{ln}{text}")
    return "\n".join(out)


def _coverage_mark(line: LineCoverage | None) -> str:
    """After an added line: the cells that ran it, "not run", or nothing (no code, or changed by a later patch)."""
    if line is None:
        return ""
    if not line.cells:
        return "<span class=\"cov miss\">not run</span>"
    shown = ", ".join(line.cells[:3]) + (f" +{len(line.cells) - 3}" if len(line.cells) > 3 else "")
    return (f"<span class=\"cov ran\" title=\"{escape(', '.join(line.cells))}\">ran: "
            f"{escape(shown)}</span>")


def _review_block(data: ReportData, index: int) -> str:
    review = data.review
    if review is None or index >= len(review.patches):
        return ""
    p = review.patches[index]
    parts = []
    if p.trailers:
        items = "".join(f"<li>{escape(c.trailer.text())}</li>" for c in p.trailers)
        parts.append(f"<div class=\"trailers\"><b>trailers</b><ul>{items}</ul></div>")
    for rc in p.comments:
        state = "answered" if rc.answered else "open"
        quote = escape("\n".join(f"> {q}" for q in rc.comment.quote))
        parts.append(f"<div class=\"comment {state}\"><div class=\"meta\">{escape(rc.author)} on "
                     f"<b>{escape(rc.comment.place.describe())}</b> [{state}]</div>"
                     + (f"<pre class=\"quote\">{quote}</pre>" if quote else "")
                     + f"<pre>{escape(rc.comment.text)}</pre></div>")
    if index == 0 and review.mismatches:
        items = "".join(f"<li>{escape(m.trailer.text())} from {escape(m.sender)} ({escape(m.why)})</li>"
                        for m in review.mismatches)
        parts.append(f"<details><summary>trailers not collected</summary><ul>{items}</ul>"
                     "</details>")
    if not parts:
        return ""
    return f"<div class=\"review\"><h4>Review of v{review.version}</h4>{''.join(parts)}</div>"


def _range_diff(data: ReportData) -> str:
    if data.range_diff is None:
        return (f"<section id=\"range-diff\"><h2>Range-diff</h2><p class=\"meta\">{escape(data.range_note)}</p>"
                "</section>")
    lines = []
    for line in data.range_diff.rstrip("\n").split("\n"):
        body = line.lstrip()
        cls = "add" if body.startswith("+") else "del" if body.startswith("-") else "hunk" if ":" in line[:12] else ""
        lines.append(f"<span class=\"{cls}\">{escape(line)}</span>" if cls else escape(line))
    return (f"<section id=\"range-diff\"><h2>Range-diff {escape(data.range_note)}</h2>"
            f"<pre class=\"diff\">{chr(10).join(lines)}</pre></section>")


def _bench(data: ReportData) -> str:
    if data.bench is None:
        return f"<section id=\"bench\"><h2>Benchmark</h2><p class=\"meta\">{escape(data.bench_note)}</p></section>"
    b = data.bench
    head = "".join(f"<th>{escape(h)}</th>" for h in b.headers)
    rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in b.rows)
    return (f"<section id=\"bench\"><h2>Benchmark</h2><p class=\"meta\">{escape(b.path.name)}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></section>")
