"""`patchkit review import` on real mail: git send-email replies, b4 mbox threads, maildirs, re-imports."""

from __future__ import annotations

import mailbox
from pathlib import Path

from fixtures.review import BOB, CAROL, SentSeries, git_send_reply, parse, quote, reply

from patchkit.review.thread import import_replies, replies_dir, reviews
from patchkit.run import run


def _thread(ss: SentSeries, tmp: Path) -> list[bytes]:
    """Bob reviews patch 1 by git send-email; Carol acks the cover; Dave replies to Bob (no trailer)."""
    p1, cover = ss.sent[1], ss.sent[0]
    body = (f"On Tue, 26 Jan 2010, Jane Doe wrote:\n{quote(p1, slice(0, 12))}\n\n"
            "Looks right to me.\n\nReviewed-by: " + BOB + "\n")
    bob = git_send_reply(ss, ss.ids[1], BOB, f"Re: {p1['Subject']}", body, tmp / "bob")
    carol = reply(cover, f"{CAROL[0]} <{CAROL[1]}>", f"Whole series:\n\nAcked-by: {CAROL[0]} <{CAROL[1]}>\n")
    dave = reply(parse(bob), "Dave <dave@example.org>",
                 "> Looks right to me.\nAgreed.\n\nTested-by: Dave <dave@example.org>\n")
    return [bob, carol, dave]


def test_replies_by_git_send_email_match_each_patch(sent_series: SentSeries, tmp_path: Path) -> None:
    extra = _thread(sent_series, tmp_path)
    box = sent_series.mbox(tmp_path / "thread.mbox", extra[1:])  # bob's reply is among the received mails
    report = import_replies(sent_series.mp.store, [box], ["demo"])
    assert report.own == 3 and report.unmatched == [] and report.malformed == []
    assert len(report.stored["demo"]) == 3
    review = reviews(sent_series.mp.store, sent_series.mp.series())[2]
    texts = [[c.trailer.text() for c in p.trailers] for p in review.patches]
    assert texts[1] == [f"Reviewed-by: {BOB}", f"Acked-by: {CAROL[0]} <{CAROL[1]}>",
                        "Tested-by: Dave <dave@example.org>"]
    assert texts[2] == [f"Acked-by: {CAROL[0]} <{CAROL[1]}>"]
    # Importing again (and as a maildir) stores nothing new.
    md = mailbox.Maildir(tmp_path / "md", create=True)
    for data in sent_series.received() + extra[1:]:
        md.add(data)
    again = import_replies(sent_series.mp.store, [tmp_path / "md", box], ["demo"])
    assert again.stored == {} and again.known == 6 and again.own == 6
    assert len(list(replies_dir(sent_series.mp.store, "demo").glob("*.eml"))) == 3


def test_a_thread_saved_by_b4_mbox_as_mbox_and_maildir(sent_series: SentSeries, tmp_path: Path) -> None:
    extra = _thread(sent_series, tmp_path)
    lunch = (b"From: a@example.org\nSubject: lunch?\nMessage-ID: <lunch@example.org>\n"
             b"Date: Thu, 28 Jan 2010 12:00:00 +0000\n\nnoon\n")
    inbox = sent_series.mbox(tmp_path / "inbox.mbox", [*extra[1:], lunch])
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "b4").mkdir()
    (tmp_path / "b4md").mkdir()
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"), "XDG_CONFIG_HOME": str(home / "cfg"),
           "GIT_CONFIG_NOSYSTEM": "1"}
    cover = sent_series.ids[0].strip("<>")
    run(["b4", "--offline-mode", "mbox", "-C", "-m", inbox, "-o", tmp_path / "b4", cover], env=env)
    run(["b4", "--offline-mode", "mbox", "-C", "-M", "-m", inbox, "-o", tmp_path / "b4md", cover], env=env)
    saved = next((tmp_path / "b4").glob("*.mbx"))
    maildir = tmp_path / "b4md" / f"{cover}.maildir"
    assert (maildir / "new").is_dir() or (maildir / "cur").is_dir()
    report = import_replies(sent_series.mp.store, [saved], ["demo"])
    assert (report.own, len(report.stored["demo"]), report.unmatched) == (3, 3, [])  # b4 left the lunch mail out
    again = import_replies(sent_series.mp.store, [maildir], ["demo"])
    assert (again.own, again.known, again.stored) == (3, 3, {})
    status, out = sent_series.mp.cli("review")
    assert status == 0 and f"Reviewed-by: {BOB}" in out and "Tested-by: Dave <dave@example.org>" in out


def test_a_patch_sent_in_reply_by_git_format_patch_gives_no_trailers(sent_series: SentSeries, tmp_path: Path) -> None:
    # A reviewer proposes a fixup as a patch threaded under patch 2: b4 takes no follow-up trailers from it.
    clone = tmp_path / "reviewer"
    env = {"GIT_AUTHOR_NAME": "Bob Reviewer", "GIT_AUTHOR_EMAIL": "bob@example.com",
           "GIT_COMMITTER_NAME": "Bob Reviewer", "GIT_COMMITTER_EMAIL": "bob@example.com"}
    run(["git", "clone", "-q", sent_series.mp.upstream.tree, clone])
    (clone / "src" / "virtio-blk.c").write_text("/* virtio block */\nint virtio_blk = 1;\n")
    run(["git", "commit", "-q", "-a", "-s", "-m", "[virtio] initialise virtio_blk"], cwd=clone, env=env)
    patch = run(["git", "format-patch", "-1", "--stdout", f"--in-reply-to={sent_series.ids[2]}"], cwd=clone,
                env=env).stdout
    (tmp_path / "fixup.mbox").write_bytes(patch)
    report = import_replies(sent_series.mp.store, [tmp_path / "fixup.mbox"], ["demo"])
    assert len(report.stored["demo"]) == 1
    patch2 = reviews(sent_series.mp.store, sent_series.mp.series())[2].patches[2]
    assert patch2.trailers == []
    assert [c.comment.text for c in patch2.comments] == [
        "sent a patch in reply: [PATCH] [virtio] initialise virtio_blk"]
    assert "no Message-ID" in report.warnings[0].problem  # format-patch without --thread writes none


def test_replies_answering_each_other_end_at_the_patch_they_reference(sent_series: SentSeries, tmp_path: Path) -> None:
    # Broken clients: each reply's In-Reply-To names the other one; both reference patch 1 beyond it.
    patch1, dave = sent_series.ids[1], "Dave <dave@example.org>"

    def looped(mid: str, other: str, sender: str) -> bytes:
        return (f"From: {sender}\nSubject: Re: loop\nDate: Thu, 28 Jan 2010 12:00:00 +0000\nMessage-ID: {mid}\n"
                f"In-Reply-To: {other}\nReferences: {patch1} {other}\n\nReviewed-by: {sender}\n").encode()

    a, b = "<a@example.org>", "<b@example.org>"
    box = sent_series.mbox(tmp_path / "loop.mbox", [looped(a, b, BOB), looped(b, a, dave)])
    report = import_replies(sent_series.mp.store, [box], ["demo"])
    assert sorted(report.stored["demo"]) == [a, b] and report.unmatched == []
    patches = reviews(sent_series.mp.store, sent_series.mp.series())[2].patches
    assert sorted(c.trailer.text() for c in patches[1].trailers) == [f"Reviewed-by: {BOB}", f"Reviewed-by: {dave}"]
    assert patches[2].trailers == [] and patches[0].trailers == []
