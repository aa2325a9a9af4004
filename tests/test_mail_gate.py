"""The send-email gate on real stored results and series files, through dry runs (nothing is sent)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fixtures.mail import MailProject, Recorder, Server, smtp_options

from patchkit.errors import MailError
from patchkit.mailer.send import SendOptions, SendReport, send_email
from patchkit.series.io import new_version, save_series


def dry(mp: MailProject, **kwargs: Any) -> SendReport:
    """A dry run; raises what a real send would be refused with (a dry run shows that as a banner)."""
    report = send_email(mp.project, "demo", SendOptions(dry_run=True, **kwargs))
    if report.gate.refusal is not None:
        raise report.gate.refusal
    return report


def test_untested_revision_is_refused_naming_each_guest(mail_project: MailProject) -> None:
    with pytest.raises(MailError) as exc:
        dry(mail_project)
    assert "freedos: not tested on this revision" in str(exc.value)
    assert "probe: not tested on this revision" in str(exc.value)
    assert "patchkit test" in str(exc.value)


def test_failed_guest_is_refused(mail_project: MailProject) -> None:
    mail_project.record(["freedos"])
    mail_project.record(["probe"], passed=False)
    with pytest.raises(MailError, match=r"probe: failed \(no marker\)"):
        dry(mail_project)


def test_results_of_another_revision_do_not_count(mail_project: MailProject) -> None:
    mail_project.record()
    series = mail_project.series()
    series.patches[0] = series.patches[0].__class__(**{**series.patches[0].__dict__, "message": "Changed."})
    save_series(series)
    with pytest.raises(MailError, match="freedos: not tested on this revision"):
        dry(mail_project)


def test_passes_with_different_roms_are_refused(mail_project: MailProject) -> None:
    mail_project.record(["freedos"], rom="11" * 32)
    mail_project.record(["probe"], rom="22" * 32)
    with pytest.raises(MailError, match="different ROMs"):
        dry(mail_project)


def test_latest_result_wins(mail_project: MailProject) -> None:
    mail_project.record(passed=False, rom="11" * 32)  # a ROM since rebuilt
    mail_project.record()
    report = dry(mail_project)
    assert not report.gate.problems


def test_a_flaky_cell_is_refused_unless_forced_and_the_cover_shows_its_record(mail_project: MailProject) -> None:
    mail_project.record(["probe"], passed=False)  # failed, then passed on the same ROM: FLAKY
    mail_project.record()
    with pytest.raises(MailError, match=r"probe: FLAKY: 1 pass, 1 FAIL on ROM \w+ \(FAIL pass\)"):
        dry(mail_project)
    report = dry(mail_project, force=True, reason="the probe's flake is the host's clock")
    cover = report.mails[0].message.get_content()
    assert re.search(r"^  probe +FLAKY", cover, re.M) and "pc/probe: FLAKY: 1 pass, 1 FAIL" in cover
    assert "Reason: the probe's flake is the host's clock" in cover


def test_guests_beyond_the_manifest_are_listed_but_not_required(mail_project: MailProject) -> None:
    mail_project.record()
    mail_project.record(["keepsan-aoe"], rom="33" * 32)  # another ROM (the NIC ROM): not a required guest
    report = dry(mail_project)
    assert not report.gate.problems
    rows = [line.split()[:2] for line in report.mails[0].message.get_content().splitlines() if line.startswith("  ")]
    assert [r for r in rows if r[0] in ("freedos", "probe", "keepsan-aoe")] == [
        ["freedos", "pass"], ["probe", "pass"], ["keepsan-aoe", "pass"]]


def test_force_needs_a_reason_and_records_it(mail_project: MailProject) -> None:
    mail_project.record(["freedos"])
    with pytest.raises(MailError, match="--reason"):
        dry(mail_project, force=True)
    report = dry(mail_project, force=True, reason="probe guest broken on this host")
    cover = report.mails[0].message.get_content()
    assert re.search(r"^  probe +not tested", cover, re.M)
    assert "Sent despite: probe: not tested on this revision." in cover
    assert "Reason: probe guest broken on this host" in cover
    with Server(Recorder(drop_after=0)) as srv:
        with pytest.raises(MailError):
            send_email(mail_project.project, "demo", smtp_options(srv, force=True, reason="probe guest broken"))
        send_email(mail_project.project, "demo", smtp_options(srv, resume=True))  # the cover still says why
    assert '"forced_reason": "probe guest broken"' in mail_project.journal().read_text()
    content = srv.recorder.messages[0].original_content
    assert content is not None
    cover = content.decode()
    assert "Sent despite: probe: not tested on this revision." in cover and "Reason: probe guest broken" in cover


def test_sent_revision_needs_resend(mail_project: MailProject) -> None:
    mail_project.record()
    with Server(Recorder()) as srv:
        first = send_email(mail_project.project, "demo", smtp_options(srv))
        with pytest.raises(MailError, match="already sent"):
            send_email(mail_project.project, "demo", smtp_options(srv))
        again = send_email(mail_project.project, "demo", smtp_options(srv, resend=True))
    assert len(srv.recorder.messages) == 6
    assert set(first.sent).isdisjoint(again.sent)  # a resend is a new thread
    assert again.tag == "demo-v2"


def test_new_version_without_changes_is_refused(mail_project: MailProject) -> None:
    mail_project.record()
    with Server(Recorder()) as srv:
        send_email(mail_project.project, "demo", smtp_options(srv))
    v3 = new_version(mail_project.series(), "- nothing really")
    assert v3.version == 3
    mail_project.record()
    with pytest.raises(MailError, match="no changes against the sent v2"):
        dry(mail_project)
    # A changed commit message is a change (range-diff shows it).
    p = v3.patches[1]
    v3.patches[1] = p.__class__(**{**p.__dict__, "message": p.message.replace("déjà vu", "again")})
    save_series(v3)
    mail_project.record()
    report = dry(mail_project)
    assert report.mails[0].subject == "[PATCH v3 0/2] virtio-blk sanboot for gPXE"


def test_dry_run_sends_nothing_and_writes_no_journal(mail_project: MailProject) -> None:
    mail_project.record()
    report = dry(mail_project, to=["other@example.org"], no_to=True, no_cc=True, subject_prefix="RFC PATCH")
    assert report.envelope.recipients == ["other@example.org"]
    assert [m.subject.split("]")[0] for m in report.mails] == ["[RFC PATCH v2 0/2", "[RFC PATCH v2 1/2",
                                                                  "[RFC PATCH v2 2/2"]
    assert not mail_project.journal().exists()
    info = mail_project.series().version_info(2)
    assert info is not None and info.sent is None


def test_sent_version_changed_in_place_is_refused_even_with_resend(mail_project: MailProject) -> None:
    mail_project.record()
    with Server(Recorder()) as srv:
        send_email(mail_project.project, "demo", smtp_options(srv))
        mail_project.journal().unlink()  # even without the journal, the tag remembers what was sent
        series = mail_project.series()
        p = series.patches[0]
        series.patches[0] = p.__class__(**{**p.__dict__, "message": p.message + "\n\nEdited after sending."})
        save_series(series)
        mail_project.record()
        with pytest.raises(MailError, match=r"was sent as demo-v2 .* with other content"):
            send_email(mail_project.project, "demo", smtp_options(srv, resend=True))
    assert len(srv.recorder.messages) == 3


# --- configurations: every cell of every required configuration -------------------------------

CONFIGS = """
[[configs]]
name = "pc"

