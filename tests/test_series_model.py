"""The series model: patch text <-> Patch, trailers, files, file names, revision hash."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from fixtures.repos import format_patches, git_out, make_upstream

from patchkit.errors import SeriesError
from patchkit.series.model import Patch, Series, format_git_date, parse_patch, patch_filename

DIFF = (
    "diff --git a/src/a.c b/src/a.c\n"
    "index 1111111..2222222 100644\n"
    "--- a/src/a.c\n"
    "+++ b/src/a.c\n"
    "@@ -1,2 +1,3 @@\n"
    " one\n"
    "+two\n"
    " three\n"
)
TEXT = (
    "From: Jane Doe <jane@example.org>\n"
    "Date: Tue, 26 Jan 2010 12:00:00 +0000\n"
    "Subject: [sanboot] Do a thing\n"
    "\n"
    "Why it is needed.\n"
    "\n"
    "Signed-off-by: Jane Doe <jane@example.org>\n"
    "Reviewed-by: Joe Bloggs <joe@example.org>\n"
    "---\n" + DIFF
)


def test_parse_render_round_trip() -> None:
    p = parse_patch(TEXT, "0001-x.patch")
    assert (p.subject, p.author_name, p.author_email) == ("[sanboot] Do a thing", "Jane Doe", "jane@example.org")
    assert p.date == "Tue, 26 Jan 2010 12:00:00 +0000"
    assert p.diff == DIFF
    assert p.render() == TEXT
    assert p.trailers == [("Signed-off-by", "Jane Doe <jane@example.org>"),
                          ("Reviewed-by", "Joe Bloggs <joe@example.org>")]
    assert p.files == ["src/a.c"]
    assert p.commit_message.startswith("[sanboot] Do a thing\n\nWhy it is needed.\n")


def test_message_less_patch_round_trips() -> None:
    text = "From: A <a@example.org>\nDate: Tue, 26 Jan 2010 12:00:00 +0000\nSubject: Only a subject\n\n---\n" + DIFF
    p = parse_patch(text, "0001-x.patch")
    assert p.message == "" and p.trailers == []
    assert p.render() == text
    assert p.commit_message == "Only a subject\n"


def test_format_patch_output_is_accepted_and_normalised(tmp_path: Path) -> None:
    """Envelope, [PATCH n/m] prefix, diffstat, signature and RFC 2047 names are handled."""
    up = make_upstream(tmp_path / "up")
    out = tmp_path / "fp"
    out.mkdir()
    from patchkit.run import run

    run(["git", "-C", up.path, "format-patch", "-o", out, f"{up.base}..{up.commits[-1]}"])
    files = sorted(out.iterdir())
    p = parse_patch(files[1].read_text(encoding="utf-8"), files[1].name)
    assert p.subject == "[blk] Add a block driver stub"  # "[PATCH 2/3] " dropped
    assert p.author_name == "Ålice Ünicode"  # decoded from =?UTF-8?q?...?=
    assert p.diff.startswith("diff --git a/src/drivers/blk.c")
    assert "2.39" not in p.diff and "file changed" not in p.diff
    assert ("Cc", "Ada Lovelace <ada@example.org>") in p.trailers


def test_patch_filename_matches_git_format_patch(tmp_path: Path) -> None:
    up = make_upstream(tmp_path / "up")
    files = format_patches(up.path, f"{up.base}..{up.commits[-1]}", tmp_path / "fp")
    for n, f in enumerate(files, 1):
        subject = git_out(up.path, "log", "-1", "--format=%s", up.commits[n - 1])
        assert patch_filename(n, subject) == f.name


def test_format_git_date_matches_git(tmp_path: Path) -> None:
    up = make_upstream(tmp_path / "up")
    git_date = git_out(up.path, "log", "-1", "--format=%aD", up.commits[2])
    when = datetime.fromtimestamp(1264514400, timezone(timedelta(hours=-5)))
    assert format_git_date(when) == git_date == "Tue, 26 Jan 2010 09:00:00 -0500"
    assert format_git_date(datetime(2010, 2, 1, 8, 0, tzinfo=UTC)) == "Mon, 1 Feb 2010 08:00:00 +0000"


def test_revision_hash_follows_every_byte() -> None:
    p = parse_patch(TEXT, "0001-x.patch")
    s = Series(name="s", upstream="gpxe", base="a" * 40, patches=[p])
    same = Series(name="other-name", upstream="gpxe", base="a" * 40, patches=[parse_patch(TEXT, "0001-x.patch")],
                  to=["x@example.org"])
    assert s.revision_hash() == same.revision_hash()  # recipients and name are not the revision
    assert len(s.revision_hash()) == 64
    changed_msg = replace(s, patches=[replace(p, message=p.message + ".")])
    changed_base = replace(s, base="b" * 40)
    two = replace(s, patches=[p, p])
    assert len({s.revision_hash(), changed_msg.revision_hash(), changed_base.revision_hash(),
                two.revision_hash()}) == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Date: x\nSubject: y\n\n---\n" + DIFF, "x.patch:1: missing 'From:' header"),
        ("From: A <a@example.org>\nDate: x\nSubject: y\n\nbody\n" + DIFF, "x.patch:5: no '---' line"),
        ("From: A <a@example.org>\nDate: x\nSubject: y\n\n---\nno diff here\n", "x.patch:6: no 'diff --git' line"),
        ("From: nobody\nDate: x\nSubject: y\n\n---\n" + DIFF, "x.patch:1: From: header is not 'Name <email>'"),
        ("From: A <a@example.org>\nbogus line\n", "x.patch:2: not a mail header"),
    ],
)
def test_parse_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(SeriesError) as exc:
        parse_patch(text, "x.patch")
    assert message in str(exc.value)


def test_patch_is_plain_data() -> None:
    p = Patch("s", "n", "e@x", "d", "", DIFF, "0001-s.patch")
    assert p.with_filename(3).filename == "0003-s.patch"
    assert p.author == "n <e@x>"
