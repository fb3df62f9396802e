"""What the readers of :mod:`pcxbatch.read` share: the :class:`Table` they return, how the header
row is found and its names made unique, and how a problem is worded. Standard library only.

In: a sheet's first rows, header texts, exceptions met while reading. Out: a ``Table``, the
header row (:func:`find_header`), unique header names, and one-line reasons for an
:class:`~pcxbatch.errors.InputError`. These live apart from the package's
``__init__`` so that the text, workbook and OOXML modules can share them without importing the
package that imports them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pcxbatch.errors import InputError
from pcxbatch.model import CellNote, SourceRow
from pcxbatch.rules import HEADER_SEARCH_ROWS, is_user_id_header

#: How much of a file is read at a time wherever a file is scanned whole: memory stays flat.
BLOCK = 1 << 20
#: The first bytes of a zip archive (an .xlsx workbook is one) and of an OLE file (an old .xls
#: workbook, or an encrypted .xlsx): how a file that is not what its name says is recognised.
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
#: The way out for a file in a format read_table does not read.
SAVE_AS = "open it and save it as .xlsx or .csv"

# Third-party error texts can be long or span lines; a message is one line for a person.
_MAX_REASON = 200
_WHITESPACE_RUN = re.compile(r"\s+")
#: What a header_row message calls the setting, in a job and on the command line.
HEADER_ROW_SETTING = "header_row: in the job, or --header-row"
# A row above the header may be a title with this many cells filled (a label and a value).
_TITLE_CELLS = 2

#: One row of a sheet or one record of a text file as read: its row number as a spreadsheet
#: shows it, its cells' texts, and what was noticed about them (by 0-based column).
RawRow = tuple[int, list[str], dict[int, CellNote]]


@dataclass(frozen=True)
class Table:
    """An opened input: header names and a one-shot, lazy iterator over its data rows.

    ``sheet`` is the sheet's name for workbooks and ``None`` for text files; ``header_row`` is the
    spreadsheet row number of the header. ``encoding`` and ``separator`` say how a text file was
    read (``None`` for workbooks). ``skipped_rows`` are the numbers, in order, of the hidden rows
    with data that ``hidden_rows="skip"`` left out of ``rows``. ``other_sheets`` is filled only
    when no user-ID header was found in the sheet read: each other sheet of the workbook, in
    tab order, with whether one of its first rows holds a user-ID header. Iterating ``rows``
    may raise ``InputError``.
    """

    path: Path
    sheet: str | None
    columns: tuple[str, ...]
    header_row: int
    rows: Iterator[SourceRow]
    encoding: str | None = None
    separator: str | None = None
    skipped_rows: tuple[int, ...] = ()
    other_sheets: tuple[tuple[str, bool], ...] = ()


@dataclass(frozen=True)
class Header:
    """The header row :func:`find_header` chose: its number and cells, whether it holds a
    user-ID header (or is the row the job named), and the rows read past it while searching,
    which are data rows to be read again."""

    number: int
    cells: list[str]
    matched: bool
    after: list[RawRow] = field(default_factory=list)


def find_header(
    rows: Iterator[RawRow], where: str, header_row: int | None, mapped: str | None
) -> Header | None:
    """The header among ``rows`` (``where`` names the file, and the sheet, in messages).

    ``header_row`` given: that row, which must not be blank. Otherwise the first of the first
    :data:`~pcxbatch.rules.HEADER_SEARCH_ROWS` non-blank rows that holds a user-ID header
    (:func:`~pcxbatch.rules.is_user_id_header`, ``mapped`` being the header the job names for
    it), provided every non-blank row above it is narrow enough to be a title (at most 2 cells
    filled, or half as many as the header): those are skipped; a wider row above it would be
    data, or the header itself. Else the first non-blank row, as if nothing had been searched;
    but when no row searched holds a user-ID header at all, the first of the widest rows, which
    is the likeliest header: no user-ID column can be found in it either, so the table is
    refused, and the message then lists the columns a person would call the header's.
    ``None``: every row is blank.
    """
    if header_row is not None:
        return _named_header(rows, where, header_row)
    seen: list[RawRow] = []
    widths: list[int] = []
    named = False  # whether a row searched holds a user-ID header (under wider rows)
    for raw in rows:
        filled = sum(1 for cell in raw[1] if cell)
        if not filled:
            continue
        if any(is_user_id_header(cell, mapped) for cell in raw[1] if cell):
            if max(widths, default=0) <= max(_TITLE_CELLS, filled // 2):
                return Header(raw[0], raw[1], matched=True)
            named = True
        seen.append(raw)
        widths.append(filled)
        if len(seen) >= HEADER_SEARCH_ROWS:
            break
    if not seen:
        return None
    chosen = 0 if named else widths.index(max(widths))
    header, after = seen[chosen], seen[chosen + 1 :]
    return Header(header[0], header[1], matched=False, after=after)


def _named_header(rows: Iterator[RawRow], where: str, header_row: int) -> Header:
    last = 0
    for number, cells, _ in rows:
        last = number
        if number < header_row:
            continue
        if number == header_row and any(cells):
            return Header(number, cells, matched=True)
        break
    if last < header_row:
        raise InputError(
            f"{where}: has no row {header_row} (its last row is {last}); the header row is set "
            f"to {header_row} ({HEADER_ROW_SETTING})"
        )
    raise InputError(
        f"{where}: row {header_row}, set as the header row ({HEADER_ROW_SETTING}), is blank"
    )


def unique_names(raw: Sequence[str]) -> tuple[str, ...]:
    """Header names made unique and stable: empty -> ``column N``, repeats -> ``name (2)``."""
    names: list[str] = []
    taken: set[str] = set()
    for position, text in enumerate(raw, start=1):
        base = _WHITESPACE_RUN.sub(" ", text).strip() or f"column {position}"
        name, count = base, 1
        while name.casefold() in taken:
            count += 1
            name = f"{base} ({count})"
        taken.add(name.casefold())
        names.append(name)
    return tuple(names)


def why(exc: BaseException) -> str:
    """An exception's text on one line and cut short, for the end of an ``InputError``."""
    text = _WHITESPACE_RUN.sub(" ", str(exc)).strip() or type(exc).__name__
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def os_reason(exc: OSError) -> str:
    """What the operating system said, without the errno and file name around it."""
    return exc.strerror or str(exc)


def damaged_workbook(path: Path, exc: BaseException) -> InputError:
    """The error for a workbook that a zip or XML parser could not get through."""
    # Any exception met while parsing is the user's file to fix, never a traceback to show.
    return InputError(f"{path}: is damaged and cannot be opened as a workbook: {why(exc)}")
