"""`patchkit send-email`: mail a tested series revision (or write it as an mbox)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from patchkit.cli.base import cli, echo, series_argument
from patchkit.mailer.send import SendOptions, SendReport, send_email
from patchkit.project import Project


@cli.command("send-email")
@series_argument()
@click.option("--to", "to", multiple=True, help="Recipient (repeatable); added to the manifest's `to`.")
@click.option("--cc", "cc", multiple=True, help="Cc recipient (repeatable); added to the manifest's `cc`.")
@click.option("--no-to", is_flag=True, help="Leave out the manifest's `to` (only --to's).")
@click.option("--no-cc", is_flag=True, help="Leave out the manifest's `cc` (only --cc's).")
@click.option("--subject-prefix", help="Subject prefix instead of the manifest's (default PATCH).")
@click.option("--from", "sender", help="Sender 'Name <addr>' (default: sendemail.from, else user.name/user.email).")
@click.option("--dry-run", is_flag=True, help="Show what would be sent and to whom; send nothing.")
@click.option("--mbox", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the series to this mbox instead of sending.")
@click.option("--force", is_flag=True, help="Send although the gate refuses (needs --reason).")
@click.option("--reason", help="Why --force is justified; recorded in the journal and the cover letter.")
@click.option("--resend", is_flag=True, help="Send a revision that was already sent again.")
@click.option("--resume", is_flag=True, help="Finish an interrupted send: only the messages not yet accepted.")
@click.option("--in-doubt", type=click.Choice(["sent", "resend"]),
              help="With --resume: a message that went to the server without a recorded answer arrived (sent) "
                   "or did not (resend).")
@click.option("--new-recipients", is_flag=True,
              help="With --resume: send the rest to other recipients (--to/--cc) than the part already sent.")
@click.option("--yes", "-y", "yes", is_flag=True,
              help="Send without asking (on a terminal send-email asks first, unless sendemail.confirm = never).")
@click.option("--smtp-server", help="SMTP host, or the absolute path of a sendmail-like program such as msmtp "
              "(sendemail.smtpServer, PATCHKIT_SMTP_SERVER).")
@click.option("--smtp-server-option", "server_options", multiple=True,
              help="Option for that program (repeatable; sendemail.smtpServerOption).")
@click.option("--smtp-port", help="SMTP port (sendemail.smtpServerPort, PATCHKIT_SMTP_PORT).")
@click.option("--smtp-encryption", type=click.Choice(["tls", "ssl", "none"]),
              help="tls = STARTTLS, ssl = implicit TLS (sendemail.smtpEncryption).")
@click.option("--smtp-user", help="SMTP AUTH user (sendemail.smtpUser); the password comes from "
              "PATCHKIT_SMTP_PASS, sendemail.smtpPass or `git credential`, never the command line.")
@click.option("--smtp-ca", type=click.Path(exists=True, path_type=Path),
              help="CA certificate(s) to trust for the server (sendemail.smtpSslCertPath).")
@click.pass_obj
def send_email_cmd(project: Project, series: str | None, to: tuple[str, ...], cc: tuple[str, ...], no_to: bool,
                   no_cc: bool,
                   subject_prefix: str | None, sender: str | None, dry_run: bool, mbox: Path | None,
                   force: bool, reason: str | None, resend: bool, resume: bool, in_doubt: str | None,
                   new_recipients: bool, yes: bool, smtp_server: str | None, server_options: tuple[str, ...],
                   smtp_port: str | None, smtp_encryption: str | None, smtp_user: str | None,
                   smtp_ca: Path | None) -> None:
    """Mail SERIES (default: the only one) as a threaded vN series with a cover letter."""
    if dry_run and mbox is not None:
        raise click.UsageError("--dry-run and --mbox are two ways of not sending: pick one")
    if reason and not force:
        raise click.UsageError("--reason goes with --force (it records why the gate was overridden)")
    if (in_doubt or new_recipients) and not resume:
        raise click.UsageError("--in-doubt and --new-recipients go with --resume")
    options = SendOptions(
        to=list(to), cc=list(cc), no_to=no_to, no_cc=no_cc, subject_prefix=subject_prefix, sender=sender,
        dry_run=dry_run, mbox=mbox, force=force, reason=reason, resend=resend, resume=resume, in_doubt=in_doubt,
        new_recipients=new_recipients, yes=yes, server_options=list(server_options),
        confirm=_ask if sys.stdin.isatty() and sys.stderr.isatty() else None,
        smtp={"server": smtp_server, "port": smtp_port, "encryption": smtp_encryption,
              "user": smtp_user, "ca": str(smtp_ca) if smtp_ca else None},
    )
    report = send_email(project, series, options, progress=lambda msg: echo(msg, err=True))
    if dry_run:
        _show_dry_run(report)
    elif mbox is None:
        click.echo(f"sent {len(report.sent)} message(s) of {report.series} v{report.version} via {report.server}"
                   + (f" ({len(report.skipped)} were already sent)" if report.skipped else ""))


def _ask(question: str) -> bool:
    return click.confirm(question, default=False, err=True)


def _show_dry_run(report: SendReport) -> None:
    env = report.envelope
    click.echo(f"Dry run: {report.series} v{report.version} (revision {report.revision[:12]}), nothing sent.")
    if report.gate.refusal is not None:
        banner = "*" * 72
        click.echo(f"{banner}\n* A real send would be REFUSED: {report.gate.refusal}\n{banner}")
    click.echo(f"From: {env.sender}")
    click.echo(f"To: {', '.join(env.to) or '-'}")
    click.echo(f"Cc: {', '.join(env.cc) or '-'}")
    click.echo(f"Envelope recipients: {', '.join(env.recipients) or '-'}")
    if report.gate.forced:
        click.echo(f"Forced past: {'; '.join(report.gate.problems)} (reason: {report.gate.forced_reason})")
    for mail in report.mails:
        click.echo(f"\n{'=' * 72}")
        echo(mail.as_bytes().decode("utf-8", "replace"), nl=False)
