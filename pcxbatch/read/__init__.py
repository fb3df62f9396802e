"""Read an input file into header names and a lazy stream of rows: the only module that uses
pandas (and openpyxl for reading).

In: a path to a ``.csv``/``.tsv``/``.txt`` text file or a ``.xlsx``/``.xlsm`` workbook (and, for
workbooks, a sheet name or 0-based index), and the largest file size to accept. Out: a
:class:`Table` whose ``columns`` are the header texts and whose ``rows`` yield one
:class:`~pcxbatch.model.SourceRow` per non-blank data row, in file order, with every cell as
stripped text. A file that cannot be used raises
:class:`~pcxbatch.errors.InputError` with one line naming the file and the problem, both when the
table is opened and while its rows are read. Any file at all, however damaged or hostile, ends
in rows or in that one error: never another exception, never a cell evaluated.

Size: a file larger than ``max_bytes`` (default :data:`MAX_INPUT_BYTES`), or a workbook whose
parts unpack to more than :data:`UNPACKED_PER_BYTE` times that (a "zip bomb"), is refused before
any row is read, with a message saying how to raise the limit.

What the rows look like:

- Row numbers are the ones a spreadsheet shows. In a CSV each *record* is a row, so a quoted cell
  that spans several lines stays on one row, exactly as Excel displays it; blank lines count, so
  skipping them never shifts later numbers. In a workbook they are the sheet's own row numbers.
- The header is the first non-blank row; blank rows (every cell empty or spaces, including rows
  of only separators and blank trailing rows) are skipped.
- Header names: stripped, runs of whitespace (an Alt+Enter line break, say) become one space; an
  empty header becomes ``column N`` (N counted from 1), and a repeated one gets `` (2)``,
  `` (3)``, ... so every name is unique and stable from run to run.
- CSV cells are text exactly as written (never parsed as numbers) and carry no notes. The
  encoding is detected: UTF-8 with or without BOM, UTF-16 (Excel's "Unicode text") or UTF-32
  with BOM, otherwise Windows-1252. The separator (``,``, ``;`` or tab) is sniffed from the
  first lines, or taken from Excel's ``sep=;`` first line (which, as in Excel, is not counted as
  a row). Empty cells past the header's width are ignored; a row with text past it stops the
  read with an ``InputError`` naming the row (an unquoted separator inside a cell, usually).
- Workbook cells: a formula gives its cached value (never evaluated; a formula that was never
  calculated reads as empty) and the note ``FORMULA``; a number gives its plain digits and the
  note ``NUMBER`` (``LOSSY_NUMBER`` when it has more than 15 significant digits, which Excel
  cannot hold, so digits may be gone); dates and times give ISO text, booleans ``TRUE``/``FALSE``.
  Cells to the right of the last header cell are ignored.
- Which sheet: the one named (hidden or not), else the one at the given 0-based position among
  the *visible* sheets (as a person counts the tabs), else the first visible sheet. A hidden
  sheet is never read unless it is named: its rows are ones nobody reviewing the file has seen.
- Merged cells inside the table (below the header, within its columns) refuse the file: a merged
  cell's value belongs to its first cell only, so the rows beside it would be read as empty and
  fall back on the job's defaults, which is not what the person who merged them meant.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import warnings
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import openpyxl

from pcxbatch.errors import InputError
from pcxbatch.model import CellNote, SourceRow
from pcxbatch.read import ooxml
from pcxbatch.read.common import (
    BLOCK,
    SAVE_AS,
    Table,
    damaged_workbook,
    os_reason,
    unique_names,
    why,
)

__all__ = [
    "MAX_INPUT_BYTES",
    "SUPPORTED_EXTENSIONS",
    "UNPACKED_PER_BYTE",
    "Table",
    "file_sha256",
    "read_table",
]

#: The largest input file read_table accepts unless told otherwise (``max_bytes``): far above
#: any real list of users to change (a million rows of CSV is ~50 MB), far below what would
#: exhaust a small machine.
MAX_INPUT_BYTES = 200 * 1000 * 1000
#: A workbook may unpack to this many times ``max_bytes``: real sheets compress 5-15 times,
#: a crafted zip a million times.
UNPACKED_PER_BYTE = 20
#: What a size-limit message tells the user to change; the job key and flag that set it.
SIZE_LIMIT_HINT = "raise max_bytes in the job (or --max-bytes) if this file is right"

#: File name endings read_table accepts, lower case.
SUPPORTED_EXTENSIONS: tuple[str, ...] = (".csv", ".tsv", ".txt", ".xlsx", ".xlsm")
_TEXT_EXTENSIONS = frozenset({".csv", ".tsv", ".txt"})
_WORKBOOK_EXTENSIONS = frozenset({".xlsx", ".xlsm"})
_OTHER_FORMATS = {
    ".xls": "an old-format Excel workbook (.xls)",
    ".xlsb": "a binary Excel workbook (.xlsb)",
    ".xltx": "an Excel template (.xltx)",
    ".xltm": "an Excel template (.xltm)",
    ".ods": "an OpenDocument spreadsheet (.ods)",
    ".numbers": "an Apple Numbers file (.numbers)",
}

# The last row of an Excel sheet.
_EXCEL_MAX_ROW = 1_048_576
# Excel keeps 15 significant digits; an integral number with more has probably lost some.
_EXACT_DIGITS_LIMIT = 10**15

# openpyxl warns about styles, data validation and the like: nothing a user can act on.
warnings.filterwarnings("ignore", category=UserWarning, module=r"openpyxl(\..*)?")


def read_table(
    path: Path, *, sheet: str | int | None = None, max_bytes: int | None = MAX_INPUT_BYTES
) -> Table:
    """Open ``path`` and read its header; the rows are read lazily as ``Table.rows`` is iterated.

    ``sheet`` picks a workbook's sheet by name or 0-based index among the visible sheets
    (default: the first visible sheet); for a text file only ``None`` or ``0`` make sense.
    ``max_bytes`` is the largest file accepted (``None``: no limit). Raises ``InputError`` for
    any unusable file.
    """
    path = Path(path)
    suffix = _check_file(path, max_bytes)
    if suffix in _TEXT_EXTENSIONS:
        if sheet not in (None, 0):
            raise InputError(f"{path}: is a text file with no sheets; remove the sheet setting")
        from pcxbatch.read import text

        return text.read_text(path)
    _check_unpacked(path, ooxml.package_size(path), max_bytes)
    return _read_workbook(path, sheet)


def file_sha256(path: Path) -> str:
    """The file's SHA-256 as 64 lower-case hex digits, read in blocks (memory stays flat)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(BLOCK):
                digest.update(block)
    except OSError as exc:
        raise InputError(f"{path}: cannot be read: {os_reason(exc)}") from exc
    return digest.hexdigest()


