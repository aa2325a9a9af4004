"""`patchkit report`: a static HTML page of one series revision."""

from __future__ import annotations

from pathlib import Path

import click

from patchkit.cli.base import cli, echo, rev_option, series_argument
from patchkit.project import Project
from patchkit.report.data import gather
from patchkit.report.mail import mail_report
from patchkit.report.page import write_report


@cli.command("report")
@series_argument()
@rev_option("to report (default: the current one)")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write index.html and the run artifacts to (default: the cache's reports/).")
@click.option("--mail", "mail", is_flag=True, help="Post the test report as a reply to the version's cover letter.")
@click.option("--dry-run", is_flag=True, help="With --mail: show the reply, send nothing.")
@click.option("--resend", is_flag=True,
              help="With --mail: send a report on a revision that already has one (or may have: in doubt) again.")
@click.option("--from", "sender", help="With --mail: the sender (default as send-email: sendemail.from, user.email).")
@click.option("--smtp-server", help="With --mail: SMTP host (default as send-email: sendemail.smtpServer).")
@click.option("--smtp-port", help="With --mail: SMTP port (sendemail.smtpServerPort).")
@click.option("--smtp-encryption", type=click.Choice(["tls", "ssl", "none"]), help="With --mail: tls or ssl.")
@click.option("--smtp-user", help="With --mail: SMTP AUTH user (the password as for send-email).")
@click.pass_obj
def report_cmd(project: Project, series: str | None, rev: int | None, output: Path | None, mail: bool,
               dry_run: bool, resend: bool, sender: str | None, smtp_server: str | None, smtp_port: str | None,
               smtp_encryption: str | None, smtp_user: str | None) -> None:
    """Write an offline HTML report: cover, diffs, builds, test matrix with screenshots, range-diff, review."""
    s = project.series(series)
    if mail:
        sent = mail_report(project, s, rev, dry_run=dry_run, resend=resend,
                           smtp={"server": smtp_server, "port": smtp_port, "encryption": smtp_encryption,
                                 "user": smtp_user, "sender": sender})
        if dry_run:
            echo(sent.as_bytes().decode("utf-8", "replace"), nl=False)
        else:
            click.echo(f"sent {sent.message['Message-ID']} in reply to {sent.message['In-Reply-To']} "
                       f"via {sent.server}")
        return
    if dry_run or resend:
        raise click.UsageError("--dry-run and --resend go with --mail")
    data = gather(project, s, rev)
    out = output or project.store.reports / f"{s.name}-v{data.series.version}"
    page = write_report(data, out)
    click.echo(f"{page} ({data.matrix.runs} run(s), {len(data.series.patches)} patch(es))")
