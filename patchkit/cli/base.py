"""The ``patchkit`` click group and the one place errors become exit codes."""

from __future__ import annotations

import logging
import signal
import sys
import traceback
from pathlib import Path

import click

from patchkit.errors import PatchkitError, Terminated
from patchkit.store import atomic_write, cache_dir


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log every command patchkit runs.")
@click.option(
    "-C", "--project", "project", type=click.Path(file_okay=False, path_type=Path), default=".",
    show_default=True, help="The patchkit project (holds series/ and gpxe-tree/).",
)
@click.pass_context
def cli(ctx: click.Context, verbose: bool, project: Path) -> None:
    """Manage, build, boot-test and mail firmware patch series."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(name)s: %(message)s")
    ctx.obj = project.resolve()


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main() -> None:
    """Entry point: a command's returned status (0 by default), 1 for user-facing errors, 130 on ^C,
    143 on SIGTERM (cleaned up as for ^C), 3 (plus a crash log) otherwise."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        status = cli.main(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:  # click turns ^C into Abort
        if isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated):
            click.echo("Terminated.", err=True)
            sys.exit(128 + signal.SIGTERM)
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PatchkitError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except Exception:
        log = cache_dir() / "crash.log"
        atomic_write(log, traceback.format_exc())
        click.echo(f"patchkit crashed (a bug); the traceback is in {log}", err=True)
        sys.exit(3)
    sys.exit(status if isinstance(status, int) else 0)
