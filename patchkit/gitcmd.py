"""The one place patchkit runs the git command line, and the one definition of git's environment.

Every git command runs in the pinned child locale (patchkit parses git's messages) and
with GIT_TERMINAL_PROMPT=0: patchkit often runs unattended (a cluster worker, CI) and a
password prompt would hang it. The user's git configuration (diff.noprefix, format.*,
stat widths, hooks, templates) is kept out, so what patchkit parses or stores (diffs,
patch-ids, mails, clones) is the same for every user. Two explicit exceptions:
``user_config=True`` for the commands that exist to read that configuration
(``git config --get sendemail.*``, ``git credential``), and ``prompt=True`` for
``git credential fill``, which asks on the terminal as git send-email does when no
helper knows the password. gitrepo (gitpython) passes ``environment()`` to its commands.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from patchkit.run import CHILD_LOCALE, StrPath, run, run_logged

NO_PROMPT = {"GIT_TERMINAL_PROMPT": "0"}
NO_USER_CONFIG = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def environment(*, user_config: bool = False, prompt: bool = False) -> dict[str, str]:
    """The variables git runs with (added to patchkit's own environment)."""
    env = dict(CHILD_LOCALE)
    if not prompt:
        env.update(NO_PROMPT)
    if not user_config:
        env.update(NO_USER_CONFIG)
    return env


def git(
    *args: StrPath,
    cwd: StrPath | None = None,
    input: bytes | None = None,
    check: bool = True,
    user_config: bool = False,
    prompt: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git ARGS`` to completion (stdout and stderr merged), as patchkit.run.run does."""
    return run(["git", *args], cwd=cwd, env=environment(user_config=user_config, prompt=prompt),
               input=input, check=check)


def git_logged(*args: StrPath, logfile: Path, on_line: Callable[[str], None] | None = None,
               user_config: bool = False) -> int:
    """Run ``git ARGS`` streaming its output to ``logfile`` (and ``on_line``); return its exit status."""
    return run_logged(["git", *args], logfile, env=environment(user_config=user_config), on_line=on_line)
