"""How patchkit prints a measured figure (the bench table and the report's copy of it)."""

from __future__ import annotations


def format_figure(value: float | None, unit: str) -> str:
    """A figure with its unit: 3 significant digits for times and rates, exact bytes."""
    if value is None:
        return "-"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:.3g} {unit}"
