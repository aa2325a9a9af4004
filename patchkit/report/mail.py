"""`patchkit report --mail`: a test report as a reply to the series' cover letter, as Patchew posts them.

The reply goes where the version went: the To and Cc the send journal recorded for its
cover letter (what `send-email --to/--cc` made of them, not the manifest's as it is now),
threaded under that cover letter, through the send-email SMTP settings.
It is gated on real results: a version that was never sent has nothing to answer, and
a revision without any recorded run has nothing to report.

Each reply is journaled as send-email journals its messages (``report-v<N>.journal``
in the series' mail directory: start, sending, then accepted or failed), so a report
on a revision goes out once: a second one needs ``resend``, and so does one that went
to the server without a recorded answer (in doubt: it may have arrived).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

from patchkit.errors import MailError
from patchkit.git.config import read_sender
from patchkit.mailer.journal import Journal, JournalError, SendState
from patchkit.mailer.render import POLICY, Envelope
from patchkit.mailer.smtp import DeliveryInDoubt
from patchkit.mailer.text import set_text_body, wrap
from patchkit.mailer.transport import Settings, connect, read_transport
from patchkit.project import Project
from patchkit.report.data import Matrix, ReportData, Run, gather
from patchkit.series.io import available_versions
from patchkit.series.model import Series
from patchkit.store import Store
from patchkit.table import table


@dataclass
class ReportMail:
    """The rendered reply and where it went (``server`` is None for a dry run)."""

    message: EmailMessage
    envelope: Envelope
    server: str | None = None

    def as_bytes(self, linesep: str = "\n") -> bytes:
        buf = io.BytesIO()
        BytesGenerator(buf, mangle_from_=False, policy=POLICY.clone(linesep=linesep)).flatten(self.message)
        return buf.getvalue()


def mail_report(project: Project, series: Series, version: int | None, *, dry_run: bool,
                smtp: Mapping[str, str | None], resend: bool = False,
                environ: Mapping[str, str] | None = None) -> ReportMail:
    """Render the report reply for ``series`` version ``version`` and send it (unless ``dry_run``).

    Refused when a report on this revision was sent (or may have been) before, unless ``resend``.
    """
    env = os.environ if environ is None else environ
    data = gather(project, series, version, with_range_diff=False)
    number = data.series.version
    state = Journal.for_version(project.store, series.name, number).last_send()
    if state is None or not state.accepted:
        raise MailError(f"{series.name} v{number} was never sent: there is no cover letter to answer",
                        hint="send it first (`patchkit send-email`), or report on a version that was sent")
    if not data.matrix.cells:
        raise MailError(f"no test results for {series.name} v{number} (revision {data.revision[:12]}): "
                        "a report needs real runs", hint=f"run `patchkit test {series.name}` first")
    journal = Journal.for_report(project.store, series.name, number)
    with journal.locked():
        _check_earlier(journal, series.name, number, data.revision, resend=resend)
        mail = _render(project, data, state, smtp, env)
        if dry_run:
            return mail
        settings = read_transport(project.root, smtp, env)
        _deliver(journal, settings, mail, data.revision)
    return mail


def delivered_or_in_doubt(sends: list[SendState], revision: str | None = None) -> list[SendState]:
    """The report sends (of ``revision`` only, when given) the server accepted, or that went to it
    without a recorded answer (in doubt: they may have arrived)."""
    return [s for s in sends if (revision is None or s.revision == revision) and (s.accepted or s.in_doubt)]


def when(state: SendState) -> str:
    """When a send started, as the manifest writes dates (UTC, seconds)."""
    return datetime.fromtimestamp(state.started, UTC).replace(microsecond=0).isoformat()


def report_mail_lines(store: Store, series: Series) -> list[str]:
    """For `patchkit status`: per version with a report journal, where its mailed report stands."""
    lines = []
    for number in available_versions(series):
        sends = Journal.for_report(store, series.name, number).sends()
        if not sends:
            continue
        reached, last = delivered_or_in_doubt(sends), sends[-1]
        text = _state_text(last)
        if reached and reached[-1] is not last:
            text = f"{_state_text(reached[-1])}; the last attempt ({when(last)}): {text}"
        sent = sum(1 for s in sends if s.accepted)
        count = f" ({sent} reports sent)" if sent > 1 else ""
        lines.append(f"report mail v{number}: {text}{count}")
    return lines


def _state_text(state: SendState) -> str:
    mid = state.message_ids[0]
    if state.accepted:
        return f"sent {when(state)} as {mid}"
    if state.in_doubt:
        return (f"IN DOUBT: {mid} went to the server on {when(state)} without a recorded answer "
                "(check the list; `patchkit report --mail --resend` sends it again)")
    why = next(iter(state.failures.values()), "stopped before it reached the server")
    return f"not sent: {why}"


def _check_earlier(journal: Journal, name: str, number: int, revision: str, *, resend: bool) -> None:
    earlier = delivered_or_in_doubt(journal.sends(), revision)
    if not earlier or resend:
        return
    last = earlier[-1]
    what = f"a report on {name} v{number} (revision {revision[:12]})"
    if last.accepted:
        raise MailError(f"{what} was already sent on {when(last)} as {last.message_ids[0]}",
                        hint="pass --resend to send another report on the same revision (a new message)")
    raise MailError(f"{what} may have been delivered: {last.message_ids[0]} went to the server on {when(last)} "
                    "but no answer was recorded (the journal could not be written, or patchkit was stopped)",
                    hint="check the list archive or your sent mail; pass --resend to send the report again")


def _render(project: Project, data: ReportData, state: SendState, smtp: Mapping[str, str | None],
            env: Mapping[str, str]) -> ReportMail:
    series = data.series
    sender = read_sender(project.root, {"sender": smtp.get("sender")}, env)
    envelope = Envelope(sender=sender, subject_prefix=series.subject_prefix, **_sent_to(state))
    cover_id, cover_subject = state.message_ids[0], state.subjects[0]
    msg = EmailMessage(policy=POLICY)
    msg["From"] = sender
    msg["To"] = ", ".join(envelope.to)
    if envelope.cc:
        msg["Cc"] = ", ".join(envelope.cc)
    msg["Subject"] = f"Re: {cover_subject}"
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid("patchkit-report", domain=parseaddr(sender)[1].rpartition("@")[2] or None)
    msg["In-Reply-To"] = cover_id
    msg["References"] = cover_id
    set_text_body(msg, report_text(data, cover_id, cover_subject))
    return ReportMail(msg, envelope)


def _sent_to(state: SendState) -> dict[str, tuple[str, ...]]:
    """Where the cover letter went, as the send journal recorded it: its To and Cc (a journal from before
    they were recorded: the addresses the server accepted it for)."""
    if state.to or state.cc:
        return {"to": tuple(state.to), "cc": tuple(state.cc)}
    return {"to": tuple(state.accepted.get(state.message_ids[0]) or next(iter(state.accepted.values()))), "cc": ()}


def _deliver(journal: Journal, settings: Settings, mail: ReportMail, revision: str) -> None:
    """Send ``mail``, journaling the start, the attempt and the server's answer."""
    mid = str(mail.message["Message-ID"])
    recipients = mail.envelope.recipients
    journal.start(revision, [mid], [str(mail.message["Subject"])], None)
    try:
        with connect(settings) as conn:
            journal.attempt(conn, parseaddr(mail.envelope.sender)[1], recipients, mid, mail.as_bytes("\r\n"))
    except JournalError:
        raise  # the attempt was not journaled, so nothing went to the server
    except DeliveryInDoubt as exc:
        raise MailError(f"the report {mid} may have been delivered: {exc.message}",
                        hint="check the list archive or your sent mail; `patchkit report --mail --resend` sends it "
                             "again (`patchkit status` shows it in doubt)") from exc
    except MailError as exc:
        raise MailError(f"the report was not sent: {exc.message}",  # send-email's hints speak of --resume
                        hint="nothing of it was delivered: fix what the server objected to (the manifest's "
                             "to/cc, the SMTP settings), then run `patchkit report --mail` again") from exc
    try:
        journal.accepted(mid, recipients)
    except JournalError as exc:
        raise MailError(f"the report {mid} was accepted by the server, but {exc.message}",
                        hint=f"free space in {exc.path.parent}; the report arrived: do not send it again "
                             "(`patchkit status` shows it in doubt)") from exc
    mail.server = settings.describe()


