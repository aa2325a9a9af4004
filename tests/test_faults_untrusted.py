"""Input from others (issue 23): images whose backing files name host files, manifests, mail, cluster addresses.

Each test shows one defect of the sweep refused or made harmless; none boots a guest unless it says so.
"""

from __future__ import annotations

import email.message
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomli_w
from aiosmtpd.smtp import SMTP, Envelope as SmtpEnvelope, Session
from conftest import PROJECT_ROOT
from fixtures.cli import run_patchkit
from fixtures.mail import MailProject, Recorder, Server, smtp_options
from fixtures.review import BOB, SentSeries, reply

from patchkit.errors import PatchkitError, SeriesError
from patchkit.guests.image import ImageGuest, ImageSpec
from patchkit.mailer import gate
from patchkit.mailer.send import send_email
from patchkit.project import Project
from patchkit.report.mail import mail_report
from patchkit.review import thread
from patchkit.review.mailbox import MAX_BYTES
from patchkit.review.thread import ImportReport, import_replies, replies_dir, reviews
from patchkit.run import run
from patchkit.series.io import load_version
from patchkit.series.model import Series
from patchkit.store import Store, sha256_file
from patchkit.validate import run_tests

SERIES = "gpxe-virtio-blk"


def _host_file(tmp_path: Path) -> Path:
    """A file of 'the host' outside every image directory (a stand-in for /etc/shadow)."""
    (tmp_path / "host").mkdir(exist_ok=True)
    secret = tmp_path / "host" / "shadow"
    secret.write_bytes(b"root:SECRET-HASH:19000::::::\n".ljust(1 << 20, b"\0"))
    return secret


def _qcow2_on(path: Path, backing: str, fmt: str = "raw") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    run(["qemu-img", "create", "-q", "-f", "qcow2", path, "1M"])
    run(["qemu-img", "rebase", "-u", "-b", backing, "-F", fmt, path])
    return path


# --- item 1: a disk image can make QEMU read any host file ----------------------------------


def test_a_backing_file_outside_the_images_directory_is_refused(tmp_path: Path, store: Store) -> None:
    secret = _host_file(tmp_path)
    for n, backing in enumerate([str(secret), "../host/shadow"]):
        evil = _qcow2_on(tmp_path / "given" / f"evil{n}.qcow2", backing)
        with pytest.raises(PatchkitError, match=f"its backing file {re.escape(str(secret))} is outside") as err:
            ImageGuest(store, ImageSpec(evil))
        assert "--image-dir" in str(err.value)
    (tmp_path / "given" / "link.img").symlink_to(secret)  # inside by name, outside in fact
    with pytest.raises(PatchkitError, match="is outside"):
        ImageGuest(store, ImageSpec(_qcow2_on(tmp_path / "given" / "evil-link.qcow2", "link.img")))
    with pytest.raises(PatchkitError, match="is not a file name"):
        ImageGuest(store, ImageSpec(_qcow2_on(tmp_path / "given" / "evil-json.qcow2",
                                              f'json:{{"driver":"file","filename":"{secret}"}}')))


def test_the_command_refuses_it_before_booting_and_records_nothing(tmp_path: Path, store: Store) -> None:
    secret = _host_file(tmp_path)
    evil = _qcow2_on(tmp_path / "given" / "evil.img", str(secret))  # a "raw" name, qcow2 inside
    done = run_patchkit("test", "--image", evil)
    assert done.returncode == 1, done.stdout
    assert f"its backing file {secret} is outside {evil.parent}: refused" in done.stdout
    assert "SECRET" not in done.stdout and not (store.root / "results.sqlite").exists()
    assert not (store.root / "runs").exists()


