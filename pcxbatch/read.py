"""Read an input file into header names and a lazy stream of rows: the only module that uses
pandas (and openpyxl for reading).

In: a path to a ``.csv``/``.tsv``/``.txt`` text file or a ``.xlsx``/``.xlsm`` workbook (and, for
workbooks, a sheet name or 0-based index). Out: a :class:`Table` whose ``columns`` are the header
texts and whose ``rows`` yield one :class:`~pcxbatch.model.SourceRow` per non-blank data row, in
file order, with every cell as stripped text. A file that cannot be used raises
:class:`~pcxbatch.errors.InputError` with one line naming the file and the problem, both when the
table is opened and while its rows are read.

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
  encoding is detected: UTF-8 with or without BOM, UTF-16 with BOM (Excel's "Unicode text"),
  otherwise Windows-1252. The separator (``,``, ``;`` or tab) is sniffed from the first lines,
  or taken from Excel's ``sep=;`` first line (which, as in Excel, is not counted as a row). Empty
  cells past the header's width are ignored; a row with text past it stops the read with an
  ``InputError`` naming the row (an unquoted separator inside a cell, usually).
- Workbook cells: a formula gives its cached value (never evaluated; a formula that was never
  calculated reads as empty) and the note ``FORMULA``; a number gives its plain digits and the
  note ``NUMBER`` (``LOSSY_NUMBER`` when it has more than 15 significant digits, which Excel
  cannot hold, so digits may be gone); dates and times give ISO text, booleans ``TRUE``/``FALSE``.
  Cells to the right of the last header cell are ignored.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import posixpath
import re
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.parsers import expat

import openpyxl
import pandas as pd

from pcxbatch.errors import InputError
from pcxbatch.model import CellNote, SourceRow

__all__ = ["SUPPORTED_EXTENSIONS", "Table", "file_sha256", "read_table"]

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
_SAVE_AS = "open it and save it as .xlsx or .csv"

# Big enough that pandas' per-chunk overhead vanishes, small enough to keep memory flat.
_CSV_CHUNK_ROWS = 50_000
_BLOCK = 1 << 20
_SNIFF_CHARS = 64 * 1024
_SPARE_CELLS = 8
_SNIFF_RECORDS = 50
_SEPARATORS = (",", ";", "\t")

_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Office writes an encrypted workbook as an OLE file holding a stream of this (UTF-16) name.
_ENCRYPTED_STREAM = "EncryptedPackage".encode("utf-16-le")

_BAD_LINE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_OPEN_QUOTE = re.compile(r"EOF inside string starting at row (\d+)")
# A formula element, with or without a namespace prefix; text cannot contain a raw "<".
_FORMULA_TAG = re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?f[\s/>]")
_WHITESPACE_RUN = re.compile(r"\s+")
_SEPARATOR_HINT = re.compile(r'"?sep=([^\r\n"])"?[^\S\r\n]*\r?\n', re.IGNORECASE)

# Excel keeps 15 significant digits; an integral number with more has probably lost some.
_EXACT_DIGITS_LIMIT = 10**15

# openpyxl warns about styles, data validation and the like: nothing a user can act on.
warnings.filterwarnings("ignore", category=UserWarning, module=r"openpyxl(\..*)?")


@dataclass(frozen=True)
class Table:
    """An opened input: header names and a one-shot, lazy iterator over its data rows.

    ``sheet`` is the sheet's name for workbooks and ``None`` for text files; ``header_row`` is the
    spreadsheet row number of the header. ``encoding`` and ``separator`` say how a text file was
    read (``None`` for workbooks). Iterating ``rows`` may raise ``InputError``.
    """

    path: Path
    sheet: str | None
    columns: tuple[str, ...]
    header_row: int
    rows: Iterator[SourceRow]
    encoding: str | None = None
    separator: str | None = None


def read_table(path: Path, *, sheet: str | int | None = None) -> Table:
    """Open ``path`` and read its header; the rows are read lazily as ``Table.rows`` is iterated.

    ``sheet`` picks a workbook's sheet by name or 0-based index (default: the first sheet); for a
    text file only ``None`` or ``0`` make sense. Raises ``InputError`` for any unusable file.
    """
    path = Path(path)
    suffix = _check_file(path)
    if suffix in _TEXT_EXTENSIONS:
        if sheet not in (None, 0):
            raise InputError(f"{path}: is a text file with no sheets; remove the sheet setting")
        return _read_text(path)
    return _read_workbook(path, sheet)


def file_sha256(path: Path) -> str:
    """The file's SHA-256 as 64 lower-case hex digits, read in blocks (memory stays flat)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(_BLOCK):
                digest.update(block)
    except OSError as exc:
        raise InputError(f"{path}: cannot be read: {_os_reason(exc)}") from exc
    return digest.hexdigest()


