"""`patchkit` commands: mail."""

from patchkit.cli.base import cli  # noqa: F401
