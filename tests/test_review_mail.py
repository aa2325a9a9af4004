"""Replies as mail clients really encode them: RFC 2047, quoted-printable, base64, HTML only, broken mail."""

from __future__ import annotations

import base64
import quopri
from pathlib import Path

from fixtures.review import BOB, CAROL, SentSeries, parse, quote, reply

from patchkit.review.comments import comments
from patchkit.review.message import html_to_text, parse_mail
from patchkit.review.thread import import_replies, reviews
from patchkit.review.trailers import Trailer, find_trailers, with_trailers

CAROL_ADDR = f"{CAROL[0]} <{CAROL[1]}>"
CAROL_2047 = "=?UTF-8?Q?Carol=C3=AB_=C3=9Cn=C3=AFcode?= <carol@example.net>"


def headers(parent_id: str, mid: str, sender: str, extra: str = "") -> str:
    return (f"From: {sender}\nTo: devel@example.org\nSubject: Re: [PATCH v2 2/2] virtio\n"
            f"Date: Thu, 28 Jan 2010 10:00:00 +0100\nMessage-ID: {mid}\nIn-Reply-To: {parent_id}\n"
            f"References: {parent_id}\nMIME-Version: 1.0\n{extra}")


def qp_reply(parent_id: str) -> bytes:
    """RFC 2047 From, quoted-printable UTF-8 body with a non-ASCII trailer name."""
    body = quopri.encodestring(f"Nice.\n\nReviewed-by: {CAROL_ADDR}\n".encode()).decode()
    return (headers(parent_id, "<qp@example.net>", CAROL_2047,
                    "Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: quoted-printable\n")
            + "\n" + body).encode()


def b64_reply(parent_id: str) -> bytes:
    """A base64 ISO-8859-1 body: the trailer's name decodes to the same Carol."""
    body = base64.encodebytes(f"Tested on real hardware.\n\nTested-by: {CAROL_ADDR}\n".encode("latin-1")).decode()
    return (headers(parent_id, "<b64@example.net>", CAROL_2047,
                    "Content-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: base64\n")
            + "\n" + body).encode()


def html_only_reply(parent_id: str) -> bytes:
    """An HTML-only mail: the quote is a <blockquote>, the trailer a paragraph; the quoted one does not count."""
    html = ("<html><head><style>p {color: red}</style></head><body><p>Fine by me.</p>"
            "<blockquote><p>Reviewed-by: Someone Quoted &lt;quoted@example.org&gt;</p></blockquote>"
            "<p>Acked-by: Bob Reviewer &lt;bob@example.com&gt;</p></body></html>")
    return (headers(parent_id, "<html@example.com>", BOB, "Content-Type: text/html; charset=utf-8\n")
            + "\n" + html).encode()


def alternative_reply(parent_id: str) -> bytes:
    """multipart/alternative: the text/plain part is read, not the HTML one."""
    return (headers(parent_id, "<alt@example.com>", BOB,
                    'Content-Type: multipart/alternative; boundary="XX"\n') +
            "\n--XX\nContent-Type: text/plain; charset=utf-8\n\nReviewed-by: Bob Reviewer <bob@example.com>\n"
            "--XX\nContent-Type: text/html; charset=utf-8\n\n<p>Acked-by: Html Only &lt;html@example.com&gt;</p>\n"
            "--XX--\n").encode()


def test_encodings_and_html_give_the_same_people(sent_series: SentSeries, tmp_path: Path) -> None:
    pid = sent_series.ids[2]
    for name, data in [("qp.eml", qp_reply(pid)), ("b64.eml", b64_reply(pid)), ("html.eml", html_only_reply(pid)),
                       ("alt.eml", alternative_reply(pid))]:
        (tmp_path / "saved").mkdir(exist_ok=True)
        (tmp_path / "saved" / name).write_bytes(data)
    report = import_replies(sent_series.mp.store, [tmp_path / "saved"], ["demo"])
    assert report.malformed == [] and report.unmatched == []
    patch2 = reviews(sent_series.mp.store, sent_series.mp.series())[2].patches[2]
    got = {c.trailer.text(): len(c.sources) for c in patch2.trailers}
    assert got == {f"Reviewed-by: {CAROL_ADDR}": 1, f"Tested-by: {CAROL_ADDR}": 1,
                   "Acked-by: Bob Reviewer <bob@example.com>": 1, "Reviewed-by: Bob Reviewer <bob@example.com>": 1}
    assert parse_mail(qp_reply(pid)).from_name == CAROL[0]