[[configs]]
name = "q35"
guests = ["probe"]
machine = "q35"

[[configs]]
name = "queue-1024"
guests = ["probe"]
virtio_blk = { queue-size = 1024 }
required = false
"""


@pytest.fixture
def matrix_project(mail_project: MailProject) -> MailProject:
    manifest = mail_project.root / "series" / "demo" / "series.toml"
    manifest.write_text(manifest.read_text() + CONFIGS)
    return mail_project


def test_every_required_cell_must_pass(matrix_project: MailProject) -> None:
    matrix_project.record()  # pc: the manifest's guests
    with pytest.raises(MailError) as exc:
        dry(matrix_project)
    assert "  - q35/probe: not tested on this revision" in str(exc.value)
    assert "queue-1024" not in str(exc.value)  # optional
    matrix_project.record(config="q35", passed=False)
    with pytest.raises(MailError, match=r"q35/probe: failed \(no marker\)"):
        dry(matrix_project)
    matrix_project.record(config="q35", rom="cd" * 32)  # rebuilt: the failing ROM was ROM_SHA
    matrix_project.record(rom="cd" * 32)
    matrix_project.record(config="queue-1024", passed=False)  # an optional cell may fail
    assert not dry(matrix_project).gate.problems


def test_a_pass_on_another_configuration_does_not_count(matrix_project: MailProject) -> None:
    matrix_project.record()
    matrix_project.record(["probe"], config="queue-1024")
    with pytest.raises(MailError, match="q35/probe: not tested"):
        dry(matrix_project)


def test_cells_passed_with_different_roms_are_refused(matrix_project: MailProject) -> None:
    matrix_project.record()
    matrix_project.record(config="q35", rom="44" * 32)
    with pytest.raises(MailError, match="different ROMs"):
        dry(matrix_project)


def test_the_tested_section_shows_the_matrix_and_describes_each_configuration(matrix_project: MailProject) -> None:
    matrix_project.record()
    matrix_project.record(config="q35")
    report = dry(matrix_project)
    cover = report.mails[0].message.get_content()
    tested = cover[cover.index("Tested with"):]
    lines = tested.splitlines()
    assert lines[0].startswith("Tested with `patchkit test --matrix` on this revision (")
    # A row per configuration, its guests grouped by verdict: readable in a 78-column mail reader.
    assert lines[1:4] == ["  pc          pass: freedos, probe", "  q35         pass: probe",
                          "  queue-1024  (optional) not run: probe"]
    assert f"  ROM: 65536 bytes, sha256 {'ab' * 6}" in lines
    assert "  QEMU 7.2.0, tcg" in lines
    described = " ".join(tested[tested.index("Configurations:"):].split())  # wrapped at 72 columns
    assert all(len(line) <= 72 for line in lines)
    assert "pc -machine pc; strict boot; guest disk at 04.0; sanboot virtio_blk:PCI00:04.0" in described
    assert "queue-1024 -machine pc; strict boot; guest disk at 04.0; queue-size=1024; " \
           "sanboot virtio_blk:PCI00:04.0" in described
    assert "\n  queue-1024  -machine pc; strict boot; guest disk at 04.0;\n" \
           "              queue-size=1024; sanboot virtio_blk:PCI00:04.0\n" in tested
