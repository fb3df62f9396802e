"""Read a workbook (``.xlsx``, ``.xlsm``) for :mod:`pcxbatch.read` through openpyxl's streaming
read-only mode: the only module that uses openpyxl for reading.

In: the path of a workbook whose package :func:`pcxbatch.read.ooxml.package_parts` has already
checked, a sheet name or 0-based index (or ``None``), and what to do with hidden rows. Out: a
:class:`~pcxbatch.read.common.Table` whose rows are read lazily, one openpyxl row at a time, each
cell as text with a :class:`~pcxbatch.model.CellNote` where the text is not what the cell held
(a formula, a number). Which sheet is read, what a cell's text is, and when merged cells or
hidden rows refuse the file is the package's contract (:mod:`pcxbatch.read`). Anything openpyxl,
zipfile or expat raise on a damaged file becomes an :class:`~pcxbatch.errors.InputError` naming
the file (and the row, once rows are read); the workbooks are closed when the rows are done or
the read fails.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl

from pcxbatch.errors import InputError
from pcxbatch.model import CellNote, SourceRow
from pcxbatch.read import ooxml
from pcxbatch.read.common import Table, damaged_workbook, unique_names, why

# The last row of an Excel sheet.
_EXCEL_MAX_ROW = 1_048_576
# Excel keeps 15 significant digits; an integral number with more has probably lost some.
_EXACT_DIGITS_LIMIT = 10**15

# openpyxl warns about styles, data validation and the like: nothing a user can act on.
warnings.filterwarnings("ignore", category=UserWarning, module=r"openpyxl(\..*)?")

# One row of a sheet as read: its number, its cells' texts and what was noticed about them.
_RawRow = tuple[int, list[str], dict[int, CellNote]]


def read_workbook(path: Path, sheet: str | int | None, hidden_rows: str) -> Table:
    """Open workbook ``path``, pick its sheet and read its header; the rows are read as
    ``Table.rows`` is iterated. ``hidden_rows`` is one of
    :data:`~pcxbatch.read.common.HIDDEN_ROW_CHOICES`. Raises ``InputError`` for a workbook that
    cannot be used."""
    books: list[Any] = [_open_workbook(path, data_only=True)]
    opened: _Sheet | None = None
    try:
        try:
            opened = _open_sheet(path, books, sheet)
            return _read_table(path, opened, hidden_rows)
        except InputError:
            raise
        except Exception as exc:
            raise damaged_workbook(path, exc) from exc
    except BaseException:  # an interrupt too: never leave the zip files open
        if opened is not None:
            opened.raw.close()  # and the one the formula scan holds
        _close(books)
        raise


@dataclass(frozen=True)
class _Sheet:
    """The sheet being read: its title, openpyxl's sheet, what the XML scan found, its rows."""

    title: str
    values: Any
    scan: ooxml.SheetScan
    raw: Generator[_RawRow, None, None]


def _read_table(path: Path, sheet: _Sheet, hidden_rows: str) -> Table:
    """Read the sheet's header and check the table below it (merged cells, hidden rows)."""
    header = _first_filled(sheet.raw)
    if header is None:
        raise InputError(f"{path}: sheet '{sheet.title}' has no header row (the sheet is blank)")
    header_number, header_cells = header
    width = len(header_cells)
    while not header_cells[width - 1]:
        width -= 1
    _refuse_merges(path, sheet, ooxml.merges_in_table(sheet.scan.merged, header_number, width))
    skipped: tuple[int, ...] = ()
    if hidden_rows != "include":
        skipped = _hidden_data_rows(path, sheet, header_number, width)
        if skipped and hidden_rows == "refuse":
            _refuse_hidden(path, sheet, skipped)
    columns = unique_names(header_cells[:width])
    rows = _workbook_data(sheet.raw, width, frozenset(skipped))
    return Table(path, sheet.title, columns, header_number, rows, skipped_rows=skipped)


def _open_workbook(path: Path, *, data_only: bool) -> Any:
    """The workbook in streaming read-only mode, with cached values or with formulas."""
    try:
        return openpyxl.load_workbook(path, read_only=True, data_only=data_only)
    except InputError:
        raise
    except Exception as exc:  # whatever openpyxl meets in a damaged file
        raise damaged_workbook(path, exc) from exc