def test_an_allowed_chain_is_shown_and_hashed_whole(tmp_path: Path, store: Store) -> None:
    secret = _host_file(tmp_path)
    evil = _qcow2_on(tmp_path / "given" / "mine.qcow2", str(secret))
    for n, spec in enumerate((ImageSpec(evil, image_dirs=(secret.parent,)), ImageSpec(evil, backing_anywhere=True))):
        guest = ImageGuest(store, spec)
        assert guest.describe_chain() == f"qcow2 {evil} -> raw {secret}"
        first = guest.image_sha256()
        assert first != sha256_file(evil)
        secret.write_bytes(b"%d" % n + secret.read_bytes()[1:])  # the backing file's content counts
        assert ImageGuest(store, spec).image_sha256() != first
    base = tmp_path / "given" / "base.img"  # a chain inside the image's own directory needs no permission
    base.write_bytes(bytes(1 << 20))
    guest = ImageGuest(store, ImageSpec(_qcow2_on(tmp_path / "given" / "top.qcow2", "base.img")))
    assert [link.format for link in guest.chain] == ["qcow2", "raw"] and guest.chain[1].path == base
    overlay = guest.make_run_disk(tmp_path / "run", "t")
    info = run(["qemu-img", "info", "--output=json", "--backing-chain", overlay]).stdout.decode()
    assert info.count('"backing-filename-format": ') == 2 and '"backing-filename-format": "raw"' in info


def _manifest_with_image(tmp_path: Path, path: str) -> Path:
    project = tmp_path / "project"
    project.mkdir(parents=True)
    run(["cp", "-a", PROJECT_ROOT / "series", PROJECT_ROOT / "gpxe-tree", project])
    manifest = project / "series" / SERIES / "series.toml"
    data = tomllib.loads(manifest.read_text())
    data["guests"] = ["theirs"]
    data.pop("configs", None)
    manifest.write_text(tomli_w.dumps(data) + f'\n[[images]]\nname = "theirs"\npath = "{path}"\n')
    return project


def test_a_manifest_image_path_stays_in_the_project(tmp_path: Path, store: Store) -> None:
    project = Project(_manifest_with_image(tmp_path / "a", "../../../../../etc/shadow"), store)
    with pytest.raises(SeriesError, match=r"series\.toml:\d+: image path '\.\./\.\./\.\./\.\./\.\./etc/shadow' "
                                          "leaves the project"):
        project.series(SERIES)
    secret = _host_file(tmp_path)
    project = Project(_manifest_with_image(tmp_path / "b", str(secret)), store)
    with pytest.raises(PatchkitError, match=r"image theirs's path .* is outside the project"):
        run_tests(project, ["all"], progress=lambda _m: None)
    project = Project(_manifest_with_image(tmp_path / "c", "disk.img"), store)
    (project.root / "series" / SERIES / "disk.img").symlink_to(secret)
    with pytest.raises(PatchkitError, match="is outside the project"):
        run_tests(project, ["all"], progress=lambda _m: None)


# --- item 3: `version new` during a real send-email ------------------------------------------


@dataclass
class VersionNewMidSend(Recorder):
    """Accepts every message; while the first is in DATA, `patchkit version new` runs (as another user command)."""

    project: MailProject | None = None
    output: str = ""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        if not self.messages and self.project is not None:
            status, self.output = self.project.cli("version", "new", "demo", "--changelog", "- v3: started mid-send")
            assert status == 0, self.output
        return await super().handle_DATA(server, session, envelope)


def test_version_new_during_send_email_keeps_the_new_version(mail_project: MailProject) -> None:
    mail_project.record()
    with Server(VersionNewMidSend(project=mail_project)) as srv:
        report = send_email(mail_project.project, "demo", smtp_options(srv))
    assert len(srv.recorder.messages) == 3 and report.tag == "demo-v2"
    series = mail_project.series()  # loads: no "version 2 is already frozen"
    assert series.version == 3
    sent, new = series.version_info(2), series.version_info(3)
    assert sent is not None and sent.sent and sent.tag == "demo-v2"
    assert new is not None and "started mid-send" in new.changelog and new.sent is None
    assert (mail_project.root / "series" / "demo" / "versions" / "v2").is_dir()
    status, out = mail_project.cli("status")
    assert status == 0, out


# --- item 10: non-positive and non-finite timeouts -------------------------------------------


