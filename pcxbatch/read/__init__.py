"""Read an input file into header names and a lazy stream of rows: the only stage that uses
pandas (and openpyxl for reading).

In: a path to a ``.csv``/``.tsv``/``.txt`` text file or a ``.xlsx``/``.xlsm`` workbook (and, for
workbooks, a sheet name or 0-based index and what to do with hidden rows), and the largest file
size to accept. Out: a :class:`Table` whose ``columns`` are the header texts and whose ``rows``
yield one :class:`~pcxbatch.model.SourceRow` per non-blank data row, in file order, with every
cell as stripped text. A file that cannot be used raises :class:`~pcxbatch.errors.InputError`
with one line naming the file and the problem, both when the table is opened and while its rows
are read. Any file at all, however damaged or hostile, ends in rows or in that one error: never
another exception, never a cell evaluated.

Size: a file larger than ``max_bytes`` (default :data:`MAX_INPUT_BYTES`) is refused before any
row is read, with a message saying how to raise the limit. So is a workbook that unpacks to too
much, judged from its zip's directory before any part of it is unpacked: one part larger than
:data:`PART_FLOOR_BYTES` or :data:`PART_PER_FILE_BYTE` times the file's size, whichever is
larger (real parts come to at most some 22 times; a "zip bomb" to a thousand, and openpyxl would
hold a bomb of shared strings in memory whole), or all parts together more than
:data:`UNPACKED_PER_BYTE` times ``max_bytes``.

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
  the *visible* sheets (as a person counts the tabs), else the first visible sheet. Text is a
  name first: ``"2"`` is the sheet named ``2`` if there is one (exactly, else ignoring case),
  and only otherwise the third visible sheet; an ``int`` is always a position. Messages name
  the sheet read. A hidden sheet is never read unless it is named: its rows are ones nobody
  reviewing the file has seen.
- Hidden rows, for the same reason: rows hidden by hand, by a filter (Excel saves the rows a
  filter leaves out as hidden) or by a height of zero. A hidden row that would be a data row
  (below the header, with text in the table's columns) refuses the file by default
  (``hidden_rows="refuse"``), naming the rows; ``"skip"`` leaves them out and lists them in
  ``Table.skipped_rows``; ``"include"`` reads them like any other (:data:`HIDDEN_ROW_CHOICES`).
  Hidden blank rows, and hidden rows above the header, change nothing. Hidden columns are read.
- Merged cells inside the table (below the header, within its columns) refuse the file: a merged
  cell's value belongs to its first cell only, so the rows beside it would be read as empty and
  fall back on the job's defaults, which is not what the person who merged them meant.

Inside: this module checks the file (it exists, its extension, its size) and sends it on by
kind; :mod:`~pcxbatch.read.text` reads text with pandas, :mod:`~pcxbatch.read.workbook` reads
workbooks with openpyxl, :mod:`~pcxbatch.read.ooxml` checks a workbook's zip and XML directly
(what it really is, how large its parts unpack, formulas, merged cells, hidden rows), and
:mod:`~pcxbatch.read.common` holds what they share. pandas and openpyxl are imported only when
a file needs them, so importing this package stays cheap.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pcxbatch.errors import InputError
from pcxbatch.read import ooxml
from pcxbatch.read.common import BLOCK, SAVE_AS, Table, os_reason
from pcxbatch.rules import HIDDEN_ROW_CHOICES

__all__ = [
    "HIDDEN_ROW_CHOICES",
    "MAX_INPUT_BYTES",
    "PART_FLOOR_BYTES",
    "PART_PER_FILE_BYTE",
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
#: A workbook's parts together may unpack to this many times ``max_bytes``: real sheets
#: compress 5-22 times, a crafted zip a thousand times.
UNPACKED_PER_BYTE = 20
#: No one part of a workbook may unpack to more than the larger of this and
#: :data:`PART_PER_FILE_BYTE` times the file's size. The densest sheets Excel, LibreOffice,
#: openpyxl or xlsxwriter write (the same text in every cell of a million rows) unpack to some
#: 22 times the file; a crafted part to a thousand. The floor keeps small files clear of the
#: ratio and bounds what a small bomb can cost.
PART_FLOOR_BYTES = 50 * 1000 * 1000
PART_PER_FILE_BYTE = 50
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


def read_table(
    path: Path,
    *,
    sheet: str | int | None = None,
    max_bytes: int | None = MAX_INPUT_BYTES,
    hidden_rows: str = "refuse",
) -> Table:
    """Open ``path`` and read its header; the rows are read lazily as ``Table.rows`` is iterated.

    ``sheet`` picks a workbook's sheet: text is a sheet's name, else (all digits) a 0-based
    position among the visible sheets; an ``int`` is a position; ``None`` the first visible
    sheet. For a text file only ``None`` and ``0`` make sense. ``max_bytes`` is the largest file
    accepted (``None``: no limit, and no bound on what a workbook unpacks to either).
    ``hidden_rows`` says what to do with a workbook's hidden data rows, one of
    :data:`HIDDEN_ROW_CHOICES`: ``"refuse"`` the file, ``"skip"`` them (listed in
    ``Table.skipped_rows``) or ``"include"`` them. Raises ``InputError`` for any unusable file,
    ``ValueError`` for a ``hidden_rows`` not among the choices.
    """
    if hidden_rows not in HIDDEN_ROW_CHOICES:
        raise ValueError(f"hidden_rows must be one of {HIDDEN_ROW_CHOICES}, not {hidden_rows!r}")
    path = Path(path)
    suffix, size = _check_file(path, max_bytes)
    # pandas and openpyxl take most of a second to import: each is loaded only once a file that
    # needs it has passed the checks, so that a command reading no file (--help) starts at once.
    if suffix in _TEXT_EXTENSIONS:
        if sheet not in (None, 0) and str(sheet).strip() != "0":
            raise InputError(f"{path}: is a text file with no sheets; remove the sheet setting")
        from pcxbatch.read import text

        return text.read_text(path)
    if max_bytes is not None:
        _check_unpacked(path, size, ooxml.package_parts(path), max_bytes)
    else:
        ooxml.package_parts(path)  # what the file really is, all the same
    from pcxbatch.read import workbook

    return workbook.read_workbook(path, sheet, hidden_rows)


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


def _check_file(path: Path, max_bytes: int | None) -> tuple[str, int]:
    """The lower-case suffix and the size of a readable, non-empty, supported file no larger
    than ``max_bytes``; raises ``InputError`` for any other."""
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
    return suffix, size


def _check_unpacked(path: Path, size: int, parts: list[tuple[str, int]], max_bytes: int) -> None:
    """Refuse a workbook (of ``size`` bytes) that unpacks to too much: a "zip bomb" would exhaust
    the machine long before its rows were read. No one part may unpack to more than
    :data:`PART_FLOOR_BYTES` or :data:`PART_PER_FILE_BYTE` times the file's size, whichever is
    larger, and all of them together to no more than :data:`UNPACKED_PER_BYTE` times
    ``max_bytes``. ``parts`` are the (name, unpacked size) of each, from the zip's directory."""
    part_limit = max(PART_FLOOR_BYTES, PART_PER_FILE_BYTE * size)
    name, largest = max(parts, key=lambda part: part[1], default=("", 0))
    if largest > part_limit:
        raise InputError(
            f"{path}: its part {name} unpacks to {_size(largest)}, more than the "
            f"{_size(part_limit)} any one part of a {_size(size)} workbook may (the larger of "
            f"{_size(PART_FLOOR_BYTES)} and {PART_PER_FILE_BYTE} times the file's size); no "
            "spreadsheet packs its data that tightly, so the file is damaged or made to "
            "exhaust memory. Open it in Excel and save it again if it is right"
        )
    unpacked = sum(part[1] for part in parts)
    if unpacked > max_bytes * UNPACKED_PER_BYTE:
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