# --- checks common to every file ---------------------------------------------------------------


def _check_file(path: Path, max_bytes: int | None) -> str:
    """Return the lower-case suffix of a readable, non-empty, supported file no larger than
    ``max_bytes``, or raise."""
    suffix = path.suffix.lower()
    try:
        if not path.exists():
            raise InputError(f"{path}: file not found")
        if path.is_dir():
            raise InputError(f"{path}: is a folder, not a file")
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{path}: cannot be read: {os_reason(exc)}") from exc
    if suffix in _OTHER_FORMATS:
        raise InputError(f"{path}: is {_OTHER_FORMATS[suffix]}, which is not supported; {SAVE_AS}")
    if suffix not in _TEXT_EXTENSIONS and suffix not in _WORKBOOK_EXTENSIONS:
        shown = f"'{suffix}' files are" if suffix else "files without an extension are"
        raise InputError(
            f"{path}: {shown} not supported; use one of {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes)")
    if max_bytes is not None and size > max_bytes:
        raise InputError(
            f"{path}: is {_size(size)}, more than the {_size(max_bytes)} an input file may be; "
            f"{SIZE_LIMIT_HINT}"
        )
    return suffix


def _check_unpacked(path: Path, unpacked: int, max_bytes: int | None) -> None:
    """Refuse a workbook whose parts unpack to more than :data:`UNPACKED_PER_BYTE` times
    ``max_bytes``: a zip bomb would exhaust the machine long before its rows were read."""
    if max_bytes is not None and unpacked > max_bytes * UNPACKED_PER_BYTE:
        raise InputError(
            f"{path}: unpacks to {_size(unpacked)}, more than the "
            f"{_size(max_bytes * UNPACKED_PER_BYTE)} a workbook may hold "
            f"({UNPACKED_PER_BYTE} times the {_size(max_bytes)} size limit); "
            f"{SIZE_LIMIT_HINT}"
        )


def _size(count: int) -> str:
    """A byte count as a person reads it: ``3,008 bytes``, ``1.5 MB``, ``2.1 GB``."""
    if count < 1000 * 1000:
        return f"{count:,} bytes"
    if count < 1000 * 1000 * 1000:
        return f"{count / 1e6:,.1f} MB"
    return f"{count / 1e9:,.1f} GB"


# --- workbooks ---------------------------------------------------------------------------------


