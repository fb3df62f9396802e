"""The table writer: the only code in pcxbatch that writes a CSV or an XLSX file.

In: a folder, a file name without suffix, a header row, data rows, optional preamble rows above
the header, and whether to write an XLSX beside the CSV. Every value is raw: ``str`` (exactly as
the input file or the API gave it), ``int`` or ``None`` (an empty cell). Out: ``NAME.csv`` and,
when asked, ``NAME.xlsx``, each complete under its final name or not there at all.

Why here: every text this module writes, headers and preamble included, passes through
:mod:`pcxbatch.report.cells` on its way out (CSV: :func:`~pcxbatch.report.cells.csv_cell`;
XLSX: :func:`~pcxbatch.report.cells.xlsx_text` into a string cell). The rule is applied where
the bytes are written, not by callers, so no report can forget it. XlsxWriter and ``csv``
writing live in this module only.

The files:

* CSV: UTF-8 with a BOM (so Excel picks the encoding), comma-separated, quoted by the ``csv``
  module wherever a field needs it, CRLF line ends. Nothing is ever shortened.
* XLSX: written in XlsxWriter's constant-memory mode; texts are string cells, whole numbers are
  numbers. The header row is bold, frozen and filtered; a sheet that reaches Excel's row limit
  (:data:`XLSX_ROWS_PER_SHEET` data lines) continues on ``title (2)``, ``title (3)``, ... each
  with its own header row. The preamble goes above the first sheet's header only.

Rows are consumed once, both files written side by side as they come, so memory stays flat
however many rows there are. If the rows (or anything else) raise, neither file appears under
its final name, an earlier complete file there is left as it was, no temporary file is left
behind, and the exception propagates.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import xlsxwriter

from .cells import Cell, csv_cell, xlsx_text
from .files import FILE_MODE, fsync_dir, fsync_path, owner_only_temp

__all__ = ["XLSX_ROWS_PER_SHEET", "column_width", "write_table"]

#: Data lines per worksheet: Excel's 1,048,576 rows less the header row. A module constant so
#: tests can lower it instead of writing a million lines.
XLSX_ROWS_PER_SHEET = 1_048_575

#: Excel's limit on a worksheet name.
_SHEET_NAME_MAX = 31
_SHEET_NAME_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")


def column_width(header: str) -> float:
    """A column's width in Excel's character units, from its header: between 12 and 40."""
    return float(min(max(len(header) + 2, 12), 40))


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


class _Sink(Protocol):
    """One output file of a table, written to a temporary name until :meth:`commit`."""

    path: Path

    def begin(self, preamble: Sequence[Sequence[Cell]], headers: Sequence[str]) -> None: ...
    def add(self, cells: Sequence[Cell]) -> None: ...
    def finish(self) -> None: ...  # complete and on disk, still under the temporary name
    def commit(self) -> None: ...  # renamed into place
    def cleanup(self) -> None: ...  # temporary files removed; a committed file is kept


class _CsvSink:
    def __init__(self, run_dir: Path, name: str):
        self.path = run_dir / f"{name}.csv"
        fd, self._tmp = owner_only_temp(run_dir, self.path.name)
        try:
            self._fh = os.fdopen(fd, "w", encoding="utf-8-sig", newline="")
        except BaseException:
            os.close(fd)
            self._tmp.unlink()
            raise
        self._writer = csv.writer(self._fh)  # excel dialect: commas, minimal quoting, CRLF
        self._committed = False

    def begin(self, preamble: Sequence[Sequence[Cell]], headers: Sequence[str]) -> None:
        for cells in preamble:
            self.add(cells)
        self.add(headers)

    def add(self, cells: Sequence[Cell]) -> None:
        self._writer.writerow([csv_cell(c) for c in cells])

    def finish(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()

    def commit(self) -> None:
        os.replace(self._tmp, self.path)
        self._committed = True

    def cleanup(self) -> None:
        with contextlib.suppress(OSError):
            self._fh.close()
        if not self._committed:
            with contextlib.suppress(OSError):
                self._tmp.unlink()


class _XlsxSink:
    """Streams rows into a constant-memory workbook, starting a new sheet when one is full."""

    def __init__(self, run_dir: Path, name: str, sheet_title: str, widths: Sequence[float]):
        self.path = run_dir / f"{name}.xlsx"
        self._full_text_in = f"{name}.csv"  # where a text cut to Excel's limit is whole
        # A private folder holds the workbook and XlsxWriter's scratch files; removing it
        # cleans up everything on failure in one step.
        self._scratch = Path(tempfile.mkdtemp(dir=run_dir, prefix=f".{self.path.name}."))
        self._tmp = self._scratch / self.path.name
        try:
            # Created up front so the workbook is owner-only from its first byte.
            os.close(os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
            os.chmod(self._tmp, FILE_MODE)
            self._book = self._workbook()
        except BaseException:
            shutil.rmtree(self._scratch, ignore_errors=True)
            raise
        self._bold = self._book.add_format({"bold": True})
        self._widths = widths
        self._names = _sheet_names(sheet_title)
        self._headers: Sequence[str] = ()
        self._preamble: Sequence[Sequence[Cell]] = ()
        self._sheet: Any = None
        self._top = 0  # the current sheet's header row
        self._row = 0  # last row written on the current sheet
        self._closed = False

    def _workbook(self) -> Any:
        return xlsxwriter.Workbook(
            str(self._tmp),
            {
                "constant_memory": True,  # each row goes to disk once the next one starts
                "tmpdir": str(self._scratch),  # so a failed run's scratch files are ours
                # Long messages on a million rows can pass 4 GB of XML; Python's zipfile only
                # adds the ZIP64 records to members that need them.
                "use_zip64": True,
                # Belt and braces: every text goes through write_string anyway.
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "strings_to_numbers": False,
            },
        )

    def begin(self, preamble: Sequence[Sequence[Cell]], headers: Sequence[str]) -> None:
        self._preamble = preamble
        self._headers = headers

    def _new_sheet(self) -> None:
        self._finish_sheet()
        first = self._sheet is None
        sheet = self._book.add_worksheet(next(self._names))
        for col, width in enumerate(self._widths):
            sheet.set_column(col, col, width)
        top = 0
        if first:
            for top, cells in enumerate(self._preamble):
                self._write(sheet, top, cells)
            top = len(self._preamble)
        sheet.freeze_panes(top + 1, 0)
        for col, header in enumerate(self._headers):
            sheet.write_string(top, col, xlsx_text(header, self._full_text_in), self._bold)
        self._sheet = sheet
        self._top = self._row = top

    def _finish_sheet(self) -> None:
        if self._sheet is not None:
            self._sheet.autofilter(self._top, 0, self._row, len(self._headers) - 1)

    def add(self, cells: Sequence[Cell]) -> None:
        if self._sheet is None or self._row >= XLSX_ROWS_PER_SHEET:
            self._new_sheet()
        self._row += 1
        self._write(self._sheet, self._row, cells)

    def _write(self, sheet: Any, row: int, cells: Sequence[Cell]) -> None:
        for col, value in enumerate(cells):
            if isinstance(value, str):
                if value:  # "" stays an empty cell, as None does
                    sheet.write_string(row, col, xlsx_text(value, self._full_text_in))
            elif value is not None:
                sheet.write_number(row, col, value)

    def finish(self) -> None:
        if self._sheet is None:
            self._new_sheet()  # no lines: still a sheet with the header
        self._finish_sheet()
        self._book.close()
        self._closed = True
        fsync_path(self._tmp)

    def commit(self) -> None:
        os.replace(self._tmp, self.path)

    def cleanup(self) -> None:
        if not self._closed:
            # A workbook never closed still holds an open scratch file per sheet in
            # constant_memory mode; close them so nothing leaks.
            for sheet in self._book.worksheets():
                fh = getattr(sheet, "row_data_fh", None)
                if fh is not None:
                    with contextlib.suppress(Exception):
                        fh.close()
        shutil.rmtree(self._scratch, ignore_errors=True)


def write_table(
    run_dir: Path,
    name: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    *,
    xlsx: bool,
    sheet_title: str | None = None,
    widths: Sequence[float] | None = None,
    preamble: Sequence[Sequence[Cell]] = (),
) -> list[Path]:
    """Write ``run_dir/NAME.csv`` and, when ``xlsx`` is true, ``run_dir/NAME.xlsx``.

    In: the folder (created if missing), the file name without suffix, the header row, the data
    rows and the ``preamble`` rows above the header, all raw (see the module docstring); the
    first sheet's name (default ``name``) and the column widths (default from the headers).
    Out: the paths written, CSV first.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    sinks: list[_Sink] = []
    try:
        sinks.append(_CsvSink(run_dir, name))
        if xlsx:
            widths = widths or [column_width(h) for h in headers]
            sinks.append(_XlsxSink(run_dir, name, sheet_title or name, widths))
        for sink in sinks:
            sink.begin(preamble, headers)
        for cells in rows:
            for sink in sinks:
                sink.add(cells)
        for sink in sinks:
            sink.finish()
        for sink in sinks:
            sink.commit()
    finally:
        for sink in sinks:
            sink.cleanup()
    fsync_dir(run_dir)
    return [sink.path for sink in sinks]