@pytest.mark.parametrize("option", ["--timeout", "--stall-timeout"])
@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf"])
def test_a_timeout_must_be_positive_and_finite(option: str, value: str, store: Store) -> None:
    done = run_patchkit("test", "--guest", "freedos", option, value)
    assert done.returncode == 2 and "must be a positive, finite number of seconds" in done.stdout, done.stdout
    assert not (store.root / "results.sqlite").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_a_manifest_image_timeout_must_be_positive_and_finite(tmp_path: Path, store: Store, value: str) -> None:
    root = _manifest_with_image(tmp_path, "disk.img")
    manifest = root / "series" / SERIES / "series.toml"
    manifest.write_text(manifest.read_text() + f"timeout = {value}\n")
    line = len(manifest.read_text().splitlines())
    with pytest.raises(SeriesError, match=rf"series\.toml:{line}: 'timeout' must be a positive, finite number"):
        Project(root, store).series(SERIES)


# --- item 8: a long image file name ----------------------------------------------------------


@pytest.mark.boot
def test_a_long_image_name_boots_and_is_judged(tmp_path: Path, store: Store) -> None:
    image = tmp_path / ("a" * 241 + ".img")  # 245 characters: the run directory's name once went past 255
    with open(image, "wb") as f:
        f.truncate(1 << 20)
    done = run_patchkit("test", "--reference", "--image", image, "--timeout", "60")
    assert done.returncode == 1, done.stdout  # judged (a blank disk does not boot), not a crash (3)
    assert f"FAIL image:{image.name} on pc" in done.stdout and "Boot failed" in done.stdout
    run_dirs = list((store.root / "runs").iterdir())  # a failing cell is booted again (--reruns)
    assert run_dirs and all(len(d.name) < 120 and (d / "serial.log").is_file() for d in run_dirs)


# --- item 9: review import reads regular files only ------------------------------------------


def test_review_import_reads_regular_files_only_and_not_too_much(sent_series: SentSeries, tmp_path: Path) -> None:
    fifo = tmp_path / "replies.mbox"
    os.mkfifo(fifo)  # nobody writes it: opening it for reading used to hang
    zero = tmp_path / "zero.eml"
    zero.symlink_to("/dev/zero")  # read until memory ran out
    maildir = tmp_path / "md"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    os.mkfifo(maildir / "cur" / "1700000000.1.host:2,S")
    big = tmp_path / "big.mbox"
    with open(big, "wb") as f:
        f.write(b"From x Mon Jan  1 00:00:00 2024\nSubject: x\n\nx\n")
        f.truncate(MAX_BYTES + 1)
    box = sent_series.mbox(tmp_path / "thread.mbox")
    report = import_replies(sent_series.mp.store, [fifo, zero, maildir, big, box], ["demo"])
    problems = {m.where: m.problem for m in report.malformed}
    assert problems[str(fifo)].startswith("a FIFO: only regular files")
    assert problems[str(zero)].startswith("a device: only regular files")
    assert problems[f"{maildir}/1700000000.1.host"].startswith("a FIFO")
    assert problems[str(big)] == "larger than 256 MiB: not read (split the mailbox)"
    assert report.own == 3  # the good mailbox beside them was read


# --- items 4, 5, 6, 13, 14: what replies carry ----------------------------------------------


def _import(ss: SentSeries, tmp_path: Path, *mails: bytes) -> ImportReport:
    return import_replies(ss.mp.store, [ss.mbox(tmp_path / "t.mbox", list(mails))], ["demo"])


