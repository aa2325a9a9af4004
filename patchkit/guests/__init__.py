"""Guest images for `patchkit test`: one module per guest kind (debian, freedos, probe)."""

from patchkit.guests.base import GUEST_NAMES, HARNESS_NAMES, KEEP_SAN_NAMES, Guest, Sanboot, get_guest
from patchkit.progress import Progress

__all__ = ["GUEST_NAMES", "HARNESS_NAMES", "KEEP_SAN_NAMES", "Guest", "Progress", "Sanboot", "get_guest"]
