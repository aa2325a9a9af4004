"""`patchkit shrink`: of a failing configuration's three settings (q35, a virtio-blk queue size and an
I/O error on sector 0) only the fault matters, and that is what it reports; a configuration that
passes as it is has nothing to shrink (the negative control)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.guests import guest_or_skip

from patchkit.series.model import Config, InjectError
from patchkit.store import Store
from patchkit.triage.shrink import local_boot, settings_of, shrink, with_settings

pytestmark = pytest.mark.boot

FAULT = InjectError("read_aio", 5, 0, False)
THREE = Config(name="three", guests=("probe",), machine="q35", virtio_blk=(("queue-size", 64),), inject_error=FAULT)


def test_settings_are_the_axes_off_the_default() -> None:
    assert settings_of(THREE) == [("machine", "q35"), ("virtio_blk", ("queue-size", 64)), ("inject_error", FAULT)]
    assert with_settings(THREE, [("inject_error", FAULT)]) == Config(name="three", guests=("probe",),
                                                                     inject_error=FAULT)


def test_of_three_settings_the_one_that_matters_is_reported(inputs_cache: Path, store: Store,
                                                            series_rom: Path) -> None:
    guest_or_skip("probe", store)
    said: list[str] = []
    found = shrink("three/probe", THREE, local_boot(store, "probe", series_rom, "tcg"), said.append)
    assert found.needed == [("inject_error", FAULT)]
    assert [verdict for _, verdict in found.tried] == ["FAIL", "FAIL", "pass"]
    assert found.summary() == ("three/probe: smallest failing configuration: inject_error = "
                               f"{FAULT!r} (of 3 setting(s))")


def test_a_configuration_that_passes_has_nothing_to_shrink(inputs_cache: Path, store: Store,
                                                           series_rom: Path) -> None:
    guest_or_skip("probe", store)
    passing = Config(name="two", guests=("probe",), machine="q35", virtio_blk=(("queue-size", 64),))
    found = shrink("two/probe", passing, local_boot(store, "probe", series_rom, "tcg"), lambda _m: None)
    assert not found.fails_as_is and found.summary() == "two/probe passes as configured: nothing to shrink"
