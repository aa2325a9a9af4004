"""Guest images for `patchkit test`: one module per guest kind (debian, freedos, probe)."""

from patchkit.guests.base import GUEST_NAMES, Guest, Progress, get_guest

__all__ = ["GUEST_NAMES", "Guest", "Progress", "get_guest"]
