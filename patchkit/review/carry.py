"""Collected trailers carried into the current version's patch files, as b4's ``trailers -u`` does.

A trailer given on a sent patch applies to a current patch only while the two have
the same ``git patch-id --stable`` (the diff is unchanged; the message may differ).
Trailers collected for a patch that has changed since are not added, and when the
patch file already carries them (an earlier ``--update``) they are taken out again:
they are *stale*. ``patchkit version new`` drops stale trailers from the new version
and names them in its changelog.

Order in the patch file (b4's default ``trailer-order = *``): the trailers already there
keep their order, collected ones follow in the order they arrived, and the sender's
own Signed-off-by moves to the bottom, after them.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from patchkit.errors import MailError, SeriesError
from patchkit.git.config import read_sender
from patchkit.git.patchid import patch_id
from patchkit.project import Project
from patchkit.review.thread import Review, reviews
from patchkit.review.trailers import Collected, Trailer, merge, message_trailers, with_trailers
from patchkit.series.io import available_versions, load_version, new_version, save_series
from patchkit.series.model import Patch, Series
from patchkit.store import Store


@dataclass
class Given:
    """A collected trailer and the version it was given on."""

    collected: Collected
    version: int


@dataclass
class PatchTrailers:
    """Collected trailers for one current patch."""

    index: int
    patch: Patch
    valid: list[Given] = field(default_factory=list)  # given on a patch with the same patch-id
    changed: list[Given] = field(default_factory=list)  # given on an earlier form of this patch

    @property
    def missing(self) -> list[Trailer]:
        """Valid trailers the patch file does not have yet."""
        have = {t.key for t in message_trailers(self.patch.message)[1]}
        return [g.collected.trailer for g in self.valid if g.collected.trailer.key not in have]

    @property
    def stale(self) -> list[Given]:
        """Trailers in the patch file that were given on a form of the patch it no longer has."""
        have = {t.key for t in message_trailers(self.patch.message)[1]}
        ok = {g.collected.trailer.key for g in self.valid}
        return [g for g in self.changed if g.collected.trailer.key in have and g.collected.trailer.key not in ok
                and g.collected.trailer.name.lower() != "signed-off-by"]  # a sign-off is not a review


@functools.lru_cache(maxsize=256)
def patch_id_of(diff: str) -> str:
    """`git patch-id --stable` of a diff (memoised: status and plan ask often)."""
    return patch_id(None, diff)


def plan(store: Store, series: Series, by_version: dict[int, Review] | None = None) -> list[PatchTrailers]:
    """For each patch of ``series`` (as it is now), the collected trailers that apply and those that no longer do."""
    by_version = reviews(store, series) if by_version is None else by_version
    out = [PatchTrailers(i, p) for i, p in enumerate(series.patches, 1)]
    for number in sorted(by_version):
        review = by_version[number]
        sent = _load(series, number)
        for reviewed in review.patches[1:]:
            if not reviewed.trailers or reviewed.index > len(sent.patches):
                continue
            old = sent.patches[reviewed.index - 1]
            for current in out:
                same = patch_id_of(current.patch.diff) == patch_id_of(old.diff)
                if same:
                    current.valid += [Given(c, number) for c in reviewed.trailers]
                elif current.patch.subject == old.subject or current.index == reviewed.index:
                    current.changed += [Given(c, number) for c in reviewed.trailers]
    for current in out:
        current.valid = _dedupe(current.valid)
        current.changed = _dedupe(current.changed)
    return out


def update(project: Project, series: Series) -> list[tuple[PatchTrailers, list[Trailer], list[Given]]]:
    """Write the valid collected trailers into the current patch files; take stale ones out.

    Returns, per patch, what was added and what was removed. Refuses to change a
    version that was sent (a sent version never changes).
    """
    info = series.version_info(series.version)
    if info is not None and info.sent:
        raise SeriesError(f"{series.name} v{series.version} was sent on {info.sent}: its patches never change",
                          hint="start the next version first: `patchkit version new --changelog TEXT`")
    own = _own_email(project.root)
    changes = []
    patches = list(series.patches)
    for entry in plan(project.store, series):
        add, stale = entry.missing, entry.stale
        if not add and not stale:
            continue
        message = with_trailers(entry.patch.message, add, [g.collected.trailer for g in stale],
                                own or entry.patch.author_email)
        patches[entry.index - 1] = replace(entry.patch, message=message)
        changes.append((entry, add, stale))
    if changes:
        series.patches = patches
        save_series(series)
        project.series_changed(series)
    return changes


def new_version_keeping_trailers(store: Store, series: Series,
                                 changelog: str) -> tuple[Series, list[tuple[int, Given]]]:
    """``version new`` that drops stale collected trailers from the new version and says so in its changelog."""
    dropped = [(entry.index, g) for entry in plan(store, series) for g in entry.stale]
    if dropped:
        lines = ["Trailers dropped because the patch changed since they were given:"]
        for index, g in dropped:
            subject = series.patches[index - 1].subject
            trailer = g.collected.trailer.text()
            lines.append(f"- {index}/{len(series.patches)} {subject}: {trailer} (given on v{g.version})")
        changelog = changelog.rstrip("\n") + "\n\n" + "\n".join(lines)
    updated = new_version(series, changelog)
    if dropped:
        patches = list(updated.patches)
        for index, g in dropped:
            p = patches[index - 1]
            patches[index - 1] = replace(p, message=with_trailers(p.message, [], [g.collected.trailer], ""))
        updated.patches = patches
        save_series(updated)
    return updated, dropped


def _own_email(project: Path) -> str:
    """The sender's address as send-email would use it ('' when none is configured)."""
    try:
        sender = read_sender(project, {"sender": None}, os.environ)
    except MailError:
        return ""
    return sender.rpartition("<")[2].rstrip(">") if "<" in sender else sender


def _load(series: Series, number: int) -> Series:
    if number not in available_versions(series):
        return replace(series, patches=[])
    return load_version(series, number)


def _dedupe(items: list[Given]) -> list[Given]:
    merged = merge([(g.collected.trailer, s, g.collected.given_by) for g in items for s in g.collected.sources])
    first: dict[tuple[str, str], int] = {}
    for g in items:
        first.setdefault(g.collected.trailer.key, g.version)
    return [Given(c, first[c.trailer.key]) for c in merged]
