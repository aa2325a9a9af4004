"""mails -> review import -> version new -> trailers --update -> git am: the trailers end up in the commits.

b4 reads the same thread (`b4 am` on the mbox) and must collect the same trailers per patch.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from fixtures.mail import b4_am, git_am_tree
from fixtures.review import BOB, CAROL, SentSeries, git_send_reply, parse, quote, reply

from patchkit.mailer.send import SendOptions, send_email
from patchkit.series.io import save_series

CAROL_ADDR = f"{CAROL[0]} <{CAROL[1]}>"


def patchkit(ss: SentSeries, *args: str) -> str:
    """`patchkit ARGS` in the sent series' project, which must succeed: its output."""
    status, out = ss.mp.cli(*args)
    assert status == 0, out
    return out


def _review_thread(ss: SentSeries, tmp: Path) -> Path:
    """Bob reviews both patches with git send-email, Carol acks the cover, Dave tests patch 2 via Bob's reply."""
    p1, p2 = ss.sent[1], ss.sent[2]
    git_send_reply(ss, ss.ids[1], BOB, f"Re: {p1['Subject']}",
                   f"{quote(p1, slice(0, 3))}\n\nReviewed-by: {BOB}\n", tmp / "g1")
    bob2 = git_send_reply(ss, ss.ids[2], BOB, f"Re: {p2['Subject']}",
                          f"{quote(p2, slice(0, 2))}\n\nMaybe check the queue size?\n\nReviewed-by: {BOB}\n",
                          tmp / "g2")
    carol = reply(ss.sent[0], CAROL_ADDR, f"For the series:\nAcked-by: {CAROL_ADDR}\n")
    dave = reply(parse(bob2), "Dave Tester <dave@example.org>", "Booted it in QEMU.\n\n"
                 "Tested-by: Dave Tester <dave@example.org>\n")
    return ss.mbox(tmp / "thread.mbox", [carol, dave])


def test_round_trip_into_git_am_matches_b4(sent_series: SentSeries, tmp_path: Path) -> None:
    ss = sent_series
    box = _review_thread(ss, tmp_path)
    out = patchkit(ss, "review", "import", str(box))
    assert "4 new replies stored" in out and "0 unmatched, 0 malformed" in out
    status = patchkit(ss, "status", "demo")
    assert status.count("review: ") == 2, status
    assert "review: 2 trailer(s), 0 open comment(s)" in status  # patch 1: Bob + Carol
    assert "review: 3 trailer(s), 1 open comment(s)" in status, status  # patch 2: Bob + Carol + Dave; Bob's question

    # b4 reads the same thread: same trailers per patch (it orders them its own way).
    b4_out = b4_am(box, ss.ids[0], tmp_path / "b4", tmp_path / "home")
    b4_mbox = next((tmp_path / "b4").glob("*.mbx")).read_text(encoding="utf-8")
    b4_trailers = [set(re.findall(r"^((?:Reviewed|Acked|Tested)-by: .+)$", part, re.MULTILINE))
                   for part in b4_mbox.split("\nFrom ")]
    assert b4_trailers == [{f"Reviewed-by: {BOB}", f"Acked-by: {CAROL_ADDR}"},
                           {f"Reviewed-by: {BOB}", f"Acked-by: {CAROL_ADDR}",
                            "Tested-by: Dave Tester <dave@example.org>"}], b4_out

    code, said = ss.mp.cli("trailers", "--update")
    assert code == 1 and "v2 was sent" in said
    patchkit(ss, "version", "new", "--changelog", "- collected trailers")
    out = patchkit(ss, "trailers", "--update")
    assert f"  + Reviewed-by: {BOB}" in out
    s = ss.mp.series()
    assert s.patches[0].message.endswith(
        f"Reviewed-by: {BOB}\nAcked-by: {CAROL_ADDR}\nSigned-off-by: Jane Doe <jane@example.org>")
    # Zoë's patch: her sign-off stays first, the collected trailers follow in arrival order.
    assert s.patches[1].message.endswith(f"Signed-off-by: Zoë Ünïcode <zoe@example.net>\nReviewed-by: {BOB}\n"
                                         f"Acked-by: {CAROL_ADDR}\nTested-by: Dave Tester <dave@example.org>")
    assert "already carry every collected trailer" in patchkit(ss, "trailers", "--update")  # idempotent

    # Mail v3 as an mbox and `git am` it: the commits carry the trailers.
    ss.mp.record()
    send_email(ss.mp.project, "demo", SendOptions(mbox=tmp_path / "v3.mbox"))
    _, repo = git_am_tree(ss.mp.upstream.tree, ss.mp.upstream.base, tmp_path / "v3.mbox", tmp_path / "am",
                          skip_cover=True)
    messages = [repo.commit(f"HEAD~{n}").message for n in (1, 0)]
    assert f"Reviewed-by: {BOB}\nAcked-by: {CAROL_ADDR}\nSigned-off-by: Jane Doe" in messages[0]
    assert "Tested-by: Dave Tester <dave@example.org>" in messages[1]
    assert ss.mp.tree().is_dir()


def test_version_new_drops_trailers_of_a_changed_patch(sent_series: SentSeries, tmp_path: Path) -> None:
    ss = sent_series
    patchkit(ss, "review", "import", str(_review_thread(ss, tmp_path)))
    patchkit(ss, "version", "new", "--changelog", "- collected trailers")
    patchkit(ss, "trailers", "--update")
    s = ss.mp.series()
    p2 = s.patches[1]
    s.patches[1] = replace(p2, diff=p2.diff.replace("+int virtio_blk;", "+int virtio_blk = 1;"))
    save_series(s)
    listing = patchkit(ss, "trailers")
    assert f"- Reviewed-by: {BOB} (v2; the patch changed since: stale: in the file, will be removed)" in listing
    assert "stale trailer(s)" in patchkit(ss, "status", "demo")
    out = patchkit(ss, "version", "new", "--changelog", "- virtio: initialise the flag")
    assert f"dropped from patch 2: Reviewed-by: {BOB} (given on v2" in out
    v4 = ss.mp.series()
    assert v4.version == 4
    assert f"Reviewed-by: {BOB}" in v4.patches[0].message  # unchanged patch keeps its trailers
    assert "Reviewed-by" not in v4.patches[1].message and "Tested-by" not in v4.patches[1].message
    assert "Signed-off-by: Zoë Ünïcode <zoe@example.net>" in v4.patches[1].message
    info = v4.version_info(4)
    assert info is not None
    changelog = info.changelog
    assert changelog.startswith("- virtio: initialise the flag\n\nTrailers dropped because the patch changed")
    assert f"- 2/2 {p2.subject}: Reviewed-by: {BOB} (given on v2)" in changelog
    # The frozen v3 keeps what it had.
    assert s.path is not None
    assert "Tested-by: Dave" in (s.path / "versions" / "v3" / "patches" / p2.filename).read_text()
