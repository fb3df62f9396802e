"""The table writer: the only code in pcxbatch that writes a CSV or an XLSX file.

In: a folder, a file name without suffix, a header row, data rows, optional preamble rows above
the CSV's header, and, for an XLSX beside the CSV, its :class:`XlsxLayout` (the order the Rows
sheet shows the columns in, and the lines of its Summary sheet). Every value is raw: ``str``
(exactly as the input file or the API gave it), ``int`` or ``None`` (an empty cell). Out:
``NAME.csv`` and, when asked and the rows fit on one sheet, ``NAME.xlsx``, each complete under
its final name or not there at all.

Why here: every text this module writes, headers and summary included, passes through
:mod:`pcxbatch.report.cells` on its way out (CSV: :func:`~pcxbatch.report.cells.csv_cell`;
XLSX: :func:`~pcxbatch.report.cells.xlsx_text` into a string cell). The rule is applied where
the bytes are written, not by callers, so no report can forget it. XlsxWriter and ``csv``
writing live in this module only.

The files:

* CSV: UTF-8 with a BOM (so Excel picks the encoding), comma-separated, quoted by the ``csv``
  module wherever a field needs it, CRLF line ends, the preamble (if any) above the header, the
  columns in the order given. Nothing is ever shortened.
* XLSX, made to be read and printed by someone who was not there: a first sheet **Summary**
  (the layout's :class:`SheetLine` s: a title, headings, then label / value / note lines) and a
  sheet **Rows** (the header, then one line per row, the columns in the layout's order). Texts
  are string cells, wrapped and top-aligned; whole numbers are numbers. Each column is as wide
  as its widest text (a line of it), at most :data:`MAX_WIDTH`, measured while the rows stream
  by and set just before the workbook is closed (XlsxWriter writes the column widths at close,
  also in constant-memory mode). The header row is bold, frozen with the layout's leading
  columns, filtered, and printed at the top of every page; pages are landscape, one page wide,
  with grid lines and a footer. Written in XlsxWriter's constant-memory mode, so memory stays
  flat. More data lines than one sheet holds (:data:`XLSX_ROWS_PER_SHEET`) and the XLSX is
  dropped: the CSV alone is written, and the caller learns it from the paths returned.

Rows are consumed once, both files written side by side as they come. If the rows (or anything
else) raise, neither file appears under its final name, an earlier complete file there is left
as it was, no temporary file is left behind, and the exception propagates.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import xlsxwriter

from .cells import Cell, csv_cell, xlsx_text
from .files import FILE_MODE, fsync_dir, fsync_path, owner_only_temp

__all__ = ["MAX_WIDTH", "XLSX_ROWS_PER_SHEET", "SheetLine", "XlsxLayout", "write_table"]

#: Data lines one sheet holds: Excel's 1,048,576 rows less the header row. A module constant so
#: tests can lower it instead of writing a million lines.
XLSX_ROWS_PER_SHEET = 1_048_575

#: The widest a column is made, in Excel's character units; longer text wraps.
MAX_WIDTH = 60

#: Summary sheet: the widest its label column is made, and its value and note columns.
_SUMMARY_WIDTHS = (40, 70, 70)

#: How wide a character of Calibri 11 is next to a digit (Excel's width unit), where it is not
#: about 0.95: for guessing how many lines a wrapped text takes.
_INK = {
    **dict.fromkeys(" ilj.,:;'!|", 0.45),
    **dict.fromkeys("ftrsz-/()[]{}I", 0.7),
    **dict.fromkeys("cgkvxy", 0.9),
    **dict.fromkeys("mw", 1.5),
    **dict.fromkeys("ABCDEFGHJKLNOPQRSTUVXYZ", 1.15),
    **dict.fromkeys("MW", 1.8),
}

#: Points per line of text (Excel's default row height for Calibri 11), and Excel's most.
_LINE_HEIGHT = 15.0
_MAX_HEIGHT = 409.0


@dataclass(frozen=True, slots=True)
class SheetLine:
    """One line of a Summary sheet.

    ``kind``: ``"title"`` (the first line, large), ``"heading"`` (a section, after a blank
    line), ``"fact"`` (``label`` | ``value`` | ``note``), or ``"text"`` (a sentence).
    """

    label: str
    value: Cell = None
    note: str = ""
    kind: Literal["title", "heading", "fact", "text"] = "fact"


@dataclass(frozen=True)
class XlsxLayout:
    """What the XLSX beside a CSV holds.

    ``order``: the CSV's column indexes, in the order the Rows sheet shows them (each once).
    ``summary``: called once, after the last row was written, for the Summary sheet's lines.
    ``footer``: printed at the foot of every page (e.g. the run id). ``frozen_columns``: how
    many of the Rows sheet's first columns stay in view when scrolling sideways.
    """

    order: Sequence[int]
    summary: Callable[[], Sequence[SheetLine]]
    footer: str = ""
    frozen_columns: int = 0


def text_width(text: str) -> int:
    """How many character widths ``text`` takes: its longest line, East Asian wide as two."""
    if "\n" in text:
        return max(text_width(part) for part in text.split("\n"))
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _measure(text: str, width: float = MAX_WIDTH) -> tuple[int, int]:
    """``(width, lines)``: the text's :func:`text_width`, and about how many lines it takes in a
    column ``width`` wide that wraps it (rather more than fewer: a cut text is worse than a gap).
    """
    if len(text) <= width - 2 and "\n" not in text:  # the common case, cheaply: it fits
        return text_width(text), 1
    room = width - 2  # the cell's margins
    lines = 0
    widest = 0
    for part in text.split("\n"):
        widest = max(widest, text_width(part))
        ink = sum(_INK.get(ch, 2.0 if ord(ch) > 0x2E80 else 0.95) for ch in part)
        # Word wrapping leaves the end of each line empty: count a line as 80 % full.
        lines += 1 if ink <= room else math.ceil(ink / (room * 0.8))
    return widest, lines


def _height(lines: int) -> float:
    return min(_LINE_HEIGHT * lines, _MAX_HEIGHT)


def _fitted(widest: int) -> float:
    # Two more for the cell's margins; never narrower than a short number, never too wide.
    return float(min(max(widest + 2, 6), MAX_WIDTH))


def _summary_widths(lines: Sequence[SheetLine]) -> list[float]:
    """The Summary sheet's label, value and note columns: as wide as their widest text, up to
    :data:`_SUMMARY_WIDTHS`. Titles, headings and sentences run on and are not measured."""
    widest = [0, 0, 0]
    for line in lines:
        if line.kind != "fact":
            continue
        for col, value in enumerate((line.label, line.value, line.note)):
            if value is not None and value != "":
                widest[col] = max(widest[col], text_width(str(value)) + (col == 0))
    return [float(min(max(w + 2, 12), cap)) for w, cap in zip(widest, _SUMMARY_WIDTHS, strict=True)]


def _footer_text(text: str) -> str:
    # '&' starts a code in an Excel header/footer; the whole must stay under 255 characters.
    return text[:120].replace("&", "&&")


class _Sink(Protocol):
    """One output file of a table, written to a temporary name until :meth:`commit`."""

    path: Path
    written: bool  # committed under its final name

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
        self.written = False

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
        self.written = True

    def cleanup(self) -> None:
        with contextlib.suppress(OSError):
            self._fh.close()
        if not self.written:
            with contextlib.suppress(OSError):
                self._tmp.unlink()


def _formats(book: Any) -> dict[str, Any]:
    top = {"valign": "top"}
    return {
        "header": book.add_format(
            {**top, "bold": True, "text_wrap": True, "bg_color": "#D9D9D9", "bottom": 1}
        ),
        "text": book.add_format({**top, "text_wrap": True}),
        "number": book.add_format(top),
        "count": book.add_format({**top, "align": "left"}),
        "title": book.add_format({"bold": True, "font_size": 14}),
        "heading": book.add_format({"bold": True, "bg_color": "#D9D9D9", "bottom": 1}),
        "label": book.add_format({**top, "bold": True, "text_wrap": True}),
        "note": book.add_format(
            {**top, "text_wrap": True, "italic": True, "font_color": "#404040"}
        ),
    }


def _print_setup(sheet: Any, footer: str, *, grid: bool) -> None:
    sheet.set_landscape()
    sheet.fit_to_pages(1, 0)  # one page wide, as many pages down as it takes
    sheet.set_margins(left=0.4, right=0.4, top=0.5, bottom=0.6)
    sheet.hide_gridlines(0 if grid else 2)  # a table's grid on screen and paper; none for prose
    sheet.set_footer(f"&L{_footer_text(footer)}&RPage &P of &N")


class _XlsxSink:
    """Streams rows into the Rows sheet of a constant-memory workbook; Summary comes last."""

    def __init__(self, run_dir: Path, name: str, layout: XlsxLayout):
        self.path = run_dir / f"{name}.xlsx"
        self._full_text_in = f"{name}.csv"  # where a text cut to Excel's limit is whole
        self._layout = layout
        # A private folder holds the workbook and XlsxWriter's scratch files; removing it
        # cleans up everything on failure in one step.
        self._scratch = Path(tempfile.mkdtemp(dir=run_dir, prefix=f".{self.path.name}."))
        self._tmp = self._scratch / self.path.name
        try:
            # Created up front so the workbook is owner-only from its first byte.
            os.close(os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
            os.chmod(self._tmp, FILE_MODE)
            self._book = self._workbook()
            self._fmt = _formats(self._book)
            # Summary first, so a reader opens the workbook on it; it is filled in at the end.
            self._summary = self._book.add_worksheet("Summary")
            self._rows = self._book.add_worksheet("Rows")
        except BaseException:
            shutil.rmtree(self._scratch, ignore_errors=True)
            raise
        self._widest: list[int] = []
        self._row = 0  # last line written on the Rows sheet
        self._closed = False
        self.written = False
        self.dropped = False  # more lines than a sheet holds: no XLSX

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
        # The preamble is the CSV's; the workbook says the same on its Summary sheet.
        sheet = self._rows
        tallest = 1
        for col, index in enumerate(self._layout.order):
            text = xlsx_text(headers[index], self._full_text_in)
            sheet.write_string(0, col, text, self._fmt["header"])
            width, lines = _measure(text)
            self._widest.append(width + 3)  # bold, and the filter's button
            tallest = max(tallest, lines)
        if tallest > 1:
            sheet.set_row(0, _height(tallest))

    def add(self, cells: Sequence[Cell]) -> None:
        if self.dropped:
            return
        if self._row >= XLSX_ROWS_PER_SHEET:
            self._drop()
            return
        self._row += 1
        tallest = 1
        for col, index in enumerate(self._layout.order):
            tallest = max(tallest, self._cell(self._row, col, cells[index]))
        if tallest > 1:
            # Set, not left to the spreadsheet: LibreOffice does not grow a row for wrapped text
            # on opening a file. Allowed until the next row starts, also in constant memory.
            self._rows.set_row(self._row, _height(tallest))

    def _cell(self, row: int, col: int, value: Cell) -> int:
        """Write one cell of the Rows sheet; how many lines of text it takes."""
        if isinstance(value, str):
            if not value:  # "" stays an empty cell, as None does
                return 1
            text = xlsx_text(value, self._full_text_in)
            self._rows.write_string(row, col, text, self._fmt["text"])
            width, lines = _measure(text)
            self._widest[col] = max(self._widest[col], width)
            return lines
        if value is not None:
            self._rows.write_number(row, col, value, self._fmt["number"])
            self._widest[col] = max(self._widest[col], len(str(value)))
        return 1

    def _finish_rows(self) -> None:
        sheet, layout = self._rows, self._layout
        for col, widest in enumerate(self._widest):
            sheet.set_column(col, col, _fitted(widest))
        sheet.freeze_panes(1, layout.frozen_columns)
        sheet.autofilter(0, 0, self._row, max(len(self._widest) - 1, 0))
        sheet.repeat_rows(0)
        _print_setup(sheet, layout.footer, grid=True)

    def _write_summary(self, lines: Sequence[SheetLine]) -> None:
        sheet = self._summary
        widths = _summary_widths(lines)
        for col, width in enumerate(widths):
            sheet.set_column(col, col, width)
        row = -1
        for line in lines:
            row += 2 if line.kind == "heading" and row >= 0 else 1  # a blank line before
            self._summary_line(row, line, widths)
        _print_setup(sheet, self._layout.footer, grid=False)

    def _summary_line(self, row: int, line: SheetLine, widths: Sequence[float]) -> None:
        sheet, fmt = self._summary, self._fmt
        label = xlsx_text(line.label, "summary.json")
        if line.kind == "title":
            sheet.write_string(row, 0, label, fmt["title"])
            sheet.set_row(row, 21)
        elif line.kind == "heading":
            sheet.write_string(row, 0, label, fmt["heading"])
            for col in (1, 2):
                sheet.write_blank(row, col, None, fmt["heading"])
        elif line.kind == "text":
            sheet.write_string(row, 0, label)  # a sentence: it runs on over the empty cells
        else:
            tallest = 1
            cells = [(label, "label"), (line.value, "text"), (line.note, "note")]
            for col, (value, style) in enumerate(cells):
                if isinstance(value, int):
                    sheet.write_number(row, col, value, fmt["count"])
                elif value:
                    text = xlsx_text(value, "summary.json")
                    sheet.write_string(row, col, text, fmt[style])
                    tallest = max(tallest, _measure(text, widths[col])[1])
            if tallest > 1:
                sheet.set_row(row, _height(tallest))

    def finish(self) -> None:
        if self.dropped:
            return
        self._finish_rows()
        self._write_summary(self._layout.summary())
        self._book.close()
        self._closed = True
        fsync_path(self._tmp)

    def commit(self) -> None:
        if not self.dropped:
            os.replace(self._tmp, self.path)
            self.written = True

    def _drop(self) -> None:
        # Free the disk the unfinished workbook holds now, not at the end of a long run.
        self.dropped = True
        self.cleanup()

    def cleanup(self) -> None:
        if not self._closed:
            # A workbook never closed still holds an open scratch file per sheet in
            # constant_memory mode; close them so nothing leaks.
            for sheet in self._book.worksheets():
                fh = getattr(sheet, "row_data_fh", None)
                if fh is not None:
                    with contextlib.suppress(Exception):
                        fh.close()
            self._closed = True
        shutil.rmtree(self._scratch, ignore_errors=True)


def write_table(
    run_dir: Path,
    name: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    *,
    xlsx: XlsxLayout | None = None,
    preamble: Sequence[Sequence[Cell]] = (),
) -> list[Path]:
    """Write ``run_dir/NAME.csv`` and, when ``xlsx`` gives a layout, ``run_dir/NAME.xlsx``.

    In: the folder (created if missing), the file name without suffix, the header row, the data
    rows and the CSV's ``preamble`` rows above the header, all raw (see the module docstring);
    the XLSX's layout, or ``None`` for a CSV alone. Out: the paths written, CSV first; the XLSX
    is missing from them when the rows did not fit on one sheet.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    sinks: list[_Sink] = []
    try:
        sinks.append(_CsvSink(run_dir, name))
        if xlsx is not None:
            sinks.append(_XlsxSink(run_dir, name, xlsx))
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
    return [sink.path for sink in sinks if sink.written]