def report_text(data: ReportData, cover_id: str, cover_subject: str) -> str:
    """The report's text, at most 78 columns: verdict, the matrix (a row per configuration and guest),
    per-patch builds and trailers. Long names and messages are wrapped, never cut."""
    s = data.series
    m = data.matrix
    problems = []
    for config in m.configs:
        for guest in m.guests:
            runs = m.cells.get((guest, config), [])
            flake = m.flaky.get((guest, config))
            if flake is not None:
                problems.append(f"{guest} on {config} {flake.describe()}")
            elif runs and not runs[0].result.passed:
                problems.append(f"{guest} on {config} FAILED: {runs[0].result.reason}")
    required = {(g, c.name) for c in s.test_configs() if c.required for g in c.guests}
    problems += [f"{g} on {c} was not tested" for g, c in sorted(required) if (g, c) not in m.cells]
    lines = ["Hi,", ""]
    if problems:
        lines += wrap(f"patchkit booted this series in QEMU and found {len(problems)} problem(s):")
        for problem in problems:
            lines += wrap(problem, indent="  - ", hanging="    ")
    else:
        lines += wrap("patchkit booted this series in QEMU and found no problems.")
    lines += ["", *wrap(f"Subject: {cover_subject}", hanging="  "), f"Message-ID: {cover_id}",
              f"Revision: {data.revision[:12]} (base {s.base[:12]})", "",
              "=== TEST MATRIX (newest run per cell) ===", *matrix_table(m), "",
              "=== BUILD (patchkit build --each-patch) ==="]
    total = len(s.patches)
    for i, patch in enumerate(s.patches, 1):
        build = data.builds.get(i)
        state = (f"builds, warning delta {len(build.new_warnings):+d}" if build is not None else "not recorded")
        lines += wrap(f"{i}/{total} {patch.subject}: {state}", hanging="    ")
        if build is not None:
            for w in build.new_warnings:
                lines += wrap(w, indent="    ", hanging="      ")
    if data.review is not None:
        lines += ["", f"=== TRAILERS (replies to v{data.review.version}) ==="]
        for p in data.review.patches[1:]:
            given = ", ".join(c.trailer.text() for c in p.trailers) or "none"
            lines += wrap(f"{p.index}/{total}: {given}", hanging="    ")
    lines += ["", "---", "This report was made by `patchkit report --mail` from the recorded runs."]
    return "\n".join(lines) + "\n"