def test_quoted_top_posted_duplicate_and_foreign_trailers(sent_series: SentSeries, tmp_path: Path) -> None:
    p1 = sent_series.sent[1]
    top = reply(p1, BOB, "Reviewed-by: Bob Reviewer <bob@example.com>", top_post=True)
    again = reply(p1, BOB, f"{quote(p1, slice(0, 6))}\n\nReviewed-by: bob reviewer <BOB@example.com>\n")
    foreign = reply(p1, BOB, "Tested-by: Eve Else <eve@example.org>\nLink: https://example.org/x\n"
                    "See https://example.org/y\nCc: someone@example.org\n")
    replier = reply(parse(top), CAROL_ADDR, "> Reviewed-by: Bob Reviewer <bob@example.com>\n\n"
                    "Reviewed-by: Carolë Ünïcode <carol@example.net>\n-- \nAcked-by: Sig Nature <sig@example.org>\n")
    box = sent_series.mbox(tmp_path / "t.mbox", [replier, top, again, foreign])  # a reply before its parent
    report = import_replies(sent_series.mp.store, [box], ["demo"])
    assert report.unmatched == [] and len(report.stored["demo"]) == 4
    review = reviews(sent_series.mp.store, sent_series.mp.series())[2]
    trailers = {c.trailer.text(): len(c.sources) for c in review.patches[1].trailers}
    # The quoted Reviewed-by is the grandparent's, the Acked-by is below the signature; Eve's is not Bob's to give.
    assert trailers == {"Reviewed-by: Bob Reviewer <bob@example.com>": 2, f"Reviewed-by: {CAROL_ADDR}": 1,
                        "Link: https://example.org/x": 1}
    assert [(m.trailer.text(), m.sender, m.why) for m in review.mismatches] == [
        ("Tested-by: Eve Else <eve@example.org>", BOB, "names someone else")]
    assert review.patches[2].trailers == []


def test_malformed_mails_are_reported_never_dropped_or_fatal(sent_series: SentSeries, tmp_path: Path) -> None:
    d = tmp_path / "broken"
    d.mkdir()
    pid = sent_series.ids[1]
    (d / "01-no-id.eml").write_bytes(f"From: x@example.org\nSubject: Re: hi\nIn-Reply-To: {pid}\n\nhi\n".encode())
    (d / "02-empty.eml").write_bytes(b"")
    (d / "03-binary.eml").write_bytes(bytes(range(256)) * 4)
    (d / "04-bad-base64.eml").write_bytes(
        (headers(pid, "<bad64@example.org>", BOB, "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n")
         + "\nUmV2aWV3ZWQtYnk6IEJvYiBSZXZpZXdlciA8Ym9iQGV4YW1wbGUuY29tPgo=!!!garbage\n").encode())
    (d / "05-unknown-charset.eml").write_bytes(
        (headers(pid, "<charset@example.org>", BOB, "Content-Type: text/plain; charset=x-klingon\n")
         + "\nReviewed-by: Bob Reviewer <bob@example.com>\n").encode())
    (d / "06-unrelated.eml").write_bytes(
        b"From: a@example.org\nSubject: lunch?\nMessage-ID: <lunch@example.org>\n\nnoon\n")
    status, out = sent_series.mp.cli("review", "import", d)
    assert status == 1, out
    assert f"warning: {d}/01-no-id.eml: <" in out and "read despite: no Message-ID header" in out
    assert f"malformed: {d}/02-empty.eml: empty file" in out
    assert f"malformed: {d}/03-binary.eml: " in out
    assert f"unmatched: {d}/06-unrelated.eml: <lunch@example.org> \"lunch?\"" in out
    assert f"warning: {d}/05-unknown-charset.eml: <charset@example.org>: read despite: unknown charset" in out
    assert "3 new replies stored" in out
    review = reviews(sent_series.mp.store, sent_series.mp.series())[2]
    assert [c.trailer.text() for c in review.patches[1].trailers] == ["Reviewed-by: Bob Reviewer <bob@example.com>"]


