"""`patchkit` commands: build."""

from patchkit.cli.base import cli  # noqa: F401
