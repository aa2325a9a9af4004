"""Who and when a commit or tag says: the patch's author and date, patchkit's fixed committer.

Commits carry the patch's author, date and message; the committer is patchkit's
fixed identity with the author date, so applying the same series to the same base
always gives the same commit ids.
"""

from __future__ import annotations

from datetime import timedelta
from email.utils import parsedate_to_datetime

from patchkit.errors import SeriesError
from patchkit.series.model import Patch

IDENTITY_NAME = "patchkit"
IDENTITY_EMAIL = "patchkit@localhost"


def git_date(patch: Patch) -> str:
    """The patch's Date header as git's internal date format (seconds + offset)."""
    try:
        when = parsedate_to_datetime(patch.date)
    except (TypeError, ValueError) as exc:
        raise SeriesError(f"{patch.filename}: Date header is not an RFC 2822 date: {patch.date!r}") from exc
    offset = when.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{int(when.timestamp())} {sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def identity_env(date: str, patch: Patch | None = None) -> dict[str, str]:
    """The committer (patchkit) at ``date``, and the author of ``patch`` at the same date."""
    env = {"GIT_COMMITTER_NAME": IDENTITY_NAME, "GIT_COMMITTER_EMAIL": IDENTITY_EMAIL, "GIT_COMMITTER_DATE": date}
    if patch is not None:
        env |= {"GIT_AUTHOR_NAME": patch.author_name, "GIT_AUTHOR_EMAIL": patch.author_email, "GIT_AUTHOR_DATE": date}
    return env
