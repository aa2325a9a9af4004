"""`patchkit send-email`: gate, render, then write an mbox, show a dry run, or send and freeze.

A real send fixes every Message-ID in the journal first, journals each message the
server accepts, and once all are accepted freezes the revision: a tag
``<series>-vN`` in the work tree and ``sent``/``tag`` in the manifest. ``resume``
sends only the messages the journal has not seen accepted, with the same IDs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path

from patchkit.coverage.collect import SeriesCoverage, collect
from patchkit.coverage.gate import coverage_problems
from patchkit.errors import MailError, PatchkitError
from patchkit.git.apply import ApplyResult, apply_series
from patchkit.git.cmd import git
from patchkit.git.config import git_config, read_sender
from patchkit.git.worktree import tag
from patchkit.mailer.gate import Flakes, GateResult, Latest, check, tested_section
from patchkit.mailer.journal import Journal, JournalError, SendState
from patchkit.mailer.render import Envelope, Mail, new_message_ids, render_series
from patchkit.mailer.smtp import DeliveryInDoubt
from patchkit.mailer.transport import Settings, connect, read_transport
from patchkit.progress import Progress
from patchkit.project import Project
from patchkit.review.carry import plan
from patchkit.series.io import save_series
from patchkit.series.model import Series, VersionInfo
from patchkit.store import Store, atomic_write
from patchkit.triage.flaky import flakes

IN_DOUBT_HINT = ("check the list archive or your sent mail, then run again with `--resume --in-doubt sent` if it "
                 "arrived, or `--resume --in-doubt resend` if not")


@dataclass
class SendOptions:
    """What the command line can change; None means "from the manifest / configuration"."""

    to: list[str] = field(default_factory=list)  # added to the manifest's `to` (as git send-email's --to)
    cc: list[str] = field(default_factory=list)
    no_to: bool = False  # leave out the manifest's `to` (git send-email's --no-to)
    no_cc: bool = False
    subject_prefix: str | None = None
    sender: str | None = None
    dry_run: bool = False
    mbox: Path | None = None
    force: bool = False
    reason: str | None = None
    resend: bool = False
    resume: bool = False
    in_doubt: str | None = None  # with resume: "sent" or "resend" for messages sent without a recorded answer
    new_recipients: bool = False  # with resume: the rest may go to other recipients than the first part
    yes: bool = False  # send without asking, whatever sendemail.confirm says
    confirm: Callable[[str], bool] | None = None  # asks the user on a terminal; None: there is none
    # server, port, encryption, user, password, ca (kept out of repr(): it may hold the password)
    smtp: dict[str, str | None] = field(default_factory=dict, repr=False)
    server_options: list[str] = field(default_factory=list)  # a program server's options (sendemail.smtpServerOption)


@dataclass
class SendReport:
    """What happened: the rendered mails, which were sent now, and the freeze."""

    series: str
    version: int
    revision: str
    base: str  # the upstream commit the mails apply to (base-commit:)
    envelope: Envelope
    mails: list[Mail]
    gate: GateResult
    sent: list[str] = field(default_factory=list)  # Message-IDs accepted during this run
    skipped: list[str] = field(default_factory=list)  # already accepted before (--resume)
    tag: str | None = None
    server: str | None = None


def tag_name(series: Series) -> str:
    """The tag that freezes a sent version: ``<series>-vN``."""
    return f"{series.name}-v{series.version}"


def send_email(project: Project, name: str | None, options: SendOptions, progress: Progress | None = None,
               environ: Mapping[str, str] | None = None) -> SendReport:
    """Run send-email for series ``name`` (None: the only series) of ``project``."""
    say = progress or (lambda _msg: None)
    env = os.environ if environ is None else environ
    series = project.series(name)
    revision = series.revision_hash()
    journal = Journal.for_version(project.store, series.name, series.version)
    sending = not options.dry_run and options.mbox is None
    with journal.locked():
        coverage = _coverage(project, series)
        message_ids, gate = _plan(project.store, series, revision, journal, options, sending,
                                  coverage_problems(series, coverage))
        for note in gate.notes:
            say(f"note: {note}")
        latest, flaky = _latest(project.store, series, revision)
        settings = read_transport(project.root, options.smtp, env, options.server_options) if sending else None
        sender = _sender(project.root, series, options, env, required=sending)
        if not message_ids:
            message_ids = new_message_ids(series, sender)
        envelope = Envelope(
            sender=sender,
            to=_addresses([] if options.no_to else series.to, options.to),
            cc=_addresses([] if options.no_cc else series.cc, options.cc),
            subject_prefix=options.subject_prefix or series.subject_prefix,
        )
        if sending and not envelope.recipients:
            raise MailError("no recipients", hint="add `to` to the manifest or pass --to ADDR")
        applied = apply_series(project, series, progress=say)
        if options.mbox is None:
            _check_tag(series, applied)
        tested = tested_section(series, revision, latest, gate, coverage.figure() if coverage else None, flaky)
        # A send is dated now, one second apart in series order, the last one now (git send-email's way).
        now = datetime.now(UTC).replace(microsecond=0)
        sent_at = None if options.mbox else now - timedelta(seconds=len(series.patches))
        mails = render_series(series, applied, envelope, message_ids, tested, sent_at)
        report = SendReport(series.name, series.version, revision, applied.base, envelope, mails, gate)
        if options.mbox is not None:
            write_mbox(options.mbox, mails)
            say(f"wrote {len(mails)} messages to {options.mbox}")
            return report
        if options.dry_run:
            return report
        assert settings is not None
        report.server = settings.describe()
        _confirm(project.root, options, series, envelope, _to_send(journal, mails, options), settings.describe())
        if options.resume:
            _settle_resume(journal, envelope, mails, options)
        else:
            journal.start(revision, message_ids, [m.subject for m in mails], gate.forced_reason, gate.problems,
                          to=list(envelope.to), cc=list(envelope.cc))
        _deliver(journal, settings, envelope, mails, report, say)
        report.tag = _freeze(project, series, applied, mails[0].message_id)
        journal.done(report.tag)
        say(f"tagged {report.tag}; {series.name} v{series.version} is frozen")
    return report


def _addresses(*lists: list[str]) -> tuple[str, ...]:
    """The entries of ``lists`` in order, each address once (the first spelling kept)."""
    out: dict[str, str] = {}
    for entry in (e for entries in lists for e in entries):
        out.setdefault(parseaddr(entry)[1].lower() or entry, entry)
    return tuple(out.values())


def write_mbox(path: Path, mails: list[Mail]) -> None:
    """Write ``mails`` as an mbox the way `git format-patch --stdout` does (atomically)."""
    atomic_write(path, b"".join(f"From {m.commit} Mon Sep 17 00:00:00 2001\n".encode() + m.as_bytes() for m in mails))


def _coverage(project: Project, series: Series) -> SeriesCoverage | None:
    """The revision's changed-line coverage, None when not measured (or its ROM's ELF is gone from the cache)."""
    try:
        with project.store.results() as results:
            return collect(results, series)
    except PatchkitError:
        return None


CONFIRM = ("always", "never", "auto", "cc", "compose")  # git send-email's values; cc and compose count as auto


def _to_send(journal: Journal, mails: list[Mail], options: SendOptions) -> int:
    """How many of ``mails`` this run will send (a resume skips the accepted ones)."""
    state = journal.last_send() if options.resume else None
    if state is None:
        return len(mails)
    skipped = set(state.accepted) | (set(state.in_doubt) if options.in_doubt == "sent" else set())
    return sum(1 for m in mails if m.message_id not in skipped)


def _confirm(root: Path, options: SendOptions, series: Series, envelope: Envelope, count: int, via: str) -> None:
    """Ask before a real send, as git send-email's sendemail.confirm does: on a terminal unless ``--yes`` or
    ``sendemail.confirm = never``; without a terminal only ``always`` stops it (it cannot ask there)."""
    if options.yes:
        return
    setting = (git_config(root, "sendemail.confirm") or "auto").strip().lower()
    if setting not in CONFIRM:
        raise MailError(f"sendemail.confirm = {setting}: not a value patchkit knows",
                        hint=f"use one of {', '.join(CONFIRM)} (cc and compose ask as auto does)")
    if setting == "never":
        return
    if options.confirm is None:
        if setting == "always":
            raise MailError("sendemail.confirm is `always` but there is no terminal to ask on: nothing sent",
                            hint="pass --yes to send without asking")
        return
    lines = [f"Send {count} message(s) of {series.name} v{series.version} through {via}",
             f"  To: {', '.join(envelope.to) or '-'}", f"  Cc: {', '.join(envelope.cc) or '-'}",
             f"  (envelope: {envelope.sender} -> {', '.join(envelope.recipients)})"]
    if not options.confirm("\n".join(lines) + "\nSend?"):
        raise MailError("nothing sent: the send was not confirmed",
                        hint="run again and answer y, or pass --yes (or `git config sendemail.confirm never`)")


def _plan(store: Store, series: Series, revision: str, journal: Journal, options: SendOptions,
          sending: bool, coverage: list[str]) -> tuple[list[str], GateResult]:
    """The Message-IDs to use ([] = new ones) and the gate's verdict; raises when refused."""
    previous = journal.last_send()
    if options.resume:
        state = _resumable(series, revision, previous)
        return state.message_ids, GateResult(state.problems, state.forced_reason)  # gated when the send started
    if sending and previous and not previous.done and (previous.accepted or previous.in_doubt):
        raise MailError(f"an earlier send of {series.name} v{series.version} stopped after "
                        f"{len(previous.accepted)} of {len(previous.message_ids)} messages",
                        hint="pass --resume to send the rest with the same threading")
    if options.mbox is not None:
        return [], GateResult([], None)  # an mbox is for looking at: not gated
    latest, flaky = _latest(store, series, revision)
    gate = check(series, latest, already_sent=_already_sent(series, revision, journal), resend=options.resend,
                 force=options.force, reason=options.reason, trailers=plan(store, series), coverage=coverage,
                 flaky=flaky, dry_run=options.dry_run)
    return [], gate


