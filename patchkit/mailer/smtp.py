"""SMTP settings (read like git send-email's) and a connection that sends one message at a time.

Settings come from, in order of precedence: command-line options, environment
(``PATCHKIT_SMTP_SERVER``, ``_PORT``, ``_ENCRYPTION``, ``_USER``, ``_PASS``, ``_CA``,
``PATCHKIT_FROM``), then git config of the project repository and the global config
(``sendemail.smtpServer``, ``smtpServerPort``, ``smtpEncryption`` tls|ssl,
``smtpUser``, ``smtpPass``, ``smtpSslCertPath``, ``sendemail.from``, else
``user.name``/``user.email``). With a user and no password, the password comes from
`git credential fill` as git send-email's does (credential helpers, else git's own
terminal prompt), and is approved or rejected after the login. Certificates are
always verified. The password is never printed, logged or put in an error message.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from patchkit.errors import MailError
from patchkit.git.cmd import git
from patchkit.git.config import lookup

ENCRYPTIONS = ("", "tls", "ssl")
AUTH_MECHANISMS = ("CRAM-MD5", "PLAIN", "LOGIN")  # smtplib's, in its order of preference
DEFAULT_PORTS = {"": 25, "tls": 587, "ssl": 465}

@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send. ``password`` is kept out of repr()."""

    server: str
    port: int
    encryption: str = ""  # "" (plain), "tls" (STARTTLS) or "ssl" (implicit TLS)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    ca: Path | None = None  # CA file or directory to trust instead of the system store
    timeout: float = 60.0
    credential_repo: Path | None = None  # where `git credential` gave the password, to approve or reject it

    def describe(self) -> str:
        """A one-line, secret-free description."""
        how = {"": "plain", "tls": "STARTTLS", "ssl": "TLS"}[self.encryption]
        auth = f", AUTH as {self.user}" if self.user else ""
        return f"{self.server}:{self.port} ({how}{auth})"


def read_settings(project: Path, options: Mapping[str, str | None], environ: Mapping[str, str]) -> SmtpSettings:
    """Resolve the SMTP settings: ``options`` (keys as in _SOURCES) over ``environ`` over git config."""
    server = lookup("server", project, options, environ)
    if not server:
        raise MailError("no SMTP server configured",
                        hint="pass --smtp-server, set PATCHKIT_SMTP_SERVER, or `git config sendemail.smtpServer HOST`")
    encryption = (lookup("encryption", project, options, environ) or "").lower()
    if encryption == "none":
        encryption = ""
    if encryption not in ENCRYPTIONS:
        raise MailError(f"unknown SMTP encryption {encryption!r}", hint="use tls (STARTTLS) or ssl (implicit TLS)")
    port_text = lookup("port", project, options, environ)
    try:
        port = int(port_text) if port_text else DEFAULT_PORTS[encryption]
    except ValueError:
        raise MailError(f"SMTP port is not a number: {port_text!r}", hint="pass --smtp-port N") from None
    user = lookup("user", project, options, environ)
    password = lookup("password", project, options, environ)
    credential_repo = None
    if user and not password:
        password = git_credential(project, "fill", server, port, user)
        if not password:
            raise MailError(f"SMTP user {user} has no password (no credential helper gave one, no terminal to ask)",
                            hint="set PATCHKIT_SMTP_PASS, `git config sendemail.smtpPass`, or a git credential helper")
        credential_repo = project
    ca = lookup("ca", project, options, environ)
    return SmtpSettings(server, port, encryption, user or None, password or None, Path(ca) if ca else None,
                        credential_repo=credential_repo)


def git_credential(project: Path, action: str, server: str, port: int, user: str, password: str = "") -> str | None:
    """`git credential ACTION` (fill, approve, reject) for smtp://user@server:port; fill returns the password."""
    request = f"protocol=smtp\nhost={server}:{port}\nusername={user}\n"
    if password:
        request += f"password={password}\n"
    # fill may ask on the terminal (git send-email does) when no credential helper knows the password.
    proc = git("credential", action, cwd=project, input=(request + "\n").encode(), check=False,
               user_config=True, prompt=action == "fill")
    if action != "fill" or proc.returncode != 0:
        return None
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("password="):
            return line.removeprefix("password=")
    return None


class RecipientsRefused(MailError):
    """The server refused some recipients of a message; nothing of it was delivered."""

    def __init__(self, refused: dict[str, tuple[int, bytes]]) -> None:
        self.refused = refused
        detail = "; ".join(f"{r}: {code} {msg.decode('utf-8', 'replace')}" for r, (code, msg) in refused.items())
        super().__init__(f"the SMTP server refused recipient(s): {detail}",
                         hint="fix the address (--to/--cc or the manifest) and run again with --resume")


class DeliveryInDoubt(MailError):
    """The whole message went to the server (or program), and no answer came: it may have been delivered."""


