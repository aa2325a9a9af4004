"""A sendmail-like program as the transport, as git send-email uses one (msmtp, /usr/sbin/sendmail).

``sendemail.smtpServer`` naming a program by its absolute path: each message is piped to
``PROGRAM [sendemail.smtpServerOption...] -i -f SENDER RECIPIENT...`` with local (LF) line
ends, as git send-email runs it. Exit status 0 means the program took the message. Any
other ending leaves it in doubt: the program may have handed it to a server before it
failed (its own output says what happened), so only the user may have it sent again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from patchkit.errors import MailError, PatchkitError
from patchkit.mailer.smtp import DeliveryInDoubt
from patchkit.run import CommandTimeout, run

EX_USAGE, EX_CONFIG = 64, 78  # sysexits.h: refused its arguments or its configuration, before any sending


@dataclass(frozen=True)
class ProgramSettings:
    """The program (an absolute path) and the options that go before patchkit's."""

    program: str
    options: tuple[str, ...] = ()
    timeout: float = 300.0

    def describe(self) -> str:
        return " ".join([self.program, *self.options])


class ProgramTransport:
    """Sends each message by running the program once; a context manager like SmtpConnection."""

    def __init__(self, settings: ProgramSettings) -> None:
        self.settings = settings

    def __enter__(self) -> ProgramTransport:
        program = self.settings.program
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            raise MailError(f"sendemail.smtpServer names {program}, which is not an executable program",
                            hint="install it (msmtp, a sendmail), or name an SMTP host: --smtp-server HOST")
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def send(self, envelope_from: str, recipients: list[str], data: bytes) -> None:
        """Pipe one message (``data``, CRLF or LF line ends) to the program for ``recipients``."""
        s = self.settings
        for addr in (envelope_from, *recipients):
            if addr.startswith("-"):
                raise MailError(f"address {addr!r} would be read as an option of {s.program}",
                                hint="fix the address (manifest, --to/--cc, --from)")
        argv = [s.program, *s.options, "-i", "-f", envelope_from, *recipients]
        try:
            proc = run(argv, input=data.replace(b"\r\n", b"\n"), check=False, timeout=s.timeout)
        except CommandTimeout:
            raise DeliveryInDoubt(f"{s.program} did not finish within {s.timeout:g} s (stopped)",
                                  hint="it may have been delivered") from None
        except PatchkitError as exc:  # it could not be started: nothing was sent
            raise MailError(f"cannot run {s.program}: {exc.message}", hint="check sendemail.smtpServer") from None
        if proc.returncode == 0:
            return
        said = proc.stdout.decode("utf-8", "replace").strip().replace("\n", " / ") or "no output"
        failure = f"{s.program} exited with status {proc.returncode}: {said}"
        if proc.returncode in (EX_USAGE, EX_CONFIG):
            raise MailError(failure, hint="fix sendemail.smtpServerOption or the program's configuration")
        raise DeliveryInDoubt(failure, hint="it may have been delivered: the program's output above says how far "
                                            "it got")
