"""`patchkit` commands: guest."""

from patchkit.cli.base import cli  # noqa: F401