class SmtpConnection:
    """One authenticated SMTP session; a context manager that always closes the socket."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def _tls_context(self) -> ssl.SSLContext:
        ca = self.settings.ca
        if ca is None:
            return ssl.create_default_context()
        if ca.is_dir():
            return ssl.create_default_context(capath=str(ca))
        if not ca.is_file():
            raise MailError(f"SMTP CA certificate file not found: {ca}",
                            hint="fix --smtp-ca / sendemail.smtpSslCertPath")
        return ssl.create_default_context(cafile=str(ca))

    def __enter__(self) -> SmtpConnection:
        s = self.settings
        try:
            if s.encryption == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.server, s.port, timeout=s.timeout, context=self._tls_context())
            else:
                smtp = smtplib.SMTP(s.server, s.port, timeout=s.timeout)
            self._smtp = smtp
            smtp.ehlo()
            if s.encryption == "tls":
                if not smtp.has_extn("starttls"):
                    raise MailError(f"{s.describe()} does not offer STARTTLS", hint="check --smtp-encryption")
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            if s.user:
                self._login(smtp)
        except BaseException as exc:
            self.close()
            raise _mail_error(exc, s) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _login(self, smtp: smtplib.SMTP) -> None:
        """AUTH with one mechanism; a password from `git credential` is approved when it worked, rejected when refused.

        smtplib's login() tries every advertised mechanism after a refusal; servers that tarpit or
        ignore repeated failures then turn a wrong password into a time-out. One refusal is the answer.
        """
        s = self.settings
        assert s.user is not None
        if not smtp.has_extn("auth"):
            raise smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
        advertised = smtp.esmtp_features["auth"].upper().split()
        mechanism = next((m for m in AUTH_MECHANISMS if m in advertised), None)
        if mechanism is None:
            raise MailError(f"{s.describe()} offers no AUTH mechanism patchkit speaks ({' '.join(advertised)})",
                            hint=f"patchkit logs in with {', '.join(AUTH_MECHANISMS)}")
        smtp.user, smtp.password = s.user, s.password or ""
        try:
            smtp.auth(mechanism, getattr(smtp, "auth_" + mechanism.lower().replace("-", "_")))
        except smtplib.SMTPAuthenticationError:
            if s.credential_repo is not None:
                git_credential(s.credential_repo, "reject", s.server, s.port, s.user, s.password or "")
            raise
        if s.credential_repo is not None:
            git_credential(s.credential_repo, "approve", s.server, s.port, s.user, s.password or "")

    def close(self) -> None:
        if self._smtp is None:
            return
        smtp, self._smtp = self._smtp, None
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()

    def send(self, envelope_from: str, recipients: list[str], data: bytes) -> None:
        """Deliver one message (``data`` with CRLF line ends) to all ``recipients`` or to none.

        Raises RecipientsRefused when any recipient is refused (the transaction is
        reset, so nothing is delivered), DeliveryInDoubt when the whole message went to
        the server but no reply came (it may have been delivered), MailError for any
        other failure, including a reply other than 250 at the end of DATA.
        """
        smtp = self._smtp
        assert smtp is not None, "send() outside the connection context"
        try:
            options = ["BODY=8BITMIME"] if _is_8bit(data) and smtp.has_extn("8bitmime") else []
            code, resp = smtp.mail(envelope_from, options)
            if code != 250:
                hint = ("the server wants TLS or a login first: --smtp-encryption tls, --smtp-user"
                        if code == 530 else "check --from / sendemail.from")
                raise MailError(f"the SMTP server refused MAIL FROM {envelope_from}: "
                                f"{code} {resp.decode('utf-8', 'replace')}", hint=hint)
            refused = {}
            for rcpt in recipients:
                code, resp = smtp.rcpt(rcpt)
                if code not in (250, 251):
                    refused[rcpt] = (code, resp)
            if refused:
                smtp.rset()
                raise RecipientsRefused(refused)
            code, resp = smtp.docmd("DATA")
            if code != 354:
                raise MailError(f"the SMTP server refused DATA: {code} {resp.decode('utf-8', 'replace')}",
                                hint="nothing of it was delivered; once the server accepts mail, run again "
                                     "with --resume")
            smtp.send(_dot_stuffed(data))
        except MailError:
            raise
        except BaseException as exc:
            raise _mail_error(exc, self.settings) from None
        # The whole message went to the server: from here on, only a reply says what became of it.
        try:
            code, resp = smtp.getreply()
        except OSError as exc:  # closed, reset or timed out: no reply at all
            raise DeliveryInDoubt(f"{self.settings.describe()} took the whole message but gave no answer ({exc})",
                                  hint="it may have been delivered") from None
        if code != 250:
            raise MailError(f"the SMTP server did not accept the message: {code} {resp.decode('utf-8', 'replace')}",
                            hint="nothing of it was delivered; once the server accepts mail, run again with --resume")


def _dot_stuffed(data: bytes) -> bytes:
    """``data`` as DATA sends it: lines starting with a dot get another, then the ending ``.`` line."""
    body = re.sub(rb"(?m)^\.", b"..", data)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


def _is_8bit(data: bytes) -> bool:
    return any(b > 127 for b in data)


def _mail_error(exc: BaseException, s: SmtpSettings) -> BaseException:
    """A MailError for ``exc`` that names the server but never the password."""
    where = s.describe()
    if isinstance(exc, (MailError, KeyboardInterrupt)):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        return MailError(f"TLS certificate of {where} failed verification: {exc.verify_message}",
                         hint="pass --smtp-ca FILE (or sendemail.smtpSslCertPath) to trust its CA")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return MailError(f"{where} rejected the login: {exc.smtp_code}",
                         hint="check the SMTP user and password (PATCHKIT_SMTP_PASS / sendemail.smtpPass / "
                              "git credential)")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return MailError(f"{where}: {exc}", hint="the server may require STARTTLS before AUTH: --smtp-encryption tls")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return MailError(f"{where} closed the connection: {exc}",
                         hint="run again with --resume to send the messages not yet accepted")
    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error
        text = error.decode("utf-8", "replace") if isinstance(error, bytes) else error
        return MailError(f"{where} answered {exc.smtp_code} {text}",
                         hint="run again with --resume once the server accepts mail")
    if isinstance(exc, (socket.timeout, ConnectionError, OSError)):
        return MailError(f"cannot talk to {where}: {exc}",
                         hint="check --smtp-server/--smtp-port, then run again "
                              "(with --resume if a send was interrupted)")
    return exc