def _read_workbook(path: Path, sheet: str | int | None) -> Table:
    book = _open_workbook(path, data_only=True)
    books: list[Any] = [book]
    try:
        names = list(book.sheetnames)
        states = {name: getattr(book[name], "sheet_state", "visible") for name in names}
        title = _pick_sheet(path, names, states, sheet)
        sheet_obj = book[title]
        if not hasattr(sheet_obj, "iter_rows"):
            raise InputError(f"{path}: sheet '{title}' is a chart, not a table")
        part = ooxml.sheet_part(path, title)
        formulas, merged = ooxml.scan_sheet(path, part)
        raw = _workbook_rows(
            path, title, books, sheet_obj, _formula_cells(path, title, books, part, formulas)
        )
        header_number, header_cells = 0, None
        for number, cells, _ in raw:
            if any(cells):
                header_number, header_cells = number, cells
                break
    except InputError:
        for opened in books:
            opened.close()
        raise
    except Exception as exc:
        for opened in books:
            opened.close()
        raise damaged_workbook(path, exc) from exc
    except BaseException:
        for opened in books:
            opened.close()
        raise
    if header_cells is None:
        raise InputError(f"{path}: sheet '{title}' has no header row (the sheet is blank)")
    width = len(header_cells)
    while not header_cells[width - 1]:
        width -= 1
    inside = ooxml.merges_in_table(merged, header_number, width)
    if inside:
        raw.close()  # closes the workbooks
        shown = ", ".join(inside[:3]) + (f" and {len(inside) - 3} more" if len(inside) > 3 else "")
        raise InputError(
            f"{path}: sheet '{title}' has merged cells in the table ({shown}); a merged cell's "
            "value belongs to its first cell only, so the rows beside it would be read as empty. "
            "Unmerge them (Home > Merge & Center) and fill in every row"
        )
    columns = unique_names(header_cells[:width])
    return Table(path, title, columns, header_number, _workbook_data(raw, width))


def _open_workbook(path: Path, *, data_only: bool) -> Any:
    try:
        return openpyxl.load_workbook(path, read_only=True, data_only=data_only)
    except InputError:
        raise
    except Exception as exc:
        # Any exception here comes from parsing a damaged file, which is the user's file to fix,
        # never a reason to show a traceback.
        raise damaged_workbook(path, exc) from exc


def _pick_sheet(
    path: Path, names: list[str], states: dict[str, str], sheet: str | int | None
) -> str:
    """The sheet to read: named (hidden or not), else by position among the visible sheets,
    else the first visible one."""
    visible = [name for name in names if states.get(name, "visible") == "visible"]
    hidden = [name for name in names if name not in visible]
    listed = ", ".join(f"'{name}'" for name in visible) or "none visible"
    if hidden:
        listed += " (hidden: " + ", ".join(f"'{name}'" for name in hidden) + ")"
    if sheet is None:
        if not names:
            raise InputError(f"{path}: the workbook has no sheets")
        if not visible:
            raise InputError(
                f"{path}: every sheet of the workbook is hidden ({listed}); name the one to read "
                "(sheet: in the job, or --sheet)"
            )
        return visible[0]
    if isinstance(sheet, int) and not isinstance(sheet, bool):
        among = " among the visible sheets" if hidden else ""
        if 0 <= sheet < len(visible):
            return visible[sheet]
        raise InputError(
            f"{path}: has no sheet number {sheet} (numbered from 0{among}; "
            f"it has {len(visible)}: {listed})"
        )
    wanted = str(sheet).strip()
    if wanted in names:
        return wanted
    folded = [name for name in names if name.casefold() == wanted.casefold()]
    if len(folded) == 1:
        return folded[0]
    if wanted.isdigit():  # "--sheet 1" arrives as text: a number no sheet is named is an index
        return _pick_sheet(path, names, states, int(wanted))
    raise InputError(f"{path}: has no sheet named '{wanted}'; its sheets are {listed}")


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
) -> Generator[tuple[int, list[str], dict[int, CellNote]], None, None]:
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
            while formula is not None and formula[0] <= number:
                if formula[0] == number:
                    notes[formula[1] - 1] = CellNote.FORMULA
                formula = next(formula_cells, None)
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
        for book in books:
            book.close()


def _workbook_data(
    raw: Iterator[tuple[int, list[str], dict[int, CellNote]]], width: int
) -> Iterator[SourceRow]:
    padding = [""] * width
    for number, cells, notes in raw:
        if len(cells) < width:
            cells = cells + padding[: width - len(cells)]
        values = tuple(cells[:width])
        if not any(values):
            continue
        if notes and max(notes) >= width:
            notes = {index: note for index, note in notes.items() if index < width}
        yield SourceRow(number, values, notes)


def _cell_text(value: object) -> tuple[str, CellNote | None]:
    """A non-text cell value as text, with what was noticed about it."""
    if isinstance(value, bool):
        return ("TRUE" if value else "FALSE"), None
    if isinstance(value, int):
        # Excel holds 15 significant digits: a longer integer in the file is one that Excel
        # would show (and save) with other digits than the ones written.
        lossy = abs(value) >= _EXACT_DIGITS_LIMIT
        return str(value), CellNote.LOSSY_NUMBER if lossy else CellNote.NUMBER
    if isinstance(value, float):
        if value.is_integer():
            digits = int(value)
            lossy = abs(digits) >= _EXACT_DIGITS_LIMIT
            return str(digits), CellNote.LOSSY_NUMBER if lossy else CellNote.NUMBER
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
