"""The user's git configuration as git send-email reads it: sendemail.* and user.*, under options and
environment variables. Below both the mailer (SMTP settings) and review/ (whose Signed-off-by is the sender's).
"""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import formataddr, parseaddr
from pathlib import Path

from patchkit.errors import MailError
from patchkit.git.cmd import git

# setting name -> (environment variable, git config key)
_SOURCES = {
    "server": ("PATCHKIT_SMTP_SERVER", "sendemail.smtpServer"),
    "port": ("PATCHKIT_SMTP_PORT", "sendemail.smtpServerPort"),
    "encryption": ("PATCHKIT_SMTP_ENCRYPTION", "sendemail.smtpEncryption"),
    "user": ("PATCHKIT_SMTP_USER", "sendemail.smtpUser"),
    "password": ("PATCHKIT_SMTP_PASS", "sendemail.smtpPass"),
    "ca": ("PATCHKIT_SMTP_CA", "sendemail.smtpSslCertPath"),
    "sender": ("PATCHKIT_FROM", "sendemail.from"),
}


def git_config(project: Path, key: str) -> str | None:
    """``git config --get KEY`` as seen from ``project`` (repository, global, system), or None."""
    proc = git("config", "--get", key, cwd=project, check=False, user_config=True)
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8", "replace").rstrip("\n")


def git_config_all(project: Path, key: str) -> list[str]:
    """Every value of a multi-valued ``git config --get-all KEY`` (sendemail.smtpServerOption)."""
    proc = git("config", "--get-all", key, cwd=project, check=False, user_config=True)
    return proc.stdout.decode("utf-8", "replace").splitlines() if proc.returncode == 0 else []


def lookup(name: str, project: Path, options: Mapping[str, str | None], environ: Mapping[str, str]) -> str | None:
    """Setting ``name`` (a key of _SOURCES): ``options`` over ``environ`` over git config."""
    if options.get(name):
        return options[name]
    env, key = _SOURCES[name]
    if environ.get(env):
        return environ[env]
    return git_config(project, key)


def read_sender(project: Path, options: Mapping[str, str | None], environ: Mapping[str, str]) -> str:
    """The sender identity ("Name <addr>"): --from, PATCHKIT_FROM, sendemail.from, else user.name/user.email."""
    sender = lookup("sender", project, options, environ)
    if not sender:
        name, email = git_config(project, "user.name"), git_config(project, "user.email")
        if email:
            sender = formataddr((name or "", email))
    if not sender or "@" not in parseaddr(sender)[1]:
        raise MailError("no sender address", hint="pass --from 'Name <addr>' or `git config user.email ADDR`")
    return sender
