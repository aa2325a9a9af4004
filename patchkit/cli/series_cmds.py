"""`patchkit` commands: series."""

from patchkit.cli.base import cli  # noqa: F401
