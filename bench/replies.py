"""Time the review side on many replies: `status`'s counts, `review`'s listing and a report's review data.

    python3 bench/replies.py [--counts 250 1000 4000]

Anyone who can post to the list can send many replies, so reading them must stay linear.
For each count N: N replies to the real series' v2 (a send journal is written for it in a
temporary cache), each from its own reviewer giving a Reviewed-by, every tenth answering the
reply before it; then the three readers are timed. A row per N, its time per reply beside it
(flat when linear). Progress to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `patchkit` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report
from patchkit.mailer.journal import Journal
from patchkit.project import Project
from patchkit.review.summary import patch_counts, review_lines
from patchkit.review.thread import replies_dir, reviews
from patchkit.series.io import load_version
from patchkit.store import Store, atomic_write

PROJECT = Path(__file__).resolve().parent.parent
VERSION = 2


def write_replies(store: Store, project: Project, count: int) -> None:
    """A journal of v2 as sent, and ``count`` stored replies to it."""
    series = project.series()
    sent = load_version(series, VERSION)
    ids = [f"<v2-{i}@bench.example>" for i in range(len(sent.patches) + 1)]
    Journal.for_version(store, series.name, VERSION).start("bench", ids, ["cover", *(p.subject for p in sent.patches)],
                                                         None)
    folder = replies_dir(store, series.name)
    for n in range(count):
        parent = f"<r{n - 1}@bench.example>" if n % 10 == 9 else ids[n % len(ids)]
        mail = (f"From: Reviewer {n} <r{n}@example.org>\nTo: list@example.org\nSubject: Re: patch\n"
                f"Date: Tue, 26 Jan 2010 12:{n // 60 % 60:02d}:{n % 60:02d} +0000\n"
                f"Message-ID: <r{n}@bench.example>\nIn-Reply-To: {parent}\nReferences: {parent}\n\n"
                f"Looks right.\n\nReviewed-by: Reviewer {n} <r{n}@example.org>\n")
        atomic_write(folder / f"{n:08d}.eml", mail.encode())


def measure(count: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-replies-") as tmp:
        store = Store(Path(tmp))
        project = Project(PROJECT, store)
        write_replies(store, project, count)
        series = project.series()
        started = time.perf_counter()
        by_version = reviews(store, series)
        patch_counts(store, series)
        review_lines(store, series)
        seconds = time.perf_counter() - started
    assert by_version[VERSION].replies == count, by_version[VERSION].replies
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--counts", type=int, nargs="+", default=[250, 1000, 4000], help="numbers of replies")
    args = p.parse_args(argv)
    rows = []
    for count in args.counts:
        print(f"bench: {count} replies ...", file=sys.stderr, flush=True)
        seconds = measure(count)
        rows.append(report.Row(f"replies-{count}", f"reviews + status counts + review listing, {count} replies",
                               "s", value=seconds, note=f"{seconds / count * 1000:.2f} ms a reply"))
    print(report.render_table(rows, [("review of many replies (linear: the ms a reply stays flat)", 0)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