def test_a_reply_never_gives_a_signed_off_by_and_another_address_is_flagged(sent_series: SentSeries,
                                                                             tmp_path: Path) -> None:
    p1 = sent_series.sent[1]
    forged = reply(p1, BOB, "Signed-off-by: Bob Reviewer <bob@example.com>\n")  # a DCO line from a reply
    other = reply(p1, BOB, "Reviewed-by: Bob Reviewer <bob@elsewhere.example>\n")  # b4 takes it by the name
    own = reply(p1, BOB, "Acked-by: Bob Reviewer <bob@example.com>\n")
    _import(sent_series, tmp_path, forged, other, own)
    review = reviews(sent_series.mp.store, sent_series.mp.series())[2]
    assert [c.trailer.text() for c in review.patches[1].trailers] == ["Acked-by: Bob Reviewer <bob@example.com>"]
    why = {m.trailer.text(): m.why for m in review.mismatches}
    assert why["Signed-off-by: Bob Reviewer <bob@example.com>"].startswith("a Signed-off-by is added by whoever")
    assert why["Reviewed-by: Bob Reviewer <bob@elsewhere.example>"].startswith(
        "its address is not the sender's (bob@example.com)")
    _, out = sent_series.mp.cli("review")
    assert "not collected: Signed-off-by: Bob Reviewer <bob@example.com>" in out, out


def test_a_broken_quoted_printable_trailer_is_named_as_such(sent_series: SentSeries, tmp_path: Path) -> None:
    broken = reply(sent_series.sent[1], BOB, "Reviewed-by: Bob Reviewer <bob@example.=\ncom>\n")  # a soft break
    _import(sent_series, tmp_path, broken)
    [mismatch] = reviews(sent_series.mp.store, sent_series.mp.series())[2].mismatches
    assert mismatch.why.startswith("still quoted-printable encoded")  # not "names someone else"


def test_control_characters_from_mail_are_escaped_on_output(sent_series: SentSeries, tmp_path: Path) -> None:
    osc = "\x1b]0;owned\x07"
    subject = sent_series.sent[1]["Subject"]
    sneaky = reply(sent_series.sent[1], BOB, f"> {subject}\nPlease fix\x1b[2J this\x9b31m.{osc}\n")
    _import(sent_series, tmp_path, sneaky)
    for args in (["review"], ["trailers"]):
        status, out = sent_series.mp.cli(*args)  # piped, as a log or a pager gets it
        assert status == 0, out
        assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out, out
    status, out = sent_series.mp.cli("review")
    assert "Please fix\\x1b[2J this\\x9b31m." in out and "\\x1b]0;owned\\x07" in out


def test_a_nul_in_a_trailer_is_refused_at_import_naming_file_and_message(sent_series: SentSeries,
                                                                         tmp_path: Path) -> None:
    nul = reply(sent_series.sent[1], BOB, "Reviewed-by: Bob Reviewer <bob@example.com>\x00\n",
                message_id="<nul@example.com>")
    report = _import(sent_series, tmp_path, nul)
    [problem] = report.malformed
    assert problem.where == f"{tmp_path / 't.mbox'}#4"
    assert problem.problem.startswith("<nul@example.com>: trailer 'Reviewed-by: Bob Reviewer <bob@example.com>\\x00' "
                                      "holds a control character: not imported")
    assert report.stored == {}
    status, out = sent_series.mp.cli("trailers")
    assert status == 0 and "Reviewed-by" not in out, out


