"""The ``patchkit`` click group and the one place errors become exit codes."""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from patchkit import __version__
from patchkit.cli import complete
from patchkit.errors import PatchkitError, Terminated
from patchkit.progress import shown
from patchkit.project import Project
from patchkit.store import Store, atomic_write


def _verbose(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``-v`` before or after the subcommand: log every command patchkit runs."""
    if value:
        _log_warnings()
        logging.getLogger("patchkit").setLevel(logging.DEBUG)  # patchkit's own, not its libraries' debug lines


def _log_warnings() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")


def _verbose_option() -> click.Option:
    return click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, is_eager=True, callback=_verbose,
                        help="Log every command patchkit runs.")


class PatchkitCommand(click.Command):
    """A subcommand: takes ``-v`` too, so that it works after the subcommand's name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(_verbose_option())


class PatchkitGroup(click.Group):
    """The ``patchkit`` group and its subgroups: their commands and subgroups take ``-v`` too."""

    command_class = PatchkitCommand
    group_class = type  # subgroups are PatchkitGroups

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(_verbose_option())


FC = TypeVar("FC", bound=Callable[..., Any] | click.Command)
CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.group(cls=PatchkitGroup, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="patchkit", message="%(prog)s %(version)s")
@click.option(
    "-C", "--project", "project", type=click.Path(file_okay=False, path_type=Path), default=".",
    show_default=True, help="The patchkit project (holds series/ and gpxe-tree/), or a directory inside it.",
)
@click.pass_context
def cli(ctx: click.Context, project: Path) -> None:
    """Manage, build, boot-test and mail firmware patch series."""
    _log_warnings()
    store = ctx.obj if isinstance(ctx.obj, Store) else Store.from_environment()  # main() passes its own
    ctx.obj = Project.find(project, store)


def echo(text: str, nl: bool = True, err: bool = False) -> None:
    """click.echo of text that may hold what others wrote (mail): control characters escaped (progress.shown)."""
    click.echo(shown(text), nl=nl, err=err)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def os_error(exc: OSError, store: Store) -> PatchkitError | None:
    """What an OSError means for the user: a full disk, or a damaged entry of the cache; None for anything else."""
    path = exc.filename
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {os.fsdecode(path)}" if path else ""
        return PatchkitError(f"no space left on the device{where} ({exc.strerror})",
                             hint="free space there (`df -h`), then run the command again")
    if path is None:
        return None
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PatchkitError(f"cannot write {os.fsdecode(path)} ({exc.strerror})",
                             hint="check its permissions and those of the directories above it")
    if exc.errno not in _IN_THE_WAY or not store.contains(Path(os.fsdecode(path))):
        return None
    return PatchkitError(f"{os.fsdecode(path)} in patchkit's cache is damaged or in the way ({exc.strerror})",
                         hint="move it aside or remove it: patchkit makes it again (keep a work tree's "
                              "uncaptured commits first)")


# A file where a directory belongs, or the other way round.
_IN_THE_WAY = (errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY)


def _crashed(store: Store) -> NoReturn:
    """A bug: the traceback goes to the crash log (or to stderr when even that cannot be written)."""
    text = traceback.format_exc()
    log = store.crash_log
    try:
        atomic_write(log, text)
    except OSError as exc:
        click.echo(text, err=True, nl=False)
        click.echo(f"patchkit crashed (a bug); the crash log {log} could not be written ({exc.strerror})", err=True)
    else:
        click.echo(f"patchkit crashed (a bug); the traceback is in {log}", err=True)
    sys.exit(3)


def main() -> None:
    """Entry point: a command's returned status (0 by default), 1 for user-facing errors, 130 on ^C,
    143 on SIGTERM (cleaned up as for ^C), 3 (plus a crash log) otherwise."""
    signal.signal(signal.SIGTERM, _terminate)
    store = Store.from_environment()
    try:
        status = cli.main(standalone_mode=False, obj=store, prog_name="patchkit")
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:  # click turns ^C into Abort
        if isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated):
            click.echo("Terminated.", err=True)
            sys.exit(128 + signal.SIGTERM)
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:
        # Parallel work (asyncio task groups) raises its errors as a group: each is judged alone.
        leaves = _leaves(exc)
        known = [e if isinstance(e, PatchkitError) else os_error(e, store) if isinstance(e, OSError) else None
                 for e in leaves]
        if any(e is None for e in known):
            _crashed(store)
        for error in dict.fromkeys(str(e) for e in known):
            click.echo(f"error: {error}", err=True)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions in ``exc``: itself, or the leaves of an exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


class Rev(click.ParamType[int]):
    """A series version as ``vN`` (or ``N``) -> N."""

    name = "vN"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value)
        digits = text[1:] if text[:1] in ("v", "V") else text
        if not digits.isdigit():
            self.fail(f"not a version: {text!r} (write versions as vN, e.g. v2)", param, ctx)
        return int(digits)


def rev_option(what: str) -> Callable[[FC], FC]:
    """``--rev vN``: the version a command works on (``what`` ends its help)."""
    return click.option("--rev", "rev", type=Rev(), metavar="vN", help=f"The series version {what}.",
                        shell_complete=complete.versions)


def series_argument() -> Callable[[FC], FC]:
    """The optional positional SERIES every command names its series with (default: the only one)."""
    return click.argument("series", required=False, shell_complete=complete.series_names)


def progress(message: str) -> None:
    """Where a command is: stderr (stdout holds only its results, also when piped)."""
    if message:
        click.echo(message, err=True)


def steps_shown() -> Callable[[str], None]:
    """Where to say "[7/24] ..., about 1 min left": stderr on a terminal, nowhere otherwise."""
    return progress if sys.stderr.isatty() else _nowhere


def _nowhere(_message: str) -> None:
    pass


def next_step(command: str) -> None:
    """The last line of a command: what to run next (stderr, with the progress)."""
    click.echo(f"next: {command}", err=True)