def _open_sheet(path: Path, books: list[Any], sheet: str | int | None) -> _Sheet:
    """The sheet to read (``books[0]`` is the workbook), with a generator of its rows that
    closes ``books`` when done."""
    book = books[0]
    names = list(book.sheetnames)
    states = {name: getattr(book[name], "sheet_state", "visible") for name in names}
    title = _pick_sheet(path, names, states, sheet)
    sheet_obj = book[title]
    if not hasattr(sheet_obj, "iter_rows"):
        raise InputError(f"{path}: sheet '{title}' is a chart, not a table")
    part = _sheet_part(path, title, sheet_obj)
    scan = ooxml.scan_sheet(path, part)
    formula_cells = _formula_cells(path, title, books, part, scan.formulas)
    raw = _workbook_rows(path, title, books, sheet_obj, formula_cells)
    return _Sheet(title, sheet_obj, scan, raw)


def _sheet_part(path: Path, title: str, sheet_obj: Any) -> str | None:
    """The zip member holding the sheet: as the package's relationships say, else where
    openpyxl found it; ``None`` if neither can tell."""
    part = ooxml.sheet_part(path, title)
    if part is None:
        found = getattr(sheet_obj, "_worksheet_path", None)  # openpyxl's, read-only mode
        part = found if isinstance(found, str) else None
    return part


def _pick_sheet(
    path: Path, names: list[str], states: dict[str, str], sheet: str | int | None
) -> str:
    """The sheet to read: named (hidden or not), else by position among the visible sheets,
    else the first visible one. Text that names no sheet but is all (ASCII) digits is a
    position, so that a sheet named "2" is read for "2" even when it is not the third."""
    visible = [name for name in names if states.get(name, "visible") == "visible"]
    if sheet is None:
        return _first_visible(path, names, visible)
    if isinstance(sheet, int) and not isinstance(sheet, bool):
        return _sheet_at(path, names, visible, sheet)
    wanted = str(sheet)
    for candidate in (wanted, wanted.strip()):
        if candidate in names:
            return candidate
    wanted = wanted.strip()
    folded = [name for name in names if name.casefold() == wanted.casefold()]
    if len(folded) == 1:
        return folded[0]
    if wanted.isascii() and wanted.isdigit():
        return _sheet_at(path, names, visible, int(wanted), named=wanted)
    raise InputError(
        f"{path}: has no sheet named '{wanted}'; its sheets are {_listed(names, visible)}"
    )


def _first_visible(path: Path, names: list[str], visible: list[str]) -> str:
    if not names:
        raise InputError(f"{path}: the workbook has no sheets")
    if not visible:
        raise InputError(
            f"{path}: every sheet of the workbook is hidden ({_listed(names, visible)}); name the "
            "one to read (sheet: in the job, or --sheet)"
        )
    return visible[0]


def _sheet_at(
    path: Path, names: list[str], visible: list[str], index: int, named: str | None = None
) -> str:
    """The visible sheet at 0-based position ``index`` (given as text ``named``, if it was)."""
    if 0 <= index < len(visible):
        return visible[index]
    among = " among the visible sheets" if len(visible) < len(names) else ""
    nor = f"no sheet named '{named}' and " if named is not None else ""
    raise InputError(
        f"{path}: has {nor}no sheet number {index} (numbered from 0{among}; "
        f"it has {len(visible)}: {_listed(names, visible)})"
    )


def _listed(names: list[str], visible: list[str]) -> str:
    """The sheets as a message lists them: the visible ones, then the hidden ones."""
    listed = ", ".join(f"'{name}'" for name in visible) or "none visible"
    hidden = [name for name in names if name not in visible]
    if hidden:
        listed += " (hidden: " + ", ".join(f"'{name}'" for name in hidden) + ")"
    return listed


def _first_filled(raw: Iterator[_RawRow]) -> tuple[int, list[str]] | None:
    """The number and cells of the first row with any text (the header), or ``None``."""
    for number, cells, _ in raw:
        if any(cells):
            return number, cells
    return None


