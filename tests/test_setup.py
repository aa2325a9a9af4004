"""`patchkit setup` builds every guest image the series' configurations boot (no test skips for one)."""

from __future__ import annotations

from patchkit.project import Project
from patchkit.setup import configured_guests


def test_setup_builds_every_image_the_configurations_boot(project: Project) -> None:
    # The set-up built the series' guests, not the ones only configurations name: probe-hold
    # (request-timeout) was missing on a fresh machine and its tests skipped.
    images = {guest.image_name for guest in configured_guests(project)}
    assert {"probe", "probe-hold", "probe-ro", "probe-2g-255x63", "probe-3t-255x63"} <= images
    assert len(images) == len({guest.image_dir() for guest in configured_guests(project)})