def test_many_replies_read_each_version_once(sent_series: SentSeries, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # 1,000 replies took 3.9 s, 4,000 took 31 s: the frozen version was read again for every reply and the
    # trailers merged again at each one (bench/replies.py has the timings; no timed assertion here).
    chain: list[bytes] = []
    parent: email.message.Message | bytes = sent_series.sent[1]
    for n in range(60):
        mail = reply(parent, f"R{n} <r{n}@example.org>", f"Reviewed-by: R{n} <r{n}@example.org>\n")
        chain.append(mail)
        parent = mail if n % 3 else sent_series.sent[1 + n % 2]
    _import(sent_series, tmp_path, *chain)
    loads: list[int] = []

    def counted(series: Series, number: int) -> Series:
        loads.append(number)
        return load_version(series, number)

    monkeypatch.setattr(thread, "load_version", counted)
    review = reviews(sent_series.mp.store, sent_series.mp.series())[2]
    assert review.replies == 60 and sum(len(p.trailers) for p in review.patches) == 60
    assert sorted(loads) == sorted(set(loads))  # each version once, not once a reply


# --- item 11: ad-hoc --image runs are kept apart from the series' cells ----------------------


def test_adhoc_image_runs_stay_out_of_the_report_and_the_cover(sent_series: SentSeries, tmp_path: Path) -> None:
    ss = sent_series
    ss.mp.record(["image:my-private-disk.qcow2"], passed=False)  # what `test --image` records
    mail = mail_report(ss.mp.project, ss.mp.series(), None, dry_run=True, smtp={})
    body = mail.message.get_content()
    assert "found no problems" in body and "my-private-disk" not in body
    status, out = ss.mp.cli("report", "-o", tmp_path / "page")
    assert status == 0, out
    page = (tmp_path / "page" / "index.html").read_text()
    assert "my-private-disk" not in page and "1 run(s) of your own images" in page
    s = ss.mp.series()
    with ss.mp.store.results() as results:
        latest = results.latest_by_cell(s.name, s.revision_hash())
    assert "my-private-disk" not in gate.tested_section(s, s.revision_hash(), latest, gate.GateResult([], None, []))
    status, out = ss.mp.cli("status")
    assert "image:my-private-disk.qcow2" in out  # status still lists it, as the README says


def test_a_killed_imports_temporary_reply_file_is_cleaned_up(sent_series: SentSeries, tmp_path: Path) -> None:
    # Issue 23, item 14: ^C or SIGKILL between writing a reply and renaming it left a 0-byte file in replies/.
    folder = replies_dir(sent_series.mp.store, "demo")
    folder.mkdir(parents=True, exist_ok=True)
    leftover = folder / ".0123abcd.eml.k2j3h4"  # as atomic_write names it
    leftover.write_bytes(b"")
    _import(sent_series, tmp_path, reply(sent_series.sent[1], BOB, "Thanks.\n"))
    assert not leftover.exists() and len(list(folder.glob("*.eml"))) == 1


def test_report_to_a_directory_of_its_own_works_on_a_read_only_cache(inputs_cache: Path, gpxe_mirror: Path,
                                                                    store: Store, tmp_path: Path) -> None:
    # Issue 23, item 14: `report -o DIR` failed on a read-only cache (the range-diff's work-tree lock).
    if os.geteuid() != 0:
        pytest.skip("a read-only cache is simulated with a read-only bind mount, which needs root")
    with store.results():
        pass  # the cache as a run leaves it: a results database
    ro = tmp_path / "ro"
    ro.mkdir()
    run(["mount", "--bind", store.root, ro])
    try:
        run(["mount", "-o", "remount,ro,bind", ro])
        done = run_patchkit("report", "-o", tmp_path / "out", cache=ro)
    finally:
        run(["umount", ro])
    assert done.returncode == 0, done.stdout
    page = (tmp_path / "out" / "index.html").read_text()
    assert "Read-only file system" in page  # the range-diff says why it is missing


def test_an_image_declared_raw_is_opened_as_raw_never_guessed(tmp_path: Path, store: Store) -> None:
    secret = _host_file(tmp_path)
    evil = _qcow2_on(tmp_path / "given" / "disk.img", str(secret))  # raw bytes that look like a qcow2
    with pytest.raises(PatchkitError, match="is outside"):
        ImageGuest(store, ImageSpec(evil))  # guessed: a qcow2, its chain refused
    guest = ImageGuest(store, ImageSpec(evil, format="raw"))  # declared: its bytes are the disk, nothing behind
    assert guest.describe_chain() == f"raw {evil}" and guest.image_sha256() == sha256_file(evil)
    overlay = guest.make_run_disk(tmp_path / "run", "t")
    info = run(["qemu-img", "info", "--output=json", "--backing-chain", overlay]).stdout.decode()
    assert str(secret) not in info and '"backing-filename-format": "raw"' in info
    root = _manifest_with_image(tmp_path, "disk.img")
    manifest = root / "series" / SERIES / "series.toml"
    manifest.write_text(manifest.read_text() + 'format = "vmdk"\n')
    with pytest.raises(SeriesError, match=r"series\.toml:\d+: 'format' must be raw or qcow2, got 'vmdk'"):
        Project(root, store).series(SERIES)
