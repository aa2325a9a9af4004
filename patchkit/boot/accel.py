"""The accelerator a boot tries first: KVM where it can run real-mode guests, else TCG."""

from __future__ import annotations

import os
from pathlib import Path

from patchkit.errors import PatchkitError


def choose_accel(requested: str) -> tuple[str, str]:
    """The accelerator to try first for ``requested`` (auto|kvm|tcg), and a note on why."""
    if requested in ("kvm", "tcg"):
        return requested, ""
    if requested != "auto":
        raise PatchkitError(f"unknown accelerator {requested!r}: use auto, kvm or tcg")
    if Path("/sys/module/kvm_pvm").exists():
        return "tcg", "KVM is the kvm_pvm software module (cannot run real-mode guests): using TCG"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg", "/dev/kvm is not usable: using TCG"
    return "kvm", ""
