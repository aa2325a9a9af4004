"""Replies matched to the sent series, kept in the cache, and read back as a review per version.

The send journals (``mail/<series>/vN.journal``) fix every Message-ID patchkit sent:
index 0 the cover letter, index i patch i. A reply belongs to the sent message it
answers through In-Reply-To, else the closest known References entry; a reply to a
reply is followed up to the sent message (the replies already stored count as
links). Matched replies are stored as ``mail/<series>/replies/<hash>.eml`` (the hash
of the Message-ID): importing the same mail again changes nothing.

A trailer in reply to a patch belongs to that patch, one in reply to the cover letter
to every patch of that version (b4's rules, see ``trailers``). A comment is open while
no later reply from the series' side (the address of a patch author) answers it; text
that answers no quote in a reply giving trailers ("Looks good." above a Reviewed-by)
is not a comment.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import re
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path

from patchkit.errors import SeriesError
from patchkit.journal import JournalFile
from patchkit.review.comments import Comment, Place, comments
from patchkit.review.mailbox import RawMail, read_paths
from patchkit.review.message import Mail, MalformedMail, parse_mail
from patchkit.review.trailers import Collected, Trailer, find_trailers, merge, refusal, unsafe_trailers
from patchkit.series.io import available_versions, load_version
from patchkit.series.model import Series
from patchkit.store import Store, atomic_write, file_lock

_DIFF = re.compile(r"^diff --git |^--- \S+\n\+\+\+ \S+", re.MULTILINE)
_REPLY = re.compile(r"^\s*(re|aw|sv|antw)\s*:", re.IGNORECASE)


@dataclass(frozen=True)
class Sent:
    """One message patchkit sent: which series, version and position (0 = cover letter)."""

    series: str
    version: int
    index: int


@dataclass
class Problem:
    """A mail (or path) the import could not use, and why."""

    where: str
    problem: str


@dataclass
class ImportReport:
    """What ``import_replies`` did."""

    read: int = 0
    stored: dict[str, list[str]] = field(default_factory=dict)  # series -> new Message-IDs
    known: int = 0  # already stored before
    own: int = 0  # the series' own sent messages (b4 mbox threads include them)
    unmatched: list[Problem] = field(default_factory=list)
    malformed: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


@dataclass
class ReviewComment:
    """A comment with who made it and where it belongs."""

    comment: Comment
    author: str
    message_id: str
    date: str
    version: int
    index: int  # 0 = cover letter
    answered: bool = False

    @property
    def open(self) -> bool:
        return not self.answered


@dataclass(frozen=True)
class Mismatch:
    """A trailer in a reply that was not collected, and why (see trailers.refusal)."""

    trailer: Trailer
    sender: str
    message_id: str
    why: str


@dataclass
class PatchReview:
    """What the replies to one sent version say about one patch (index 0 = the cover letter)."""

    index: int
    subject: str
    trailers: list[Collected] = field(default_factory=list)
    comments: list[ReviewComment] = field(default_factory=list)


@dataclass
class Review:
    """All replies to one sent version of a series."""

    series: str
    version: int
    patches: list[PatchReview]  # [0] is the cover letter
    mismatches: list[Mismatch] = field(default_factory=list)  # trailers in replies that were not collected
    replies: int = 0

    @property
    def cover(self) -> PatchReview:
        return self.patches[0]


def replies_dir(store: Store, series: str) -> Path:
    """``mail/<series>/replies/`` in the cache."""
    return store.mail(series) / "replies"


def sent_messages(store: Store, series_names: list[str]) -> dict[str, Sent]:
    """Message-ID -> what it was, from every send journal of these series."""
    out: dict[str, Sent] = {}
    for name in series_names:
        folder = store.mail(name)
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("v*.journal")):
            m = re.fullmatch(r"v(\d+)\.journal", path.name)
            if not m:
                continue
            for rec in JournalFile(path).records():
                if rec.get("event") == "start":
                    for i, mid in enumerate(rec.get("message_ids", [])):
                        out[mid] = Sent(name, int(m.group(1)), i)
    return out


def stored_replies(store: Store, series: str) -> list[Mail]:
    """The replies kept for ``series``, oldest first (by Date:)."""
    folder = replies_dir(store, series)
    if not folder.is_dir():
        return []
    mails = [parse_mail(path.read_bytes()) for path in folder.glob("*.eml")]
    return sorted(mails, key=lambda m: (_when(m.date), m.message_id))


def _when(date: str) -> float:
    try:
        return email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, IndexError):
        return 0.0


def import_replies(store: Store, paths: list[Path], series_names: list[str]) -> ImportReport:
    """Read ``paths``, match each reply to a sent message of ``series_names``, store the new ones.

    One import at a time per series; a reply's temporary file that a killed import left behind
    (SIGKILL between writing and renaming it) is removed first.
    """
    with contextlib.ExitStack() as stack:
        for name in sorted(series_names):
            stack.enter_context(file_lock(store.mail(name) / ".replies.lock"))
            folder = replies_dir(store, name)
            for leftover in folder.glob(".*.eml.*") if folder.is_dir() else ():
                leftover.unlink(missing_ok=True)
        return _import(store, paths, series_names)


def _import(store: Store, paths: list[Path], series_names: list[str]) -> ImportReport:
    report = ImportReport()
    raw, read_problems = read_paths(paths)
    report.malformed += [Problem(p.where, p.problem) for p in read_problems]
    sent = sent_messages(store, series_names)
    if not sent:
        raise SeriesError(f"no send journal for {', '.join(series_names) or 'any series'}: nothing was sent "
                          "with patchkit, so no reply can be matched",
                          hint="replies are matched to the Message-IDs `patchkit send-email` journaled")
    parsed: list[tuple[RawMail, Mail]] = []
    for item in raw:
        report.read += 1
        try:
            mail = parse_mail(item.data)
        except MalformedMail as exc:
            report.malformed.append(Problem(item.where, str(exc)))
            continue
        except Exception as exc:  # a broken mail must be reported, never end the import
            report.malformed.append(Problem(item.where, f"cannot be parsed: {type(exc).__name__}: {exc}"))
            continue
        if unsafe := unsafe_trailers(mail.body):
            report.malformed.append(Problem(item.where, f"{mail.message_id}: trailer {unsafe[0].text()!r} holds a "
                                                        "control character: not imported (ask for the reply again)"))
            continue
        if mail.defects:
            report.warnings.append(Problem(item.where, f"{mail.message_id}: read despite: {', '.join(mail.defects)}"))
        parsed.append((item, mail))
    links: dict[str, str] = {}  # reply Message-ID -> series, for replies already stored
    for name in series_names:
        for mail in stored_replies(store, name):
            links[mail.message_id] = name
    pending = []
    for item, mail in parsed:
        if mail.message_id in sent:
            report.own += 1
        elif mail.message_id in links:
            report.known += 1
        else:
            pending.append((item, mail))
    changed = True
    while changed:  # a reply to a reply may come before its parent in the files
        changed = False
        for item, mail in list(pending):
            series = _series_of(mail, sent, links)
            if series is None:
                continue
            _keep(store, series, mail.message_id, item.data)
            links[mail.message_id] = series
            report.stored.setdefault(series, []).append(mail.message_id)
            pending.remove((item, mail))
            changed = True
    for item, mail in pending:
        report.unmatched.append(Problem(item.where, f"{mail.message_id} \"{mail.subject}\" from {mail.sender}: "
                                        "answers no message sent by patchkit (nor a stored reply)"))
    return report


def _series_of(mail: Mail, sent: dict[str, Sent], links: dict[str, str]) -> str | None:
    parent = _known_parent(mail, sent, links)
    if parent is None:
        return None
    return sent[parent].series if parent in sent else links[parent]


def _known_parent(mail: Mail, sent: dict[str, Sent], replies: Container[str], skip: Container[str] = ()) -> str | None:
    """The first of ``mail``'s parents (In-Reply-To, then References nearest first) that is a sent
    message or one of ``replies`` not in ``skip``; None if there is none."""
    for parent in mail.parents:
        if parent in sent or (parent in replies and parent not in skip):
            return parent
    return None


def _keep(store: Store, series: str, message_id: str, data: bytes) -> Path:
    path = replies_dir(store, series) / f"{hashlib.sha256(message_id.encode()).hexdigest()[:32]}.eml"
    if not path.exists():
        atomic_write(path, data)
    return path


def reviews(store: Store, series: Series) -> dict[int, Review]:
    """The review of every sent version of ``series`` that has replies, by version number.

    Linear in the replies (anyone can post many): each version is read once, each reply's target
    found once, and each patch's trailers merged once at the end.
    """
    sent = sent_messages(store, [series.name])
    mails = {m.message_id: m for m in stored_replies(store, series.name)}
    if not mails:
        return {}
    loaded: dict[int, Series] = {}

    def version(number: int) -> Series:
        if number not in loaded:
            loaded[number] = _version(series, number)
        return loaded[number]

    authors = {p.author_email.lower() for n in available_versions(series) for p in version(n).patches}
    answered_by_series = {m.parents[0] for m in mails.values() if m.parents and m.from_email.lower() in authors}
    targets: dict[str, Sent | None] = {}
    for mid in mails:
        _target(mid, sent, mails, targets)
    out: dict[int, Review] = {}
    given_to: dict[tuple[int, int], list[tuple[Trailer, str, str]]] = {}  # (version, patch) -> what replies gave
    for mid, mail in mails.items():
        target = targets[mid]
        if target is None:
            continue
        review = out.get(target.version)
        if review is None:
            review = out[target.version] = _empty_review(version(target.version), target.version)
        if target.index >= len(review.patches):
            continue  # the journal names more messages than the frozen version has patches
        review.replies += 1
        answered = mid in answered_by_series
        if is_patch(mail):  # b4: a patch sent in reply (format-patch --in-reply-to) is no follow-up
            note = Comment(f"sent a patch in reply: {mail.subject}", (), Place())
            review.patches[target.index].comments.append(
                ReviewComment(note, mail.sender, mid, mail.date, target.version, target.index, answered))
            continue
        given = []
        for t in find_trailers(mail.body):
            why = refusal(t, mail.from_name, mail.from_email)
            if why is None:
                given.append(t)
            else:
                review.mismatches.append(Mismatch(t, mail.sender, mid, why))
        for n in range(1, len(review.patches)) if target.index == 0 else [target.index]:
            given_to.setdefault((target.version, n), []).extend((t, mid, mail.sender) for t in given)
        if mail.from_email.lower() in authors:
            continue  # the series' own answers are not review comments
        patch = version(target.version).patches[target.index - 1] if target.index else None
        for c in comments(mail.body, patch.diff if patch else None, patch.message if patch else ""):
            if given and not c.quote:
                continue  # "Looks good" beside a trailer is the trailer's note, not a comment to answer
            review.patches[target.index].comments.append(
                ReviewComment(c, mail.sender, mid, mail.date, target.version, target.index, answered))
    for (number, n), items in given_to.items():
        out[number].patches[n].trailers = merge(items)
    return out


def is_patch(mail: Mail) -> bool:
    """A mail carrying a diff whose subject is not a "Re:" (b4 counts only replies as follow-ups)."""
    return bool(_DIFF.search(mail.body)) and not _REPLY.match(mail.subject)


def _target(mid: str, sent: dict[str, Sent], mails: dict[str, Mail], targets: dict[str, Sent | None]) -> Sent | None:
    """The sent message reply ``mid`` answers, through the replies it answers; kept in ``targets`` for each reply
    on the way, so every reply is followed once however long the chains."""
    chain: list[str] = []
    seen = {mid}
    current: str | None = mid
    found: Sent | None = None
    while current is not None:
        if current in targets:
            found = targets[current]
            break
        chain.append(current)
        parent = _known_parent(mails[current], sent, mails, seen)
        if parent is None:
            break
        if parent in sent:
            found = sent[parent]
            break
        seen.add(parent)
        current = parent
    for link in chain:
        targets[link] = found
    return found


def _version(series: Series, number: int) -> Series:
    try:
        return load_version(series, number)
    except SeriesError:
        return series


def _empty_review(v: Series, number: int) -> Review:
    heads = [PatchReview(0, v.cover_title or "cover letter")]
    heads += [PatchReview(i, p.subject) for i, p in enumerate(v.patches, 1)]
    return Review(v.name, number, heads)