def _resumable(series: Series, revision: str, state: SendState | None) -> SendState:
    if state is None or state.done:
        raise MailError(f"no interrupted send of {series.name} v{series.version} to resume",
                        hint="run send-email without --resume")
    if state.revision != revision:
        raise MailError(f"{series.name} changed since the interrupted send of v{series.version} "
                        f"(revision {state.revision[:12]}, now {revision[:12]})",
                        hint="restore the sent patches, or start a new version")
    return state


def _settle_resume(journal: Journal, envelope: Envelope, mails: list[Mail], options: SendOptions) -> None:
    """Before resuming: the same recipients as the part already sent, and a decision on messages in doubt."""
    state = journal.last_send()
    assert state is not None
    now = sorted(envelope.recipients)
    before = sorted({tuple(sorted(r)) for r in state.accepted.values()})
    if before and before != [tuple(now)] and not options.new_recipients:
        earlier = "; ".join(", ".join(r) for r in before)
        raise MailError(f"the part of this send already delivered went to {earlier}; resuming now would send the "
                        f"rest to other recipients: {', '.join(now) or '-'}",
                        hint="resume with the recipients of the first part (the same --to/--cc/--no-to/--no-cc), "
                             "or pass --new-recipients to send the rest to the new ones")
    total = len(mails)
    for mail in mails:
        if mail.message_id not in state.in_doubt:
            continue
        where = f"[{mail.index + 1}/{total}] {mail.subject} ({mail.message_id})"
        if options.in_doubt == "sent":
            journal.accepted(mail.message_id, state.in_doubt[mail.message_id],
                             note="in doubt: the user said it arrived")
        elif options.in_doubt == "resend":
            journal.failed(mail.message_id, "in doubt: resent on the user's word")
        else:
            raise MailError(f"{where} may have been delivered: it went to the server but no answer was recorded "
                            "(the server gave none, the journal could not be written, or patchkit was stopped)",
                            hint=IN_DOUBT_HINT)


