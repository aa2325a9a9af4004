"""The ROM's linked ELF (gPXE's ``bin/<rom>.tmp``, kept as ``<rom>.elf`` in the build cache): code bytes, symbols
and the DWARF line table, as source lines ``repo-path -> line numbers``.

gPXE links its protected-mode code and data (``.textdata``) at address 0 and runs it
wherever it is placed through its segment bases, so a link address plus the run's
offset is the guest address QEMU logs (patchkit.coverage.mapping finds the offset).
Only line-table sequences that start at a function of ``.textdata`` are read: the
real-mode sections are linked at 0 too, and their rows would alias its addresses.
"""

from __future__ import annotations

import bisect
import itertools
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from patchkit.errors import PatchkitError

TEXT_SECTION = ".textdata"

Lines = dict[str, set[int]]  # repository path -> line numbers


@dataclass(frozen=True)
class Row:
    """Code from ``start`` up to ``end`` (link addresses) comes from ``path``:``line``."""

    start: int
    end: int
    path: str
    line: int


class DebugInfo:
    """One ELF's code section, function symbols and line rows (sorted by address)."""

    def __init__(self, elf: Path, prefix: str) -> None:
        """Read ``elf``; source paths are made repository paths by putting ``prefix`` (the build directory,
        e.g. "src") before the compilation directory's relative names."""
        if not elf.is_file():
            raise PatchkitError(f"no linked ELF {elf} for coverage",
                                hint="build the ROM again (`patchkit build`): builds keep their ELF since coverage")
        with elf.open("rb") as f:
            image = ELFFile(f)
            section = image.get_section_by_name(TEXT_SECTION)
            if section is None or not image.has_dwarf_info():
                raise PatchkitError(f"{elf} has no {TEXT_SECTION} section or no debug information",
                                    hint="coverage needs a gPXE ROM's ELF built with -g (gPXE's default)")
            self.text: bytes = section.data()
            self.text_base: int = section["sh_addr"]
            index = next(i for i, s in enumerate(image.iter_sections()) if s.name == TEXT_SECTION)
            self.functions: dict[str, int] = {}
            symtab = image.get_section_by_name(".symtab")
            if isinstance(symtab, SymbolTableSection):
                for sym in symtab.iter_symbols():
                    if sym["st_info"]["type"] == "STT_FUNC" and sym["st_shndx"] == index:
                        self.functions[sym.name] = sym["st_value"]
            self.rows = _rows(image, set(self.functions.values()), prefix)
        self._starts = [r.start for r in self.rows]
        self.prefix = prefix

    def executable(self) -> Lines:
        """Every source line some code comes from."""
        lines: Lines = {}
        for row in self.rows:
            lines.setdefault(row.path, set()).add(row.line)
        return lines

    def row_at(self, address: int) -> Row | None:
        """The row whose code holds link address ``address``."""
        i = bisect.bisect_right(self._starts, address) - 1
        return self.rows[i] if i >= 0 and address < self.rows[i].end else None

    def lines_at(self, addresses: Iterable[int]) -> Lines:
        """The source lines of the code at these link addresses."""
        lines: Lines = {}
        for address in addresses:
            if (row := self.row_at(address)) is not None:
                lines.setdefault(row.path, set()).add(row.line)
        return lines


def _rows(image: ELFFile, function_starts: set[int], prefix: str) -> list[Row]:
    """The line table's rows of sequences that start at a function of the code section."""
    dwarf = image.get_dwarf_info()
    rows: list[Row] = []
    for cu in dwarf.iter_CUs():
        program = dwarf.line_program_for_CU(cu)
        if program is None:
            continue
        top = cu.get_top_DIE()
        comp_dir = _text(top.attributes["DW_AT_comp_dir"].value) if "DW_AT_comp_dir" in top.attributes else ""
        paths = _file_paths(program.header, comp_dir, prefix)
        sequence: list[tuple[int, int, int]] = []
        for entry in program.get_entries():
            state = entry.state
            if state is None:
                continue
            sequence.append((state.address, state.file, state.line))
            if state.end_sequence:
                if sequence[0][0] in function_starts:
                    for (start, file, line), (end, _, _) in itertools.pairwise(sequence):
                        path = paths.get(file)
                        if path is not None and end > start and line > 0:
                            rows.append(Row(start, end, path, line))
                sequence = []
    rows.sort(key=lambda r: r.start)
    return rows


def _file_paths(header: Any, comp_dir: str, prefix: str) -> dict[int, str | None]:
    """A line program's file numbers -> repository paths (DWARF 5 counts files and directories from 0,
    with the compilation directory as directory 0; earlier versions from 1, 0 meaning that directory)."""
    modern = header["version"] >= 5
    dirs = [_text(d) for d in header["include_directory"]]
    paths: dict[int, str | None] = {}
    for n, entry in enumerate(header["file_entry"], 0 if modern else 1):
        index = entry.dir_index if modern else entry.dir_index - 1
        directory = dirs[index] if 0 <= index < len(dirs) else comp_dir
        paths[n] = _repo_path(posixpath.join(comp_dir, directory, _text(entry.name)), comp_dir, prefix)
    return paths


def _repo_path(path: str, comp_dir: str, prefix: str) -> str | None:
    """``path`` as a repository path (``prefix``/relative), None outside the compilation directory."""
    if posixpath.isabs(path):
        if not comp_dir or not path.startswith(comp_dir.rstrip("/") + "/"):
            return None
        path = path[len(comp_dir.rstrip("/")) + 1:]
    path = posixpath.normpath(path)
    return None if path.startswith("..") else posixpath.normpath(posixpath.join(prefix, path))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
