"""The one exception type a user sees, and its specialisations."""

from __future__ import annotations


class PatchkitError(Exception):
    """An error the user must see: a message saying what went wrong and what to do.

    The CLI prints ``message`` (and ``hint`` when given) and exits with status 1.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class Terminated(KeyboardInterrupt):
    """SIGTERM: handled like ^C (every clean-up runs), but the command exits 143."""


class SeriesError(PatchkitError):
    """The series sources are invalid (the message names the file and line)."""


class NotAProjectError(SeriesError):
    """A command that needs a project's series run outside any project."""


class UpstreamError(PatchkitError):
    """The pinned upstream cannot be reached, imported or found in the cache."""


class ApplyError(PatchkitError):
    """A patch did not apply; the tree was left as it was."""


class DirtyTreeError(PatchkitError):
    """The work tree has uncommitted changes that an operation would clobber."""


class BuildError(PatchkitError):
    """The firmware did not build, or the built ROM failed its checks."""


class GuestError(PatchkitError):
    """A guest image could not be built or imported."""


class BootError(PatchkitError):
    """QEMU could not be started or controlled (not a failed test: that is a result)."""


class MailError(PatchkitError):
    """Rendering, gating or sending mail failed."""


class MissingInputError(PatchkitError):
    """A third-party input (gPXE mirror, FreeDOS media, Debian kernel) is not in the cache."""


class ClusterError(PatchkitError):
    """The cluster (`test --cluster`) could not be reached or used (not a failed test: that is a result)."""