def _already_sent(series: Series, revision: str, journal: Journal) -> bool:
    info = series.version_info(series.version)
    sent_revisions = journal.sent_revisions()
    if info is not None and info.sent and sent_revisions and revision not in sent_revisions:
        raise MailError(f"{series.name} v{series.version} was sent with other content than the current patches",
                        hint="start a new version for the changes (a sent version never changes)")
    return bool(info is not None and info.sent) or revision in sent_revisions


def _check_tag(series: Series, applied: ApplyResult) -> None:
    """Refuse when ``<series>-vN`` already froze other commits (applying is deterministic)."""
    name = tag_name(series)
    proc = git("rev-parse", "--verify", "--quiet", f"refs/tags/{name}^{{commit}}", cwd=applied.tree, check=False)
    tagged = proc.stdout.decode().strip()
    tip = applied.commits[-1] if applied.commits else applied.base
    if proc.returncode == 0 and tagged != tip:
        raise MailError(f"{series.name} v{series.version} was sent as {name} ({tagged[:12]}) with other content",
                        hint="a sent version never changes: start a new version for the changes")


def _latest(store: Store, series: Series, revision: str) -> tuple[Latest, Flakes]:
    """The newest result of each cell of this revision, and the flaky cells."""
    with store.results() as results:
        return results.latest_by_cell(series.name, revision), flakes(results.for_revision(series.name, revision))


