"""Time from a failing matrix to a confirmed culprit: `patchkit test`, then `patchkit bisect`.

A fixture series in a throwaway project and cache (the guest inputs, images and the gPXE mirror
linked from the user's cache, its ROM builds copied, so the series' own ROM is reused by key):
this repository's series with three more patches, the middle one making the driver read one
sector late (``broken_project``; tests/test_bisect.py uses it too). Timed: the failing run
(the probe on ``--configs``, reruns off, the tip's ROM built), then the bisection of pc/probe
with ``--confirm`` boots at the first bad patch and at its parent (the other patches' ROMs
built as it needs them), here (``--jobs``) or on a Dask cluster (``--cluster``). The ratio is
the bisection's time over the failing run's.

    .venv/bin/python bench/triage.py [--confirm 3] [--jobs 2] [--cluster tcp://HOST:8786]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from patchkit.git.apply import apply_series
from patchkit.project import Project
from patchkit.run import run
from patchkit.series.io import new_version as freeze
from patchkit.store import Store
from patchkit.triage.bisect import bisect_cell
from patchkit.validate import run_tests

ROOT = Path(__file__).resolve().parent.parent
SERIES = "gpxe-virtio-blk"
DRIVER = "src/drivers/block/virtio-blk.c"
# (file name, subject, a line of the driver, what it becomes): the middle patch is the broken one
EXTRA = [
    ("0007-virtio-name-the-request-header.patch", "[virtio] Name the request header in a comment",
     "\t/* Request header */\n", "\t/* Request header (struct virtio_blk_outhdr) */\n"),
    ("0008-virtio-read-one-sector-late.patch", "[virtio] Start requests one sector later",
     "\tqueue->hdr.sector = sector;\n", "\tqueue->hdr.sector = ( sector + 1 );\n"),
    ("0009-virtio-say-what-the-segments-are.patch", "[virtio] Say what the data segments are",
     "\t/* Data segments */\n", "\t/* Data segments (the caller's buffer, in pieces) */\n"),
]
BROKEN = "8/9"


def shared_cache(cache: Path, real: Store) -> Store:
    """A cache that links ``real``'s mirror, inputs and images (read only) and copies its ROM builds."""
    cache.mkdir(parents=True, exist_ok=True)
    for name in ("upstream", "inputs", "images"):
        if (real.root / name).exists():
            os.symlink(real.root / name, cache / name)
    if real.builds.is_dir():
        shutil.copytree(real.builds, cache / "builds", symlinks=True,
                        ignore=shutil.ignore_patterns(".*.lock", ".tmp*", "each-patch"))
    return Store(cache)


def broken_project(root: Path, store: Store, extra_manifest: str = "", new_version: bool = False) -> Project:
    """This repository's pin and series with EXTRA after its patches, in ``root``, on ``store``; with
    ``new_version``, the current version is frozen first and EXTRA goes into the next one."""
    shutil.copytree(ROOT / "gpxe-tree", root / "gpxe-tree")
    shutil.copytree(ROOT / "series" / SERIES, root / "series" / SERIES)
    if new_version:
        freeze(Project(root, store).series(SERIES), "Fixture patches after the current version.\n")
    tree = apply_series(Project(root, store), SERIES).tree
    manifest = root / "series" / SERIES / "series.toml"
    text = manifest.read_text()
    for name, subject, old, new in EXTRA:
        source = tree / DRIVER
        source.write_text(source.read_text().replace(old, new, 1))
        diff = run(["git", "-C", tree, "diff"]).stdout.decode()
        run(["git", "-C", tree, "checkout", "--", DRIVER])
        (root / "series" / SERIES / "patches" / name).write_text(
            f"From: Test Author <test@example.org>\nDate: Mon, 1 Mar 2010 12:00:00 +0000\nSubject: {subject}\n\n"
            f"A fixture patch.\n\nSigned-off-by: Test Author <test@example.org>\n---\n{diff}")
        run(["git", "-C", tree, "apply", "--index"], input=diff.encode())
        text = text.replace('.patch",\n]', f'.patch",\n    "{name}",\n]', 1)
    run(["git", "-C", tree, "reset", "-q", "--hard"])
    manifest.write_text(text + extra_manifest)
    return Project(root, store)


def measure(project: Project, configs: list[str], confirm: int, jobs: int, cluster: str | None) -> dict[str, object]:
    """The failing run, then the bisection: seconds, verdicts and the culprit."""
    say = lambda line: print(line, file=sys.stderr)  # noqa: E731  # progress to stderr
    started = time.monotonic()
    results = run_tests(project, ["probe"], series_name=SERIES, configs=configs, jobs=jobs, cluster=cluster,
                        reruns=0, progress=say)
    failing = time.monotonic() - started
    started = time.monotonic()
    found = bisect_cell(project, SERIES, "pc/probe", confirm=confirm, jobs=jobs, cluster=cluster, progress=say)
    bisecting = time.monotonic() - started
    boots = sum(len(v) for v in found.boots.values())
    return {"failing_run_s": round(failing, 1), "failing_cells": sum(not r.passed for r in results),
            "bisect_s": round(bisecting, 1), "bisect_boots": boots, "first_bad": found.first_bad,
            "confirmed": found.confirmed, "right": found.first_bad == BROKEN and found.confirmed,
            "ratio": round(bisecting / failing, 2), "total_s": round(failing + bisecting, 1),
            "where": cluster or f"here, --jobs {jobs}", "summary": found.summary()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=["pc", "q35"], help="the failing run's configurations")
    p.add_argument("--confirm", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--cluster", help="a Dask scheduler's address: every boot is a task of its workers")
    p.add_argument("--json", type=Path, help="write the figures here too")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="patchkit-bench-triage-") as tmp:
        store = shared_cache(Path(tmp) / "cache", Store.from_environment())
        figures = measure(broken_project(Path(tmp) / "project", store), args.configs, args.confirm, args.jobs,
                          args.cluster)
    print("| failing run | bisect (to a confirmed culprit) | ratio | boots | culprit | where |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| {figures['failing_run_s']} s ({figures['failing_cells']} failing cells) | {figures['bisect_s']} s "
          f"| {figures['ratio']} | {figures['bisect_boots']} | {figures['first_bad']}"
          f"{' confirmed' if figures['confirmed'] else ' NOT confirmed'} | {figures['where']} |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["right"] else 1


if __name__ == "__main__":
    sys.exit(main())
