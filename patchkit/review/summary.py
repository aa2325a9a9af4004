"""Per-patch review counts for the current version (``patchkit status``) and the review listing."""

from __future__ import annotations

from dataclasses import dataclass

from patchkit.review.carry import patch_id_of, plan
from patchkit.review.thread import Review, ReviewComment, reviews
from patchkit.series.io import available_versions, load_version
from patchkit.series.model import Series
from patchkit.store import Store


@dataclass(frozen=True)
class Counts:
    """Review state of one current patch."""

    trailers: int  # collected trailers that apply to it (same patch-id)
    open_comments: int  # unanswered comments on a sent form with the same patch-id
    stale: int  # trailers in its file given on an earlier, different form

    def text(self) -> str:
        s = f"review: {self.trailers} trailer(s), {self.open_comments} open comment(s)"
        return s + (f", {self.stale} stale trailer(s) (run `patchkit trailers --update`)" if self.stale else "")


def patch_counts(store: Store, series: Series) -> list[Counts] | None:
    """Counts per current patch, or None when no reply was ever imported for the series."""
    by_version = reviews(store, series)
    if not by_version:
        return None
    entries = plan(store, series, by_version)
    out = []
    for entry in entries:
        pid = patch_id_of(entry.patch.diff)
        open_comments = sum(1 for c in _comments_on(series, by_version, pid) if c.open)
        out.append(Counts(len(entry.valid), open_comments, len(entry.stale)))
    return out


def _comments_on(series: Series, by_version: dict[int, Review], pid: str) -> list[ReviewComment]:
    found = []
    for number, review in by_version.items():
        if number not in available_versions(series):
            continue
        sent = load_version(series, number)
        for reviewed in review.patches[1:]:
            if reviewed.index <= len(sent.patches) and patch_id_of(sent.patches[reviewed.index - 1].diff) == pid:
                found += reviewed.comments
    return found


def review_lines(store: Store, series: Series, version: int | None = None) -> list[str]:
    """The review listing: per sent version and patch, trailers, then comments with their place."""
    by_version = reviews(store, series)
    if not by_version:
        return [f"{series.name}: no replies imported (run `patchkit review import PATH...`)"]
    lines: list[str] = []
    for number in sorted(by_version, reverse=True):
        if version is not None and number != version:
            continue
        review = by_version[number]
        total = len(review.patches) - 1
        lines.append(f"{series.name} v{number}: {review.replies} repl{'y' if review.replies == 1 else 'ies'}")
        for p in review.patches:
            if not p.trailers and not p.comments:
                continue
            lines.append(f"  {p.index}/{total} {p.subject}")
            for c in p.trailers:
                n = len(c.sources)
                lines.append(f"    {c.trailer.text()}" + (f"  ({n} replies)" if n > 1 else ""))
            for rc in p.comments:
                state = "answered" if rc.answered else "open"
                lines.append(f"    comment by {rc.author} on {rc.comment.place.describe()} [{state}] {rc.message_id}")
                if rc.comment.place.hunk and rc.comment.place.hunk != "message":
                    lines.append(f"      {rc.comment.place.hunk}")
                lines += [f"      > {q}" for q in rc.comment.quote]
                lines += [f"      {t}" for t in rc.comment.text.split("\n")]
        for m in review.mismatches:
            lines.append(f"  not collected: {m.trailer.text()} in {m.message_id} from {m.sender} ({m.why})")
    if not lines:
        lines.append(f"{series.name}: no replies to v{version}")
    return lines