def _sender(project_root: Path, series: Series, options: SendOptions, env: Mapping[str, str], *, required: bool) -> str:
    try:
        return read_sender(project_root, {"sender": options.sender}, env)
    except MailError:
        if required or not series.patches:
            raise
        return series.patches[0].author  # an mbox or a dry run may come from the first author


def _deliver(journal: Journal, settings: Settings, envelope: Envelope, mails: list[Mail],
             report: SendReport, say: Progress) -> None:
    state = journal.last_send()
    assert state is not None
    envelope_from = parseaddr(envelope.sender)[1]
    recipients = envelope.recipients
    total = len(mails)
    say(f"sending through {settings.describe()}")
    with connect(settings) as conn:
        for mail in mails:
            where = f"[{mail.index + 1}/{total}]"
            if mail.message_id in state.accepted:
                report.skipped.append(mail.message_id)
                say(f"{where} already sent: {mail.subject}")
                continue
            try:
                journal.attempt(conn, envelope_from, recipients, mail.message_id, mail.as_bytes("\r\n"))
            except JournalError:
                raise  # the attempt was not journaled, so nothing went to the server
            except DeliveryInDoubt as exc:
                raise MailError(f"{where} {mail.subject} ({mail.message_id}) may have been delivered: {exc.message}",
                                hint=IN_DOUBT_HINT) from exc
            except MailError as exc:
                raise MailError(f"{where} {mail.subject}: not sent: {exc.message}", hint=exc.hint) from exc
            try:
                journal.accepted(mail.message_id, recipients)
            except JournalError as exc:
                raise MailError(f"{where} {mail.subject} was accepted by the server, but {exc.message}",
                                hint=f"free space in {exc.path.parent}, then run again with `--resume --in-doubt sent` "
                                     "(it arrived: the rest is sent, it is not)") from exc
            report.sent.append(mail.message_id)
            say(f"{where} sent {mail.message_id}: {mail.subject}")


def _freeze(project: Project, series: Series, applied: ApplyResult, cover_id: str) -> str:
    name = tag_name(series)
    tip = applied.commits[-1] if applied.commits else applied.base
    tag(applied.tree, name, tip, f"{series.name} v{series.version} as mailed, cover {cover_id}")
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    with project.editing(series.name) as current:  # as its files are now: `version new` may have run meanwhile
        info = current.version_info(series.version) or VersionInfo(series.version)
        others = [v for v in current.versions if v.number != series.version]
        current.versions = sorted([*others, replace(info, sent=now, tag=name)], key=lambda v: v.number)
        save_series(current)
    return name