# --- checks common to every file ---------------------------------------------------------------


def _check_file(path: Path) -> str:
    """Return the lower-case suffix of a readable, non-empty, supported file, or raise."""
    suffix = path.suffix.lower()
    try:
        if not path.exists():
            raise InputError(f"{path}: file not found")
        if path.is_dir():
            raise InputError(f"{path}: is a folder, not a file")
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{path}: cannot be read: {_os_reason(exc)}") from exc
    if suffix in _OTHER_FORMATS:
        raise InputError(f"{path}: is {_OTHER_FORMATS[suffix]}, which is not supported; {_SAVE_AS}")
    if suffix not in _TEXT_EXTENSIONS and suffix not in _WORKBOOK_EXTENSIONS:
        shown = f"'{suffix}' files are" if suffix else "files without an extension are"
        raise InputError(
            f"{path}: {shown} not supported; use one of {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes)")
    return suffix


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _unique_names(raw: Sequence[str]) -> tuple[str, ...]:
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


# --- text files --------------------------------------------------------------------------------


def _read_text(path: Path) -> Table:
    encoding = _detect_encoding(path)
    try:
        with open(path, encoding=encoding, newline="") as handle:
            sample = handle.read(_SNIFF_CHARS)
            complete = not handle.read(1)
        # Excel reads a first line "sep=;" as the separator to use, and does not show it.
        hidden = 0
        if hint := _SEPARATOR_HINT.match(sample):
            separator, hidden = hint.group(1), 1
        else:
            separator = _sniff_separator(sample, complete)
        header, header_index = _find_text_header(path, encoding, separator, hidden)
    except (OSError, UnicodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot be read as text: {exc}") from exc
    if header is None:
        raise InputError(f"{path}: has no header row (every line is blank)")
    columns = _unique_names([cell.strip() for cell in header])
    rows = _text_rows(path, encoding, separator, len(columns), header_index, hidden)
    return Table(path, None, columns, header_index + 1 - hidden, rows, encoding, separator)


def _detect_encoding(path: Path) -> str:
    """UTF-8 (BOM or not) when the whole file decodes as UTF-8, UTF-16 when it has a UTF-16 BOM,
    else Windows-1252; raises for binary files and for anything else."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                return "utf-16"
            if head.startswith(_ZIP_MAGIC):
                raise InputError(
                    f"{path}: is a zip file (an Excel .xlsx workbook?), not text; "
                    "give it the right extension (.xlsx) or export it as CSV"
                )
            if head.startswith(_OLE_MAGIC):
                raise InputError(
                    f"{path}: is an Office binary file (an old .xls workbook or a "
                    f"password-protected one), not text; {_SAVE_AS}"
                )
            handle.seek(0)
            utf8_ok = _decodes(handle, "utf-8")
            if utf8_ok is None:
                raise InputError(
                    f"{path}: contains binary data (NUL bytes), not CSV text; export it as CSV"
                )
            if utf8_ok:
                return "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"
            handle.seek(0)
            if _decodes(handle, "cp1252"):
                return "cp1252"
    except OSError as exc:
        raise InputError(f"{path}: cannot be read: {_os_reason(exc)}") from exc
    raise InputError(
        f"{path}: is neither UTF-8 nor Windows-1252 text; save it as 'CSV UTF-8' and try again"
    )


def _decodes(handle: io.BufferedReader, encoding: str) -> bool | None:
    """Whether the rest of ``handle`` decodes in ``encoding``; ``None`` when it holds NUL bytes."""
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        while block := handle.read(_BLOCK):
            if b"\x00" in block:
                return None
            decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _sniff_separator(sample: str, complete: bool) -> str:
    """Pick ``,``, ``;`` or tab: the one that splits the header into most cells consistently
    with the lines below it; ``,`` for a one-column file."""
    if not complete:  # the sample's last line is probably cut short
        sample = sample[: sample.rfind("\n") + 1] or sample
    best: tuple[float, int, int] = (0.0, 0, 0)
    chosen = ","
    for rank, separator in enumerate(reversed(_SEPARATORS)):
        records: list[list[str]] = []
        for record in csv.reader(io.StringIO(sample, newline=""), delimiter=separator):
            if any(cell.strip() for cell in record):
                records.append(record)
                if len(records) >= _SNIFF_RECORDS:
                    break
        if not records or len(records[0]) < 2:
            continue
        width = len(records[0])
        body = records[1:]
        consistency = sum(len(r) == width for r in body) / len(body) if body else 1.0
        score = (consistency, width, rank)
        if score > best:
            best, chosen = score, separator
    return chosen


def _find_text_header(
    path: Path, encoding: str, separator: str, skip: int
) -> tuple[list[str] | None, int]:
    """The first non-blank record after ``skip`` records, and its 0-based record index."""
    with open(path, encoding=encoding, newline="") as handle:
        for index, record in enumerate(csv.reader(handle, delimiter=separator)):
            if index >= skip and any(cell.strip() for cell in record):
                return record, index
    return None, 0


def _text_rows(
    path: Path, encoding: str, separator: str, width: int, header_index: int, hidden: int
) -> Iterator[SourceRow]:
    """Data rows of a text file, read in chunks by pandas' C parser, every cell as text.

    A few spare columns past the header absorb empty trailing cells (``u1,active,,``); a row
    with text in them, or with more cells than even the spares hold, stops the read.
    """
    first_data_row = header_index + 2 - hidden
    try:
        reader = pd.read_csv(
            path,
            sep=separator,
            header=None,
            names=list(range(width + _SPARE_CELLS)),
            skiprows=header_index + 1,  # counts records, so a quoted line break is fine
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,  # blank lines must count, or row numbers would shift
            encoding=encoding,
            engine="c",
            chunksize=_CSV_CHUNK_ROWS,
        )
        with reader:
            for chunk in reader:
                if chunk.empty:
                    continue
                first = int(chunk.index[0]) + first_data_row  # the index counts from 0
                _check_spare_cells(path, chunk, width, first, separator)
                columns = [[cell.strip() for cell in chunk[c].tolist()] for c in range(width)]
                for number, values in enumerate(zip(*columns, strict=True), start=first):
                    if any(values):
                        yield SourceRow(number, values)
    except pd.errors.ParserError as exc:
        raise InputError(_parser_problem(path, str(exc), separator, hidden)) from exc
    except (OSError, UnicodeError, ValueError) as exc:
        raise InputError(f"{path}: cannot be read as text: {exc}") from exc


def _check_spare_cells(
    path: Path, chunk: pd.DataFrame, width: int, first: int, separator: str
) -> None:
    for column in range(width, width + _SPARE_CELLS):
        cells = chunk[column]
        filled = cells[cells.to_numpy() != ""]
        filled = filled[filled.str.strip() != ""]
        if len(filled):
            offset = int(filled.index[0]) - int(chunk.index[0])
            raise InputError(_too_many_cells(path, first + offset, width, separator))


def _too_many_cells(path: Path, row: int, width: int, separator: str) -> str:
    shown = "tab" if separator == "\t" else f"'{separator}'"
    return (
        f"{path}: row {row} has more cells than the header's {width}; "
        f"a cell that contains {shown} must be in double quotes"
    )


def _parser_problem(path: Path, message: str, separator: str, hidden: int) -> str:
    # pandas counts every record, skipped ones too: from 1 in one message, from 0 in the other.
    if match := _BAD_LINE.search(message):
        width = int(match.group(1)) - _SPARE_CELLS
        return _too_many_cells(path, int(match.group(2)) - hidden, width, separator)
    if match := _OPEN_QUOTE.search(message):
        row = int(match.group(1)) + 1 - hidden
        return f'{path}: row {row} opens a double quote (") that is never closed'
    return f"{path}: cannot be read as CSV: {message.strip()}"


# --- workbooks ---------------------------------------------------------------------------------


def _read_workbook(path: Path, sheet: str | int | None) -> Table:
    _check_workbook_bytes(path)
    book = _open_workbook(path, data_only=True)
    books: list[Any] = [book]
    try:
        title = _pick_sheet(path, list(book.sheetnames), sheet)
        sheet_obj = book[title]
        if not hasattr(sheet_obj, "iter_rows"):
            raise InputError(f"{path}: sheet '{title}' is a chart, not a table")
        raw = _workbook_rows(path, title, books, sheet_obj, _formula_cells(path, title, books))
        header_number, header_cells = 0, None
        for number, cells, _ in raw:
            if any(cells):
                header_number, header_cells = number, cells
                break
    except BaseException:
        for opened in books:
            opened.close()
        raise
    if header_cells is None:
        raise InputError(f"{path}: sheet '{title}' has no header row (the sheet is blank)")
    width = len(header_cells)
    while not header_cells[width - 1]:
        width -= 1
    columns = _unique_names(header_cells[:width])
    return Table(path, title, columns, header_number, _workbook_data(raw, width))


def _check_workbook_bytes(path: Path) -> None:
    """Recognise files that only pretend to be .xlsx, to say what they really are."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if head.startswith(_OLE_MAGIC):
                if _contains(handle, _ENCRYPTED_STREAM):
                    raise InputError(
                        f"{path}: the workbook is password-protected; open it in Excel, "
                        "remove the password (File > Info > Protect Workbook) and save it again"
                    )
                raise InputError(
                    f"{path}: is an old-format Excel workbook (.xls) with an .xlsx name; {_SAVE_AS}"
                )
            if not head.startswith(_ZIP_MAGIC):
                raise InputError(
                    f"{path}: is not an Excel workbook (an .xlsx file is a zip archive); "
                    "if it is CSV text, give it a .csv extension"
                )
        with zipfile.ZipFile(path) as archive:
            members = set(archive.namelist())
            if "mimetype" in members and archive.read("mimetype").startswith(
                b"application/vnd.oasis.opendocument"
            ):
                raise InputError(
                    f"{path}: is an OpenDocument spreadsheet (.ods) with an .xlsx name; {_SAVE_AS}"
                )
            if "[Content_Types].xml" not in members:
                raise InputError(f"{path}: is a zip archive but not an Excel workbook")
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{path}: is damaged and cannot be opened as a workbook: {exc}") from exc


def _contains(handle: io.BufferedReader, needle: bytes) -> bool:
    tail = b""
    while block := handle.read(_BLOCK):
        if needle in tail + block:
            return True
        tail = block[-len(needle) :]
    return False


def _open_workbook(path: Path, *, data_only: bool) -> Any:
    try:
        return openpyxl.load_workbook(path, read_only=True, data_only=data_only)
    except InputError:
        raise
    except Exception as exc:
        # Any exception here comes from parsing a damaged file, which is the user's file to fix,
        # never a reason to show a traceback.
        raise InputError(f"{path}: is damaged and cannot be opened as a workbook: {exc}") from exc


def _pick_sheet(path: Path, names: list[str], sheet: str | int | None) -> str:
    listed = ", ".join(f"'{name}'" for name in names)
    if sheet is None:
        if not names:
            raise InputError(f"{path}: the workbook has no sheets")
        return names[0]
    if isinstance(sheet, int) and not isinstance(sheet, bool):
        if 0 <= sheet < len(names):
            return names[sheet]
        raise InputError(
            f"{path}: has no sheet number {sheet} (numbered from 0; it has {len(names)}: {listed})"
        )
    wanted = str(sheet).strip()
    if wanted in names:
        return wanted
    folded = [name for name in names if name.casefold() == wanted.casefold()]
    if len(folded) == 1:
        return folded[0]
    if wanted.isdigit():  # "--sheet 1" arrives as text: a number no sheet is named is an index
        return _pick_sheet(path, names, int(wanted))
    raise InputError(f"{path}: has no sheet named '{wanted}'; its sheets are {listed}")


def _formula_cells(path: Path, title: str, books: list[Any]) -> Iterator[tuple[int, int]]:
    """(row, column) of every formula cell of the sheet, both from 1, in sheet order.

    openpyxl gives either a formula or its cached value, never both. Rather than read the whole
    sheet a second time through openpyxl (twice the time), a quick scan finds whether it has
    formulas at all (most sheets have none), and a lean XML pass locates them.
    """
    part = _sheet_part(path, title)
    if part is None:  # an unusual package layout: let openpyxl find the formulas, slowly
        formula_book = _open_workbook(path, data_only=False)
        books.append(formula_book)
        return _formula_cells_by_openpyxl(formula_book[title])
    if not _has_formula_tag(path, part):
        return iter(())
    return _formula_cells_by_expat(path, part)


def _sheet_part(path: Path, title: str) -> str | None:
    """The zip member holding sheet ``title``, found as the OOXML package says; ``None`` if not."""
    try:
        with zipfile.ZipFile(path) as archive:
            book_part = _relationship_targets(archive, "_rels/.rels", "", by="Type").get(
                "officeDocument"
            )
            if book_part is None:
                return None
            folder, name = posixpath.split(book_part)
            targets = _relationship_targets(
                archive, posixpath.join(folder, "_rels", name + ".rels"), folder, by="Id"
            )
            for tag, attributes in _xml_elements(archive.read(book_part)):
                if _local(tag) != "sheet" or attributes.get("name") != title:
                    continue
                for key, value in attributes.items():
                    if _local(key) == "id" and "}" in key:
                        return targets.get(value)
    except (KeyError, OSError, zipfile.BadZipFile, expat.ExpatError):
        return None
    return None


def _relationship_targets(
    archive: zipfile.ZipFile, rels_part: str, folder: str, *, by: str
) -> dict[str, str]:
    """Targets of a .rels part keyed by Id, or by the last word of their Type."""
    targets: dict[str, str] = {}
    for tag, attributes in _xml_elements(archive.read(rels_part)):
        target = attributes.get("Target", "")
        if _local(tag) != "Relationship" or attributes.get("TargetMode") == "External":
            continue
        if not target:
            continue
        if target.startswith("/"):
            member = target.lstrip("/")
        else:
            member = posixpath.normpath(posixpath.join(folder, target))
        key = attributes.get(by, "")
        targets[key.rsplit("/", 1)[-1] if by == "Type" else key] = member
    return targets


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml_parser() -> expat.XMLParserType:
    """An expat parser that names elements ``{namespace}local`` and refuses any DTD: OOXML parts
    never have one, and refusing it rules out entity-expansion attacks."""
    parser = expat.ParserCreate(namespace_separator="}")

    def no_dtd(*_: object) -> None:
        raise expat.ExpatError("a document type declaration is not allowed here")

    parser.StartDoctypeDeclHandler = no_dtd
    parser.EntityDeclHandler = no_dtd
    return parser


def _xml_elements(data: bytes) -> list[tuple[str, dict[str, str]]]:
    """Every start tag of a small XML document, in order, with its attributes."""
    elements: list[tuple[str, dict[str, str]]] = []
    parser = _xml_parser()
    parser.StartElementHandler = lambda tag, attributes: elements.append((tag, attributes))
    parser.Parse(data, True)
    return elements


def _has_formula_tag(path: Path, part: str) -> bool:
    try:
        with zipfile.ZipFile(path) as archive, archive.open(part) as source:
            tail = b""
            while block := source.read(_BLOCK):
                if _FORMULA_TAG.search(tail + block):
                    return True
                tail = block[-64:]
    except (KeyError, OSError, zipfile.BadZipFile, EOFError):
        return True  # cannot tell; the full pass will find out (or report the damage)
    return False


def _formula_cells_by_expat(path: Path, part: str) -> Iterator[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    row = column = 0

    def start(name: str, attributes: dict[str, str]) -> None:
        nonlocal row, column
        local = name[name.rfind("}") + 1 :]
        if local == "c":
            reference = attributes.get("r")
            if reference:
                column = 0
                for char in reference:
                    if char.isdigit():
                        break
                    column = column * 26 + ord(char.upper()) - 64
            else:
                column += 1
        elif local == "f":
            found.append((row, column))
        elif local == "row":
            number = attributes.get("r")
            row = int(number) if number else row + 1
            column = 0

    parser = _xml_parser()
    parser.StartElementHandler = start
    with zipfile.ZipFile(path) as archive, archive.open(part) as source:
        while block := source.read(_BLOCK):
            parser.Parse(block, False)
            yield from found
            found.clear()
        parser.Parse(b"", True)
        yield from found


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
) -> Iterator[tuple[int, list[str], dict[int, CellNote]]]:
    """Every row of the sheet (blank ones too) as (row number, cell texts, notes).

    Closes the workbooks when done; parsing errors become ``InputError`` naming the row.
    """
    number = 0
    try:
        values_sheet.reset_dimensions()  # stored dimensions are sometimes wrong: trust the cells
        formula = next(formula_cells, None)
        for number, values in enumerate(values_sheet.iter_rows(values_only=True), start=1):
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
        raise InputError(f"{path}: {where} cannot be read (damaged workbook?): {exc}") from exc
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
        return str(value), CellNote.NUMBER
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