REPORT_WIDTH = 78


def matrix_table(m: Matrix) -> list[str]:
    """The matrix with configurations as rows: one line per configuration and guest, the configuration named on
    its first. When the names are too long for 78 columns, each configuration gets a heading line instead."""
    rows: list[tuple[str, str, str]] = []
    for config in m.configs:
        first = True
        for guest in m.guests:
            runs = m.cells.get((guest, config), [])
            if not runs and (guest, config) not in m.planned:
                continue
            cell = _cell(runs[0], (guest, config) in m.flaky) if runs else "not tested"
            rows.append((config if first else "", guest, cell))
            first = False
    header = ("configuration", "guest", "result")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    if sum(widths) + 4 <= REPORT_WIDTH:
        return table([header, *rows])
    lines: list[str] = []
    guest_width = min(widths[1], 24)
    for config, guest, result in rows:
        if config:
            lines += wrap(f"{config}:", REPORT_WIDTH, hanging="  ")
        lines += wrap(f"{guest.ljust(guest_width)}  {result}", REPORT_WIDTH, indent="  ",
                      hanging=" " * (guest_width + 4))
    return lines


def _cell(run: Run, flaky: bool) -> str:
    r = run.result
    boot = r.timings.get("success")
    extra = f", marker at {float(boot):.1f} s" if boot is not None else ""
    return f"{'FLAKY' if flaky else 'pass' if r.passed else 'FAIL'} ({r.key.accel}{extra})"
