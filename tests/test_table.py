"""The one table layout every plain-text table goes through."""

from __future__ import annotations

from patchkit.table import table


def test_columns_are_as_wide_as_their_widest_cell_two_spaces_apart() -> None:
    rows = [["configuration", "freedos", "probe"], ["pc", "pass", "FAIL"], ["q35-bare", "-", "pass"]]
    assert table(rows) == ["configuration  freedos  probe",
                           "pc             pass     FAIL",
                           "q35-bare       -        pass"]


def test_indent_minimum_width_and_no_trailing_spaces() -> None:
    assert table([["a", "b", ""], ["ccc", "d", ""]], indent="  ", min_width=4) == ["  a     b", "  ccc   d"]
    assert table([]) == []
