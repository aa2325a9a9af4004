"""send-email and collected trailers: stale ones (given before the patch changed) refuse, missing ones are a note.

v2 of the fixture series is really sent over SMTP on 127.0.0.1, replies as mail clients
write them are imported, v3 is started with them; the v3 sends go to the same server.
"""

from __future__ import annotations

import email
import email.policy
import json
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path

from fixtures.mail import smtp_options
from fixtures.review import BOB, SentSeries, quote, reply

from patchkit.mailer.send import send_email
from patchkit.review.carry import new_version_keeping_trailers, update
from patchkit.review.thread import import_replies
from patchkit.series.io import save_series
from patchkit.series.model import Series

DAVE = "Dave Tester <dave@example.org>"
STALE = f"patch 2/2 carries Reviewed-by: {BOB}, given on v2 before the patch changed (a stale trailer)"


def send_args(ss: SentSeries, *args: str) -> list[str]:
    return ["send-email", "--smtp-server", "127.0.0.1", "--smtp-port", str(ss.server.port), *args]


def review_v2(ss: SentSeries, tmp: Path) -> None:
    """Bob reviews both patches of v2, Dave tests patch 2; the replies are imported."""
    p1, p2 = ss.sent[1], ss.sent[2]
    mails = [reply(p1, BOB, f"{quote(p1, slice(0, 3))}\n\nReviewed-by: {BOB}\n"),
             reply(p2, BOB, f"Reviewed-by: {BOB}\n"),
             reply(p2, DAVE, f"Booted it.\n\nTested-by: {DAVE}\n")]
    report = import_replies(ss.mp.store, [ss.mbox(tmp / "replies.mbox", mails)], ["demo"])
    assert report.unmatched == [] and len(report.stored["demo"]) == 3


def start_v3(ss: SentSeries, *, write_trailers: bool) -> Series:
    """`version new` (and `trailers --update` when asked), then v3's patch 2 gets another diff."""
    v3, _ = new_version_keeping_trailers(ss.mp.store, ss.mp.series(), "- v3\n")
    if write_trailers:
        update(ss.mp.project, v3)
    return edit_patch_2(ss, diff=True)


def edit_patch_2(ss: SentSeries, *, diff: bool) -> Series:
    """Change patch 2 of the current version: its diff (a new patch-id) or only its message."""
    s = ss.mp.series()
    p = s.patches[1]
    if diff:
        s.patches[1] = replace(p, diff=p.diff.replace("+int virtio_blk;", "+int virtio_blk = 1;"))
    else:
        s.patches[1] = replace(p, message=p.message.replace("déjà vu", "again"))
    assert s.patches[1] != p
    save_series(s)
    return s


def v3_mails(ss: SentSeries) -> list[EmailMessage]:
    """The messages the server got after v2's three, parsed."""
    return [email.message_from_bytes(data, policy=email.policy.default) for data in ss.received()[3:]]


def test_stale_trailers_refuse_the_send_until_trailers_update(sent_series: SentSeries, tmp_path: Path) -> None:
    ss = sent_series
    review_v2(ss, tmp_path)
    start_v3(ss, write_trailers=True)
    assert f"Reviewed-by: {BOB}" in ss.mp.series().patches[1].message  # written for the v2 form of the patch
    ss.mp.record()  # the revision passed its tests: only the trailers hold it back
    status, out = ss.mp.cli(*send_args(ss))
    assert status == 1, out
    assert STALE in out
    assert f"patch 2/2 carries Tested-by: {DAVE}, given on v2" in out
    assert "patch 1/2" not in out  # patch 1 did not change: its trailers hold
    assert "`patchkit trailers --update`" in out and "--force --reason" in out
    dry = send_email(ss.mp.project, "demo", smtp_options(ss.server, dry_run=True))  # shows the refusal, sends nothing
    assert dry.gate.refusal is not None and "a stale trailer" in str(dry.gate.refusal)
    assert len(ss.server.recorder.messages) == 3 and not ss.mp.journal(3).exists()

    status, out = ss.mp.cli("trailers", "--update")
    assert status == 0, out
    assert f"  - Reviewed-by: {BOB} (given on v2; the patch changed)" in out
    ss.mp.record()  # taking them out made a new revision: tested again, as `patchkit test` would
    sent = send_email(ss.mp.project, "demo", smtp_options(ss.server))
    assert len(sent.sent) == 3 and sent.gate.problems == [] and sent.gate.notes == []
    cover, p1, p2 = v3_mails(ss)
    assert cover["Subject"].startswith("[PATCH v3 0/2]")
    assert f"Reviewed-by: {BOB}" in p1.get_content()
    assert "Reviewed-by" not in p2.get_content() and "Tested-by" not in p2.get_content()
    assert "Signed-off-by: Zoë Ünïcode <zoe@example.net>" in p2.get_content()


def test_force_with_reason_sends_stale_trailers_and_records_why(sent_series: SentSeries, tmp_path: Path) -> None:
    ss = sent_series
    review_v2(ss, tmp_path)
    start_v3(ss, write_trailers=True)
    ss.mp.record()
    status, out = ss.mp.cli(*send_args(ss, "--force"))
    assert status == 1 and "--force needs --reason" in out, out
    status, out = ss.mp.cli(*send_args(ss, "--force", "--reason", "Bob re-reviewed the change on IRC"))
    assert status == 0, out
    start = json.loads(ss.mp.journal(3).read_text().splitlines()[0])
    assert start["event"] == "start" and start["forced_reason"] == "Bob re-reviewed the change on IRC"
    assert STALE in start["problems"]
    cover, _, p2 = v3_mails(ss)
    said = " ".join(cover.get_content().split())  # the cover's prose is wrapped at 72 columns
    assert f"Sent despite: {STALE}" in said and "Reason: Bob re-reviewed the change on IRC" in said
    assert f"Reviewed-by: {BOB}" in p2.get_content()  # sent as it is: the override is the user's word


def test_collected_trailers_not_written_are_a_note_not_a_refusal(sent_series: SentSeries, tmp_path: Path) -> None:
    ss = sent_series
    review_v2(ss, tmp_path)
    new_version_keeping_trailers(ss.mp.store, ss.mp.series(), "- v3\n")
    edit_patch_2(ss, diff=False)  # the message only: the patch-id holds, so do the trailers
    ss.mp.record()
    said: list[str] = []
    sent = send_email(ss.mp.project, "demo", smtp_options(ss.server), progress=said.append)
    assert len(sent.sent) == 3 and sent.gate.problems == []
    assert sent.gate.notes == [
        f"patch 1/2 lacks the collected Reviewed-by: {BOB} (`patchkit trailers --update` writes them)",
        f"patch 2/2 lacks the collected Reviewed-by: {BOB}, Tested-by: {DAVE} (`patchkit trailers --update` "
        "writes them)"]
    assert [line for line in said if line.startswith("note: ")] == [f"note: {n}" for n in sent.gate.notes]
    assert all("Reviewed-by" not in m.get_content() for m in v3_mails(ss))  # sent as the files are


def test_without_replies_a_changed_patch_is_sent_as_before(sent_series: SentSeries) -> None:
    """Negative control: the same v3 (patch 2's diff changed) with no reply imported goes out."""
    ss = sent_series
    start_v3(ss, write_trailers=True)
    ss.mp.record()
    status, out = ss.mp.cli(*send_args(ss))
    assert status == 0, out
    assert "sent 3 message(s) of demo v3" in out and "note:" not in out
    assert len(v3_mails(ss)) == 3