def test_comments_map_quoted_hunks_to_file_and_line(sent_series: SentSeries, tmp_path: Path) -> None:
    p1 = sent_series.sent[1]
    payload = p1.get_payload(decode=True)
    assert isinstance(payload, bytes)
    body = payload.decode()
    lines = body.split("\n")
    plus = lines.index("+static int line7 = 7;")
    minus = lines.index("-int line7 = 7;")
    text = ("Jane Doe wrote:\n" + "\n".join(f"> {x}" for x in lines[plus - 4: plus + 1]) +
            "\n\nWhy static here?\n\n" + "\n".join(f"> {x}" for x in lines[minus - 1: minus + 1]) +
            "\nThis one was fine.\n\n> Keep it on the heap instead.\n\nWhich heap?\n")
    bob = reply(p1, BOB, text)
    answer = reply(parse(bob), "Jane Doe <jane@example.org>", "> Why static here?\n\nTo keep it off the stack.\n")
    import_replies(sent_series.mp.store, [sent_series.mbox(tmp_path / "c.mbox", [bob, answer])], ["demo"])
    got = reviews(sent_series.mp.store, sent_series.mp.series())[2].patches[1].comments
    assert [(c.comment.place.describe(), c.comment.text, c.answered) for c in got] == [
        ("src/aoeboot.c:8", "Why static here?", True),
        ("src/aoeboot.c:8 (old side)", "This one was fine.", True),
        ("commit message", "Which heap?", True),
    ]
    assert got[0].comment.quote[-1] == "+static int line7 = 7;" and got[0].comment.place.hunk.startswith("@@ -5,7 +5,7")
    status, out = sent_series.mp.cli("review")
    assert status == 0, out
    assert "comment by Bob Reviewer <bob@example.com> on src/aoeboot.c:8 [answered]" in out
    assert "      > +static int line7 = 7;\n      Why static here?" in out


def test_trailer_rules_follow_b4() -> None:
    body = ("Hi,\n> Reviewed-by: Quoted <q@example.org>\n  Acked-by: Indented <i@example.org>\n"
            "Fixes: not-a-hash\nFixes: 0123abcd (\"sanboot: x\")\nReviewed-by: No Address\n"
            "From: Pasted Header <p@example.org>\nTested-by: Very Long Name\n<long@example.org>\n"
            "Suggested-by: See https://x.example <s@example.org>\nCloses: https://bugs.example/1\n")
    assert [t.text() for t in find_trailers(body)] == [
        "Acked-by: Indented <i@example.org>", 'Fixes: 0123abcd ("sanboot: x")',
        "Tested-by: Very Long Name <long@example.org>", "Closes: https://bugs.example/1"]


def test_written_order_puts_collected_before_the_senders_signoff() -> None:
    message = "Body.\n\nSigned-off-by: Jane Doe <jane@example.org>\nCc: Ada <ada@example.org>"
    new = [Trailer("Reviewed-by", "Bob <bob@example.com>"), Trailer("Cc", "ada <ADA@example.org>")]
    assert with_trailers(message, new, [], "jane@example.org") == (
        "Body.\n\nCc: Ada <ada@example.org>\nReviewed-by: Bob <bob@example.com>\n"
        "Signed-off-by: Jane Doe <jane@example.org>")
    # Someone else's patch keeps its author's sign-off in place; ours (the sender's) goes last.
    theirs = "Body.\n\nSigned-off-by: Zoë <zoe@example.net>\nSigned-off-by: Jane Doe <jane@example.org>"
    assert with_trailers(theirs, new[:1], [], "jane@example.org").endswith(
        "Zoë <zoe@example.net>\nReviewed-by: Bob <bob@example.com>\nSigned-off-by: Jane Doe <jane@example.org>")
    # No sender known (version new taking trailers out): nothing moves, an address-less Fixes: included.
    fixes = "Body.\n\nFixes: 0123abcd (\"x\")\nReviewed-by: Bob <bob@example.com>\nSigned-off-by: J <j@example.org>"
    assert with_trailers(fixes, [], new[:1], "") == 'Body.\n\nFixes: 0123abcd ("x")\nSigned-off-by: J <j@example.org>'
    alone = with_trailers("Just text.", new[:1], [], "x@example.org")
    assert alone == "Just text.\n\nReviewed-by: Bob <bob@example.com>"


def test_html_to_text_and_cover_comments() -> None:
    assert html_to_text("<div>a &amp; b<br>c</div><blockquote><blockquote>deep</blockquote></blockquote>") == \
        "a & b\nc\n> > deep\n"
    top = comments("Generally fine, but see below.\n\n> text\n\nAcked-by: A <a@example.org>\n", None)
    assert [(c.text, c.place.describe()) for c in top] == [("Generally fine, but see below.", "whole patch")]
