"""The guests `patchkit test` boots, by name (the interface: ``patchkit.guests.base``; one module per kind)."""

from patchkit.errors import PatchkitError
from patchkit.guests.base import Guest, Sanboot
from patchkit.guests.debian import DebianGuest
from patchkit.guests.debian_system import DebianSystemGuest
from patchkit.guests.freedos import FreedosGuest
from patchkit.guests.freedos_installed import FreedosInstalledGuest
from patchkit.guests.probe import (
    AoeKeepSanProbeGuest,
    HoldReadProbeGuest,
    KeepSanBootProbeGuest,
    KeepSanProbeGuest,
    KeepSanResetProbeGuest,
    ProbeGuest,
    RequestsProbeGuest,
)
from patchkit.store import Store

# The guest images.
IMAGE_GUESTS: dict[str, type[Guest]] = {
    "freedos": FreedosGuest,
    "debian": DebianGuest,
    "probe": ProbeGuest,
    "freedos-installed": FreedosInstalledGuest,
    "debian-system": DebianSystemGuest,
}
# Runs of the probe's image after a sanboot that returns with keep-san set (virtio, AoE, after a reset, then
# booting gPXE's embedded loader).
KEEP_SAN_GUESTS: dict[str, type[Guest]] = {
    "keepsan": KeepSanProbeGuest,
    "keepsan-aoe": AoeKeepSanProbeGuest,
    "keepsan-reset": KeepSanResetProbeGuest,
    "keepsan-boot": KeepSanBootProbeGuest,
}
# Probe runs whose harness must act on the device at the probe's markers (probe.HOLD_READY ...).
HARNESS_GUESTS: dict[str, type[Guest]] = {"probe-hold": HoldReadProbeGuest, "probe-requests": RequestsProbeGuest}

GUEST_NAMES = tuple(IMAGE_GUESTS)
KEEP_SAN_NAMES = tuple(KEEP_SAN_GUESTS)
HARNESS_NAMES = tuple(HARNESS_GUESTS)


def guest_class(name: str) -> type[Guest]:
    """The kind of guest called ``name``; PatchkitError listing the known guests otherwise."""
    kind = IMAGE_GUESTS.get(name) or KEEP_SAN_GUESTS.get(name) or HARNESS_GUESTS.get(name)
    if kind is None:
        known = GUEST_NAMES + KEEP_SAN_NAMES + HARNESS_NAMES
        raise PatchkitError(f"unknown guest {name!r}: known guests are {', '.join(known)}")
    return kind


def get_guest(name: str, store: Store) -> Guest:
    """The guest called ``name``, its image cached in ``store``."""
    return guest_class(name)(store)


__all__ = ["GUEST_NAMES", "HARNESS_NAMES", "KEEP_SAN_NAMES", "Guest", "Sanboot", "get_guest", "guest_class"]
