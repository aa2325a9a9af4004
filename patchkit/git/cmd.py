"""Where git runs: the command line, the helpers patchkit.git's gitpython users run git through, one environment.

Every git command runs in the pinned child locale (patchkit parses git's messages) and
with GIT_TERMINAL_PROMPT=0: patchkit often runs unattended (a cluster worker, CI) and a
password prompt would hang it. The user's git configuration (diff.noprefix, format.*,
stat widths, hooks, templates) is kept out, so what patchkit parses or stores (diffs,
patch-ids, mails, clones) is the same for every user. Two explicit exceptions:
``user_config=True`` for the commands that exist to read that configuration
(``git config --get sendemail.*``, ``git credential``), and ``prompt=True`` for
``git credential fill``, which asks on the terminal as git send-email does when no
helper knows the password. gitpython's commands run with ``GIT_ENV``, that same environment.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import git as gitpython

from patchkit.errors import ApplyError, UpstreamError
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


GIT_ENV = environment()  # gitpython's commands run with the same environment
log = logging.getLogger("patchkit.git")


def _logged(g: gitpython.Git, args: tuple[str, ...]) -> None:
    log.debug("git: %s (cwd=%s)", shlex.join(["git", *args]), g.working_dir or ".")


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


def open_repo(path: Path | str) -> gitpython.Repo:
    """The gitpython repository at ``path``; UpstreamError when it is not one."""
    try:
        return gitpython.Repo(path)
    except (gitpython.InvalidGitRepositoryError, gitpython.NoSuchPathError) as exc:
        raise UpstreamError(f"{path} is not a git repository",
                            hint="run `patchkit apply` to (re)create the work tree") from exc


def git_text(repo: gitpython.Repo | None, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a git command (in ``repo``), returning its stdout without the final newline."""
    g = repo.git if repo is not None else gitpython.Git()
    _logged(g, args)
    try:
        return g.execute(["git", *args], env={**GIT_ENV, **(env or {})})
    except gitpython.GitCommandError as exc:
        raise ApplyError(f"git {' '.join(args[:2])} failed: {exc.stderr.strip() or exc}") from exc


@dataclass(frozen=True)
class Outcome:
    """Whether a git command succeeded, and its output (its error output when it failed)."""

    ok: bool
    output: str


def git_try(repo: gitpython.Repo, *args: str, env: dict[str, str] | None = None) -> Outcome:
    """Run a git command that may fail; return whether it did and its output."""
    _logged(repo.git, args)
    status, out, err = repo.git.execute(["git", *args], env={**GIT_ENV, **(env or {})},
                                        with_extended_output=True, with_exceptions=False,
                                        strip_newline_in_stdout=False)
    return Outcome(status == 0, out if status == 0 else (err or out))


def resolve(repo: gitpython.Repo, rev: str) -> str:
    """The commit ``rev`` names; UpstreamError when the mirror does not have it."""
    result = git_try(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if not result.ok:
        raise UpstreamError(f"revision {rev} is not in the upstream mirror",
                            hint="check the revision, or re-run `patchkit vendor` to update the mirror")
    return result.output.strip()


@contextmanager
def temp_index() -> Iterator[dict[str, str]]:
    """An environment pointing git at a throwaway index file."""
    d = tempfile.mkdtemp(prefix="patchkit-index-")
    try:
        yield {"GIT_INDEX_FILE": str(Path(d) / "index")}
    finally:
        shutil.rmtree(d, ignore_errors=True)
