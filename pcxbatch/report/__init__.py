"""The ``report`` stage: ``results.csv``, ``results.xlsx`` and ``summary.json`` in a run folder.

In: the run folder, the input's own column names, and an iterable of :class:`ReportLine` (one per
input data row, in input order; usually a generator, possibly a million lines long), or a
summary mapping. Out: the files, each written to a temporary name in the run folder and renamed
into place only when complete (so a crash never leaves half a report under the final name),
readable by the owner only (``0o600``).

What a reader of the files can rely on:

* Headers are :data:`RESULT_COLUMNS` then the input's own columns (see :func:`report_headers`).
* Every text cell, header names included, goes through :func:`neutralise`: a text that a
  spreadsheet would run as a formula (leading ``=``, ``+``, ``-``, ``@``, tab or CR) gets a
  leading apostrophe. Otherwise text is kept exactly.
* ``results.csv``: UTF-8 with a BOM (so Excel picks the encoding), comma-separated, quoted by
  the ``csv`` module wherever a field needs it (commas, quotes, newlines), CRLF line ends.
  It is the complete record: nothing is ever shortened.
* ``results.xlsx``: ``row``, ``http_status`` and ``attempts`` are numbers; everything else is a
  string cell (never a formula, URL or number). Excel's own limits apply, and are handled so:

  - a text longer than 32,767 characters (Excel's cell limit, counted in UTF-16 units) is cut
    short and ends with ``[... truncated: ...]``, saying how long it was and that the full text
    is in ``results.csv``;
  - control characters that XML cannot hold (U+0000-U+001F other than tab and newline, and
    U+FFFE/U+FFFF) are stored with OOXML's ``_xHHHH_`` escape, which Excel decodes back to the
    original character (xlsxwriter does this, and likewise escapes a literal ``_xHHHH_`` so it
    reads back unchanged). Readers that do not decode the escape (openpyxl) show ``_x0001_``;
  - more than 1,048,575 lines (Excel's row limit less the header) continue on a second sheet
    ``results (2)`` (then ``results (3)``, ...), each with its own header row.

* Both files: a lone UTF-16 surrogate (which no UTF-8 file can hold) becomes U+FFFD.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import IO, Any

import xlsxwriter

from ..model import ReportLine

__all__ = [
    "RESULT_COLUMNS",
    "XLSX_CELL_LIMIT",
    "XLSX_ROWS_PER_SHEET",
    "atomic_write_text",
    "neutralise",
    "report_headers",
    "write_results",
    "write_summary",
]

#: The report's own columns, first in every results file, in this order.
RESULT_COLUMNS: tuple[str, ...] = (
    "row",
    "user_id",
    "action",
    "target_status",
    "outcome",
    "http_status",
    "attempts",
    "message",
    "request_id",
)

#: Characters that make a spreadsheet treat a cell as a formula (OWASP "CSV injection").
_FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")

#: Excel's maximum length of a cell's text, in UTF-16 code units.
XLSX_CELL_LIMIT = 32_767

#: Data lines per worksheet: Excel's 1,048,576 rows less the header row. A module constant so
#: tests can lower it instead of writing a million lines.
XLSX_ROWS_PER_SHEET = 1_048_575

#: Excel's limit on a worksheet name.
_SHEET_NAME_MAX = 31

#: Column widths (in Excel's character units) for the result columns: fixed, because a streamed
#: sheet cannot be measured before it is written.
_RESULT_WIDTHS: dict[str, float] = {
    "row": 8,
    "user_id": 26,
    "action": 12,
    "target_status": 20,
    "outcome": 14,
    "http_status": 11,
    "attempts": 9,
    "message": 60,
    "request_id": 38,
}

_SURROGATES = re.compile("[\ud800-\udfff]")
_SHEET_NAME_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")

FILE_MODE = 0o600


def neutralise(text: str) -> str:
    """Return ``text`` with a leading apostrophe if a spreadsheet would run it as a formula.

    In: any text. Out: ``"'" + text`` when ``text`` starts with ``=``, ``+``, ``-``, ``@``, tab
    or CR; otherwise ``text`` unchanged. Excel and LibreOffice show the apostrophe-prefixed
    value as plain text, so a hostile cell such as ``=HYPERLINK(...)`` is never evaluated when
    an analyst opens the report.
    """
    if text.startswith(_FORMULA_PREFIXES):
        return "'" + text
    return text


def _header_key(name: str) -> str:
    # What a person would consider "the same header": the text shown after neutralising, in
    # any case, ignoring surrounding spaces.
    return neutralise(name).strip().casefold()


def report_headers(input_columns: Sequence[str]) -> list[str]:
    """The header row of the results files (before :func:`neutralise`, which the writers apply).

    In: the input's own column names, in order. Out: :data:`RESULT_COLUMNS` followed by one
    header per input column. An input column whose name matches (ignoring case and surrounding
    spaces) a result column or an earlier header becomes ``"<name> (input)"``, then
    ``"<name> (input 2)"``, ... until it is unique; so the same input always gives the same
    headers, and every header is distinct.
    """
    headers = list(RESULT_COLUMNS)
    seen = {_header_key(h) for h in headers}
    for name in input_columns:
        candidate = name
        n = 1
        while _header_key(candidate) in seen:
            base = name.strip()
            candidate = f"{base} (input)" if n == 1 else f"{base} (input {n})"
            n += 1
        seen.add(_header_key(candidate))
        headers.append(candidate)
    return headers


def _clean(text: str) -> str:
    # A lone surrogate (e.g. from a surrogateescape decode upstream) cannot be encoded as UTF-8
    # and would crash the writer at the end of a long run; the ASCII test keeps the common case
    # cheap.
    if not text.isascii() and _SURROGATES.search(text):
        return _SURROGATES.sub("\ufffd", text)
    return text


def _text_cell(text: str) -> str:
    return _clean(neutralise(text))


def _utf16_len(text: str) -> int:
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _fit_xlsx(text: str) -> str:
    """Cut ``text`` to Excel's cell limit, ending with a note saying so; short text unchanged."""
    # A code point takes at most 2 UTF-16 units, so half the limit can never overflow.
    if len(text) <= XLSX_CELL_LIMIT // 2 or _utf16_len(text) <= XLSX_CELL_LIMIT:
        return text
    mark = (
        f" [... truncated: Excel holds at most {XLSX_CELL_LIMIT:,} characters in a cell;"
        f" this text has {len(text):,}; the full text is in results.csv]"
    )
    budget = XLSX_CELL_LIMIT - _utf16_len(mark)
    # Cut on code points, never inside a surrogate pair.
    used = 0
    end = 0
    for ch in text:
        width = 2 if ord(ch) > 0xFFFF else 1
        if used + width > budget:
            break
        used += width
        end += 1
    return text[:end] + mark