def _refuse_merges(path: Path, sheet: _Sheet, inside: list[str]) -> None:
    """Refuse the sheet when merged ranges ``inside`` cover the table."""
    if not inside:
        return
    shown = ", ".join(inside[:3]) + (f" and {len(inside) - 3} more" if len(inside) > 3 else "")
    raise InputError(
        f"{path}: sheet '{sheet.title}' has merged cells in the table ({shown}); a merged "
        "cell's value belongs to its first cell only, so the rows beside it would be read as "
        "empty. Unmerge them (Home > Merge & Center) and fill in every row"
    )


def _hidden_data_rows(path: Path, sheet: _Sheet, header_row: int, width: int) -> tuple[int, ...]:
    """The hidden rows that are data rows: below the header, with text in the table's columns.

    The XML scan found the hidden rows that hold cells; whether those cells hold text within the
    table is read through openpyxl, from the first of them to the last only, so that the rows
    are judged exactly as the data rows are.
    """
    hidden = sheet.scan.hidden
    if hidden is None:
        raise InputError(
            f"{path}: cannot tell which rows of sheet '{sheet.title}' are hidden (the workbook "
            "is damaged or laid out unusually); open it in Excel and save it again, or set "
            "hidden_rows: include in the job (or --hidden-rows include) to read every row"
        )
    wanted = sorted({number for number in hidden if header_row < number <= _EXCEL_MAX_ROW})
    if not wanted:
        return ()
    pending = set(wanted)
    found: list[int] = []
    rows = sheet.values.iter_rows(
        min_row=wanted[0], max_row=wanted[-1], max_col=width, values_only=True
    )
    try:
        for number, values in enumerate(rows, start=wanted[0]):
            if number in pending and any(_row_texts(values)[0]):
                found.append(number)
    finally:
        rows.close()
    return tuple(found)


def _refuse_hidden(path: Path, sheet: _Sheet, rows: tuple[int, ...]) -> None:
    """Refuse the sheet for its hidden data rows ``rows``, naming the first few."""
    many = len(rows) > 1
    shown = ", ".join(str(number) for number in rows[:10])
    if len(rows) > 10:
        shown += f" and {len(rows) - 10} more"
    raise InputError(
        f"{path}: sheet '{sheet.title}' has {len(rows)} hidden row{'s' if many else ''} in the "
        f"table (row{'s' if many else ''} {shown}), hidden by hand or by a filter, so whoever "
        "reviewed the sheet did not see them. Show them and check them, or say what to do with "
        "hidden rows: hidden_rows: skip in the job (or --hidden-rows skip) leaves them out, "
        "hidden_rows: include reads them like the others"
    )


def _formula_cells(
    path: Path, title: str, books: list[Any], part: str | None, formulas: bool
) -> Iterator[tuple[int, int]]:
    """(row, column) of every formula cell of the sheet, both from 1, in sheet order.

    openpyxl gives either a formula or its cached value, never both. Rather than read the whole
    sheet a second time through openpyxl (twice the time), a quick scan (``ooxml.scan_sheet``)
    finds whether it has formulas at all (most sheets have none), and a lean XML pass
    (``ooxml.formula_cells``) locates them.
    """
    if part is None:  # an unusual package layout: let openpyxl find the formulas, slowly
        formula_book = _open_workbook(path, data_only=False)
        books.append(formula_book)
        return _formula_cells_by_openpyxl(formula_book[title])
    if not formulas:
        return iter(())
    return ooxml.formula_cells(path, part)


def _formula_cells_by_openpyxl(formula_sheet: Any) -> Iterator[tuple[int, int]]:
    formula_sheet.reset_dimensions()
    for number, cells in enumerate(formula_sheet.iter_rows(), start=1):
        for column, cell in enumerate(cells, start=1):
            if getattr(cell, "data_type", None) == "f":
                yield number, column


