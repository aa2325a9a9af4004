"""How messages leave: an SMTP server or a sendmail-like program, chosen as git send-email chooses.

``sendemail.smtpServer`` (or ``--smtp-server``, ``PATCHKIT_SMTP_SERVER``) naming an absolute
path is a program (mailer.program), anything else an SMTP host (mailer.smtp). Both send one
message at a time through ``Journal.attempt``, which journals them alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from patchkit.git.config import git_config_all, lookup
from patchkit.mailer.program import ProgramSettings, ProgramTransport
from patchkit.mailer.smtp import SmtpConnection, SmtpSettings, read_settings


class Transport(Protocol):
    """One message at a time; raises MailError (DeliveryInDoubt when it may have been delivered)."""

    def send(self, envelope_from: str, recipients: list[str], data: bytes) -> None: ...


Settings = SmtpSettings | ProgramSettings


def read_transport(project: Path, options: Mapping[str, str | None], environ: Mapping[str, str],
                   server_options: Sequence[str] = ()) -> Settings:
    """The transport's settings: a program when the server is an absolute path (its options from
    ``server_options``, else ``sendemail.smtpServerOption``), else SMTP settings (smtp.read_settings)."""
    server = lookup("server", project, options, environ)
    if server and server.startswith("/"):
        extra = tuple(server_options) or tuple(git_config_all(project, "sendemail.smtpServerOption"))
        return ProgramSettings(server, extra)
    return read_settings(project, options, environ)


def connect(settings: Settings) -> SmtpConnection | ProgramTransport:
    """The transport for ``settings``, to use as a context manager."""
    if isinstance(settings, ProgramSettings):
        return ProgramTransport(settings)
    return SmtpConnection(settings)