def _sheet_names(title: str) -> Iterator[str]:
    """``title``, ``title (2)``, ``title (3)``, ... each a valid Excel worksheet name."""
    base = _SHEET_NAME_FORBIDDEN.sub("_", title).strip().strip("'")
    if not base or base.casefold() == "history":  # "History" is reserved by Excel
        base = "results"
    yield base[:_SHEET_NAME_MAX]
    n = 2
    while True:
        suffix = f" ({n})"
        yield base[: _SHEET_NAME_MAX - len(suffix)].rstrip().rstrip("'") + suffix
        n += 1


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` so that ``path`` is either the old file or the new one.

    In: the final path (its folder must exist) and the text. Out: the file, mode ``0o600``.
    The text goes to a temporary file in the same folder, is fsynced, and is renamed over
    ``path``; on any error the temporary file is removed and the error propagates.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            os.fchmod(fh.fileno(), FILE_MODE)  # mkstemp's 0o600 is still subject to umask
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _json_default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"summary value of type {type(value).__name__} is not JSON-serialisable")


def write_summary(run_dir: Path, summary: Mapping[str, Any]) -> Path:
    """Write ``run_dir/summary.json``: ``summary`` as indented JSON, keys in the order given.

    In: the run folder and the summary mapping (JSON types, plus datetimes/dates as ISO 8601,
    paths as text, enums as their value). Out: the path written (atomic, ``0o600``).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "summary.json"
    text = json.dumps(dict(summary), indent=2, ensure_ascii=False, default=_json_default) + "\n"
    atomic_write_text(path, text)
    return path


class _XlsxWriter:
    """Streams rows into a constant-memory workbook, starting a new sheet when one is full."""

    def __init__(
        self,
        path: Path,
        scratch: Path,
        headers: Sequence[str],
        sheet_title: str,
        widths: Sequence[float],
        preamble: Sequence[Sequence[str | int | None]] = (),
    ):
        self._workbook = xlsxwriter.Workbook(
            str(path),
            {
                "constant_memory": True,  # each row goes to disk once the next one starts
                "tmpdir": str(scratch),  # so a failed run's scratch files are ours to remove
                # Long messages on a million rows can pass 4 GB of XML; Python's zipfile only
                # adds the ZIP64 records to members that need them.
                "use_zip64": True,
                # Belt and braces: every text goes through write_string anyway.
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "strings_to_numbers": False,
            },
        )
        self._bold = self._workbook.add_format({"bold": True})
        self._headers = [_fit_xlsx(_text_cell(h)) for h in headers]
        self._widths = widths
        self._preamble = preamble  # rows above the first sheet's header (a preview's counts)
        self._names = _sheet_names(sheet_title)
        self._sheet: Any = None
        self._top = 0  # the current sheet's header row
        self._row = 0  # last row written on the current sheet

    def _new_sheet(self) -> None:
        self._finish_sheet()
        first = self._sheet is None
        sheet = self._workbook.add_worksheet(next(self._names))
        for col, width in enumerate(self._widths):
            sheet.set_column(col, col, width)
        top = 0
        if first:
            for top, cells in enumerate(self._preamble):
                self._write(sheet, top, cells)
            top = len(self._preamble)
        sheet.freeze_panes(top + 1, 0)
        for col, header in enumerate(self._headers):
            sheet.write_string(top, col, header, self._bold)
        self._sheet = sheet
        self._top = self._row = top

    def _finish_sheet(self) -> None:
        if self._sheet is not None:
            self._sheet.autofilter(self._top, 0, self._row, len(self._headers) - 1)

    def add(self, cells: Sequence[str | int | None]) -> None:
        if self._sheet is None or self._row >= XLSX_ROWS_PER_SHEET:
            self._new_sheet()
        self._row += 1
        self._write(self._sheet, self._row, cells)

    @staticmethod
    def _write(sheet: Any, row: int, cells: Sequence[str | int | None]) -> None:
        for col, value in enumerate(cells):
            if value is None or value == "":
                continue  # an empty cell; constant_memory ignores blanks without a format anyway
            if isinstance(value, int):
                sheet.write_number(row, col, value)
            else:
                sheet.write_string(row, col, _fit_xlsx(value))

    def close(self) -> None:
        if self._sheet is None:
            self._new_sheet()  # no lines: still a sheet with the header
        self._finish_sheet()
        self._workbook.close()

    def abandon(self) -> None:
        # A workbook that will never be closed still holds an open scratch file per sheet in
        # constant_memory mode; close them so nothing leaks (the folder is removed after).
        for sheet in self._workbook.worksheets():
            fh = getattr(sheet, "row_data_fh", None)
            if fh is not None:
                with contextlib.suppress(Exception):
                    fh.close()


def _input_width(header: str) -> float:
    return float(min(max(len(header) + 2, 12), 40))


def _cells(line: ReportLine, width: int) -> list[str | int | None]:
    """One line's cells in header order: ints/None for the numeric columns, text elsewhere."""
    if len(line.values) != width:
        raise ValueError(
            f"report line for row {line.row} has {len(line.values)} input values,"
            f" but the input has {width} columns"
        )
    return [
        line.row,
        _text_cell(line.user_id),
        _text_cell(line.action),
        _text_cell(line.target_status),
        _text_cell(str(line.outcome)),  # StrEnum: its value
        line.http_status,
        line.attempts,
        _text_cell(line.message),
        _text_cell(line.request_id),
        *(_text_cell(v) for v in line.values),
    ]


def _safe(value: str | int | None) -> str | int | None:
    return _text_cell(value) if isinstance(value, str) else value


def _csv_field(value: str | int | None) -> str:
    if value is None:
        return ""
    return str(value)


def write_results(
    run_dir: Path,
    input_columns: Sequence[str],
    lines: Iterable[ReportLine],
    *,
    xlsx: bool,
    sheet_title: str = "results",
) -> list[Path]:
    """Write ``run_dir/results.csv`` and, when ``xlsx`` is true, ``run_dir/results.xlsx``.

    In: the run folder (created if missing), the input's own column names, the lines (one per
    input data row, written in the order given; each ``values`` must have one text per input
    column, else ``ValueError``), whether to write the XLSX, and the first sheet's name.
    Out: the paths written, CSV first. Streaming and atomicity as :func:`write_table`.
    """
    headers = report_headers(input_columns)
    width = len(input_columns)
    widths = [
        _RESULT_WIDTHS.get(h, 12.0) if i < len(RESULT_COLUMNS) else _input_width(h)
        for i, h in enumerate(headers)
    ]
    return write_table(
        run_dir,
        "results",
        headers,
        (_cells(line, width) for line in lines),
        xlsx=xlsx,
        sheet_title=sheet_title,
        widths=widths,
    )


def write_table(
    run_dir: Path,
    name: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[str | int | None]],
    *,
    xlsx: bool,
    sheet_title: str | None = None,
    widths: Sequence[float] | None = None,
    preamble: Sequence[Sequence[str | int | None]] = (),
) -> list[Path]:
    """Write ``run_dir/NAME.csv`` and, when ``xlsx`` is true, ``run_dir/NAME.xlsx``.

    In: the folder (created if missing), the file name without suffix, the header row, the data
    rows (texts and whole numbers; ``None`` is an empty cell), and ``preamble`` rows written
    above the header (a preview's counts). Every text is neutralised against formula injection.
    Out: the paths written, CSV first.

    ``rows`` is consumed once, and both files are written side by side as it goes, so memory
    stays flat however many rows there are. If ``rows`` (or anything else) raises, neither
    file appears under its final name, any earlier complete file there is left as it was, no
    temporary file is left behind, and the exception propagates.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    csv_path = run_dir / f"{name}.csv"
    xlsx_path = run_dir / f"{name}.xlsx"
    widths = widths or [_input_width(h) for h in headers]

    fd, csv_tmp_name = tempfile.mkstemp(dir=run_dir, prefix=f".{name}.csv.", suffix=".tmp")
    csv_tmp = Path(csv_tmp_name)
    scratch: Path | None = None
    book: _XlsxWriter | None = None
    done = False
    try:
        csv_fh: IO[str] = os.fdopen(fd, "w", encoding="utf-8-sig", newline="")
        with csv_fh:
            os.fchmod(csv_fh.fileno(), FILE_MODE)  # mkstemp's 0o600 is still subject to umask
            writer = csv.writer(csv_fh)  # excel dialect: commas, minimal quoting, CRLF
            for cells in preamble:
                writer.writerow([_csv_field(_safe(c)) for c in cells])
            writer.writerow([_text_cell(h) for h in headers])
            if xlsx:
                # A private folder inside run_dir holds the workbook and xlsxwriter's scratch
                # files; removing it cleans up everything on failure in one step.
                scratch = Path(tempfile.mkdtemp(dir=run_dir, prefix=f".{name}.xlsx."))
                xlsx_tmp = scratch / f"{name}.xlsx"
                # Created up front so the workbook is owner-only from its first byte.
                os.close(os.open(xlsx_tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
                os.chmod(xlsx_tmp, FILE_MODE)
                book = _XlsxWriter(
                    xlsx_tmp,
                    scratch,
                    headers,
                    sheet_title or name,
                    widths,
                    [[_safe(c) for c in cells] for cells in preamble],
                )
            for cells in rows:
                writer.writerow([_csv_field(c) for c in cells])
                if book is not None:
                    book.add(cells)
            csv_fh.flush()
            os.fsync(csv_fh.fileno())
        if book is not None and scratch is not None:
            book.close()
            book = None
            _fsync_path(scratch / f"{name}.xlsx")
            os.replace(csv_tmp, csv_path)
            os.replace(scratch / f"{name}.xlsx", xlsx_path)
        else:
            os.replace(csv_tmp, csv_path)
        _fsync_dir(run_dir)
        done = True
    finally:
        if not done:
            with contextlib.suppress(OSError):
                csv_tmp.unlink()
            if book is not None:
                book.abandon()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return [csv_path, xlsx_path] if xlsx else [csv_path]