def _workbook_rows(
    path: Path,
    title: str,
    books: list[Any],
    values_sheet: Any,
    formula_cells: Iterator[tuple[int, int]],
) -> Generator[_RawRow, None, None]:
    """Every row of the sheet (blank ones too) as (row number, cell texts, notes).

    Closes the workbooks when done; parsing errors become ``InputError`` naming the row.
    """
    number = 0
    try:
        values_sheet.reset_dimensions()  # stored dimensions are sometimes wrong: trust the cells
        formula = next(formula_cells, None)
        for number, values in enumerate(values_sheet.iter_rows(values_only=True), start=1):
            if number > _EXCEL_MAX_ROW:
                # openpyxl fills a gap in the row numbers with empty rows: a crafted row number
                # in the billions would keep it busy for hours.
                raise InputError(
                    f"{path}: sheet '{title}' has rows past row {_EXCEL_MAX_ROW:,}, the last row "
                    "a spreadsheet can hold; the file is damaged or was not made by a spreadsheet"
                )
            cells, notes = _row_texts(values)
            formula = _note_formulas(formula, formula_cells, number, notes)
            yield number, cells, notes
    except InputError:
        raise
    except Exception as exc:
        # As in _open_workbook: a parsing failure means a damaged file, not a bug to show.
        where = f"sheet '{title}' near row {number + 1}"
        raise InputError(f"{path}: {where} cannot be read (damaged workbook?): {why(exc)}") from exc
    finally:
        close = getattr(formula_cells, "close", None)
        if close is not None:
            close()  # releases the zip file the formula scan holds open
        _close(books)


def _row_texts(values: tuple[object, ...]) -> tuple[list[str], dict[int, CellNote]]:
    """A row's values as cell texts, and the notes on them by 0-based column."""
    cells: list[str] = []
    notes: dict[int, CellNote] = {}
    for index, value in enumerate(values):
        if value is None:
            cells.append("")
        elif type(value) is str:
            cells.append(value.strip())
        else:
            text, note = _cell_text(value)
            cells.append(text)
            if note is not None:
                notes[index] = note
    return cells, notes


def _note_formulas(
    formula: tuple[int, int] | None,
    formula_cells: Iterator[tuple[int, int]],
    number: int,
    notes: dict[int, CellNote],
) -> tuple[int, int] | None:
    """Note ``FORMULA`` on row ``number``'s formula cells, taking them from ``formula_cells``
    (which run in sheet order, ``formula`` being the next one); returns the next one after."""
    while formula is not None and formula[0] <= number:
        if formula[0] == number:
            notes[formula[1] - 1] = CellNote.FORMULA
        formula = next(formula_cells, None)
    return formula


def _close(books: list[Any]) -> None:
    for book in books:
        book.close()


def _workbook_data(
    raw: Iterator[tuple[int, list[str], dict[int, CellNote]]], width: int, skipped: frozenset[int]
) -> Iterator[SourceRow]:
    """The data rows: every row below the header with text in the table's ``width`` columns,
    except the ``skipped`` ones."""
    padding = [""] * width
    for number, cells, notes in raw:
        if len(cells) < width:
            cells = cells + padding[: width - len(cells)]
        values = tuple(cells[:width])
        if not any(values) or number in skipped:
            continue
        if notes and max(notes) >= width:
            notes = {index: note for index, note in notes.items() if index < width}
        yield SourceRow(number, values, notes)


def _cell_text(value: object) -> tuple[str, CellNote | None]:
    """A non-text cell value as text, with what was noticed about it."""
    if isinstance(value, bool):
        return ("TRUE" if value else "FALSE"), None
    if isinstance(value, int):
        return _whole_number(value)
    if isinstance(value, float):
        if value.is_integer():
            return _whole_number(int(value))
        return repr(value), CellNote.NUMBER
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0) and value.tzinfo is None:
            return value.date().isoformat(), None
        return value.isoformat(), None
    if isinstance(value, dt.date | dt.time):
        return value.isoformat(), None
    if isinstance(value, dt.timedelta):
        seconds = int(value.total_seconds())
        sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
        return f"{sign}{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}", None
    return str(value).strip(), None


def _whole_number(value: int) -> tuple[str, CellNote]:
    """A whole number's digits, noted ``LOSSY_NUMBER`` when Excel cannot have held them all."""
    # Excel holds 15 significant digits: a longer integer in the file is one that Excel would
    # show (and save) with other digits than the ones written.
    lossy = abs(value) >= _EXACT_DIGITS_LIMIT
    return str(value), CellNote.LOSSY_NUMBER if lossy else CellNote.NUMBER
