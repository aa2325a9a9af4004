"""The command line: a thin click layer over patchkit's modules.

Each area registers its commands in its own module; importing them here wires
them into the ``patchkit`` group.
"""

from patchkit.cli.base import cli, main

__all__ = ["cli", "main"]

# Command modules register themselves on import.
from patchkit.cli import (  # noqa: F401
    build_cmds,
    coverage_cmds,
    guest_cmds,
    mail_cmds,
    report_cmds,
    review_cmds,
    series_cmds,
    setup_cmds,
    test_cmds,
    triage_cmds,
)
