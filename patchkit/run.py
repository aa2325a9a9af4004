"""The only place patchkit starts subprocesses.

Every command is logged, gets stdin from /dev/null, and is always waited for:
on any exception (including KeyboardInterrupt) the child is terminated, then killed.
When patchkit is killed outright, its children follow (PR_SET_PDEATHSIG): background
processes (``spawned``: QEMU, vblade) get SIGKILL, logged runs (``run_logged``: make)
SIGTERM, so none is left running after a SIGKILL.
Failures become a PatchkitError carrying the command and the tail of its output.
Programs not on PATH are also looked for in the sbin directories: Debian keeps tools
patchkit runs without root there (mkfs.fat), and a normal user's PATH lacks them.
Children run in the C.UTF-8 locale, whatever the user's: patchkit parses their output
(compiler warnings, git's messages), which a translation would change.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from patchkit.errors import PatchkitError

log = logging.getLogger("patchkit.run")

StrPath = str | os.PathLike[str]

SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"
SETUP_HINT = "`bash ci/setup.sh` installs the programs patchkit runs"
# LANGUAGE outranks LC_ALL in gettext unless the locale is plain C; empty, it is ignored.
CHILD_LOCALE = {"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "LANGUAGE": ""}


class CommandError(PatchkitError):
    """A command exited non-zero."""

    def __init__(self, argv: Sequence[StrPath], returncode: int, output: str) -> None:
        self.argv = [str(a) for a in argv]
        self.returncode = returncode
        self.output = output
        tail = "\n".join(output.rstrip().splitlines()[-20:])
        message = f"command failed with exit status {returncode}: {shlex.join(self.argv)}"
        if tail:
            message += "\n" + tail
        super().__init__(message)


class CommandTimeout(PatchkitError, subprocess.TimeoutExpired):
    """A command did not finish within its timeout (it was stopped).

    Also a subprocess.TimeoutExpired, for callers that catch that.
    """

    def __init__(self, argv: Sequence[StrPath], timeout: float, output: bytes | None = None) -> None:
        self.argv = [str(a) for a in argv]
        subprocess.TimeoutExpired.__init__(self, self.argv, timeout, output)  # cmd, timeout, output, stderr
        self.message = f"command did not finish within {timeout:g} s (stopped): {shlex.join(self.argv)}"
        self.hint = None


def run(
    argv: Sequence[StrPath],
    *,
    cwd: StrPath | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    check: bool = True,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` to completion, capturing stdout and stderr (merged into stdout).

    ``env`` entries are added to the current environment (in the C.UTF-8 locale). Raises CommandError when
    ``check`` and the command fails, CommandTimeout when it outlives ``timeout`` seconds,
    PatchkitError when the program does not exist.
    """
    full_env = _child_env(env)
    args = _resolve(argv, full_env)
    log.debug("run: %s (cwd=%s)", shlex.join(args), cwd or ".")
    try:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except FileNotFoundError as exc:
        raise PatchkitError(f"program not found: {args[0]}", hint=SETUP_HINT) from exc
    with proc:
        try:
            out, _ = proc.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            raise CommandTimeout(argv, timeout or 0) from None
        except BaseException:
            _stop(proc)
            raise
    result = subprocess.CompletedProcess(args, proc.returncode, out, None)
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, out.decode("utf-8", "replace"))
    return result


def run_logged(
    argv: Sequence[StrPath],
    logfile: Path,
    *,
    cwd: StrPath | None = None,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> int:
    """Run ``argv`` streaming its merged output to ``logfile`` (and ``on_line``); return the exit status."""
    full_env = _child_env(env)
    args = _resolve(argv, full_env)
    log.debug("run: %s (cwd=%s, log=%s)", shlex.join(args), cwd or ".", logfile)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "w", encoding="utf-8", errors="replace") as sink:
        try:
            # SIGTERM when patchkit dies: make then stops its jobs and deletes the targets they were writing.
            proc = subprocess.Popen(
                args, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                preexec_fn=_die_with_parent(signal.SIGTERM),  # noqa: PLW1509 (see _die_with_parent)
            )
        except FileNotFoundError as exc:
            raise PatchkitError(f"program not found: {args[0]}", hint=SETUP_HINT) from exc
        with proc:
            try:
                _pump(proc.stdout, sink, on_line)
                proc.wait()
            except BaseException:
                _stop(proc)
                raise
    return proc.returncode


@contextlib.contextmanager
def spawned(
    argv: Sequence[StrPath], *, stderr_file: Path, cwd: StrPath | None = None, pass_fds: Sequence[int] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv`` in the background (stdout piped, stderr to ``stderr_file``) and yield it.

    ``pass_fds``: descriptors the child inherits under the same numbers (e.g. QEMU's monitor socket).

    However the block is left (including KeyboardInterrupt), the child is
    terminated, then killed, and always reaped. Callers may stop it more politely first.
    """
    full_env = _child_env(None)
    args = _resolve(argv, full_env)
    log.debug("spawn: %s (cwd=%s)", shlex.join(args), cwd or ".")
    with open(stderr_file, "wb") as err:
        try:
            proc = subprocess.Popen(args, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=err, pass_fds=pass_fds,
                                    preexec_fn=_die_with_parent(signal.SIGKILL))  # noqa: PLW1509 (see _die_with_parent)
        except FileNotFoundError as exc:
            raise PatchkitError(f"program not found: {args[0]}", hint=SETUP_HINT) from exc
    with proc:
        try:
            yield proc
        finally:
            _stop(proc)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _die_with_parent(sig: signal.Signals) -> Callable[[], None]:
    """A preexec_fn: the child gets ``sig`` when the thread that started it ends (patchkit is killed).

    The setting survives exec (also through `ip netns exec`, which execs its command). patchkit
    forks from several threads (asyncio.to_thread, a cluster worker's task threads), where a
    preexec_fn that took a lock held by another thread at the fork would hang the child: this one
    only makes the prctl call (looked up before the fork) and reads its parent's pid. Every
    caller waits for or stops its child before the starting thread can end.
    """
    parent = os.getpid()
    prctl = _libc().prctl  # looked up before the fork: the child only calls it

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the setting took effect
            os.kill(os.getpid(), sig)

    return arm


def _child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """patchkit's environment in the C.UTF-8 locale, then ``env``."""
    return {**os.environ, **CHILD_LOCALE, **(env or {})}


def _resolve(argv: Sequence[StrPath], env: Mapping[str, str]) -> list[str]:
    """``argv`` as strings, its program taken from the sbin directories when PATH lacks it."""
    args = [str(a) for a in argv]
    path = env.get("PATH", os.defpath)
    if os.sep not in args[0] and shutil.which(args[0], path=path) is None:
        args[0] = shutil.which(args[0], path=SBIN_PATH) or args[0]
    return args


def _pump(stream: IO[str] | None, sink: IO[str], on_line: Callable[[str], None] | None) -> None:
    assert stream is not None
    for line in stream:
        sink.write(line)
        if on_line is not None:
            on_line(line.rstrip("\n"))


def _stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """Terminate, then kill, and always reap ``proc``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
