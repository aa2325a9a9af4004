"""`patchkit` commands: test."""

from patchkit.cli.base import cli  # noqa: F401
