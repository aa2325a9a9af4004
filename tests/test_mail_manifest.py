"""send-email (and every other writer) edits a hand-written series.toml in place: comments and layout stay."""

from __future__ import annotations

import re

from fixtures.mail import MailProject, Recorder, Server, smtp_options

from patchkit.mailer.send import send_email

HAND_WRITTEN = """\
# The demo series: written by hand, formatted by hand.
name    = "demo"          # aligned on purpose
upstream = 'fixture'
base = "{base}"
to = ["Devel List <devel@example.org>"]   # one line
cc = [
  "reviewer@example.com",  # keeps an eye on virtio
]
guests = ["freedos", "probe"]
version = 2
patches = [
  "{p1}",
  "{p2}",
]

# Version history.
[[versions]]
number = 1
changelog = "Initial posting."

[[versions]]
number = 2  # current
changelog = '''
- change number 2
'''

[[configs]]
name = "pc"
virtio_blk = {{ queue-size = 128 }}   # inline table, as written
"""


def write_hand_manifest(mp: MailProject) -> str:
    s = mp.series()
    text = HAND_WRITTEN.format(base=s.base, p1=s.patches[0].filename, p2=s.patches[1].filename)
    assert s.path is not None
    (s.path / "series.toml").write_text(text)
    return text


def test_a_send_changes_only_the_sent_version_entry(mail_project: MailProject) -> None:
    before = write_hand_manifest(mail_project)
    mail_project.record()
    with Server(Recorder()) as srv:
        send_email(mail_project.project, "demo", smtp_options(srv))
    path = mail_project.root / "series" / "demo" / "series.toml"
    after = path.read_text()
    added = [line for line in after.splitlines() if line not in before.splitlines()]
    assert len(added) == 2 and re.fullmatch(r'sent = "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"', added[0])
    assert added[1] == 'tag = "demo-v2"'
    # Byte for byte apart from those two lines, which go at the end of v2's entry.
    assert after.replace(f"{added[0]}\n{added[1]}\n", "") == before
    assert after.index(added[0]) > after.index("number = 2  # current")
    info = mail_project.series().version_info(2)
    assert info is not None and info.tag == "demo-v2"


def test_version_new_keeps_the_hand_layout(mail_project: MailProject) -> None:
    before = write_hand_manifest(mail_project)
    status, out = mail_project.cli("version", "new", "--changelog", "- change number 3\n- and another")
    assert status == 0, out
    after = (mail_project.root / "series" / "demo" / "series.toml").read_text()
    assert "version = 3\n" in after
    assert after.replace("version = 3\n", "version = 2\n").startswith(before.split("\n[[configs]]")[0])
    assert "# keeps an eye on virtio" in after and "{ queue-size = 128 }   # inline table" in after
    info = mail_project.series().version_info(3)
    assert info is not None and info.changelog == "- change number 3\n- and another\n"


def test_versions_written_as_an_inline_array_stay_one(mail_project: MailProject) -> None:
    text = write_hand_manifest(mail_project)
    start, end = text.index("# Version history."), text.index("[[configs]]")
    inline = 'versions = [{ number = 1, changelog = "Initial posting." }, { number = 2, changelog = "- two\\n" }]\n'
    before = text[:text.index("\n[[configs]]")].replace("version = 2\n", "version = 2\n" + inline)
    before = before.replace(text[start:end].rstrip("\n"), "") + "\n" + text[end:]
    manifest = mail_project.root / "series" / "demo" / "series.toml"
    manifest.write_text(before)
    status, out = mail_project.cli("version", "new", "--changelog", "three")
    assert status == 0, out
    after = manifest.read_text()
    assert '{ number = 2, changelog = "- two\\n" }, {number = 3, changelog = "three\\n"}]\n' in after
    added = ', {number = 3, changelog = "three\\n"}'
    assert after.replace("version = 3\n", "version = 2\n").replace(added, "") == before
    info = mail_project.series().version_info(3)
    assert info is not None and info.changelog == "three\n"
