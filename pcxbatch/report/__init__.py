"""The ``report`` stage: every file pcxbatch writes into a run folder for people to read.

In: the run folder, the input's own column names, and typed records from :mod:`pcxbatch.model`
(:class:`ReportLine` for ``results``, :class:`PlanRow` for ``preview``, :class:`UndoRow` for
``undo``; usually a generator, possibly a million long), or a summary mapping. Out: the files,
each written to a temporary name in the run folder and renamed into place only when complete
(so a crash never leaves half a report under the final name), readable by the owner only
(``0o600``).

Why typed records and not rows of cells: callers say *what* a line holds; the column order,
the headers and the cell rule are decided here, once. Every table goes through one writer
(:mod:`.table`), which passes every text it writes through one module (:mod:`.cells`); nothing
else in pcxbatch writes CSV or XLSX.

What a reader of the files can rely on:

* ``results``: headers are :data:`RESULT_COLUMNS` then the input's own columns (see
  :func:`report_headers`), one line per input data row. ``preview``: a preamble (a title line,
  a count per :class:`Verdict`, a ``from -> to`` line per status transition with its count, a
  blank line), then :data:`PREVIEW_HEADERS` and the input's own columns, one line per row.
  ``undo``: :data:`UNDO_HEADERS`, one line per changed user, CSV only.
* CSV (every file): every text cell, header names and preamble included, that a spreadsheet
  would run as a formula (leading ``=``, ``+``, ``-``, ``@``, tab or CR) gets a leading
  apostrophe (:func:`neutralise`). Otherwise text is kept exactly. UTF-8 with a BOM (so Excel
  picks the encoding), comma-separated, quoted by the ``csv`` module wherever a field needs it
  (commas, quotes, newlines), CRLF line ends. The CSV is the complete record: nothing is ever
  shortened.
* XLSX (``results.xlsx``, ``preview.xlsx``): every text, header names and preamble included, is
  a string cell (never a formula, URL or number), so nothing in it is ever evaluated, and it
  holds the text exactly, with no apostrophe added. The only numbers are ``row``,
  ``http_status`` and ``attempts`` in results, and ``row`` and the counts in a preview. Excel's
  own limits apply, and are handled so:

  - a text longer than 32,767 characters (Excel's cell limit, counted in UTF-16 units) is cut
    short and ends with ``[... truncated: ...]``, saying how long it was and that the full text
    is in the CSV beside it;
  - control characters that XML cannot hold (U+0000-U+001F other than tab and newline, and
    U+FFFE/U+FFFF) are stored with OOXML's ``_xHHHH_`` escape, which Excel decodes back to the
    original character (XlsxWriter does this, and likewise escapes a literal ``_xHHHH_`` so it
    reads back unchanged). Readers that do not decode the escape (openpyxl) show ``_x0001_``;
  - more than 1,048,575 lines (Excel's row limit less the header) continue on a second sheet
    ``results (2)`` (then ``results (3)``, ...), each with its own header row.

* Both formats: a lone UTF-16 surrogate (which no UTF-8 file can hold) becomes U+FFFD; an
  empty text is an empty cell.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from ..model import PlanRow, ReportLine, UndoRow, Verdict
from .cells import Cell, neutralise
from .files import atomic_write_text
from .table import column_width, write_table

__all__ = [
    "PREVIEW_HEADERS",
    "RESULT_COLUMNS",
    "UNDO_HEADERS",
    "atomic_write_text",
    "neutralise",
    "report_headers",
    "write_preview",
    "write_results",
    "write_summary",
    "write_undo",
]

#: The report's own columns, first in every results file, in this order.
RESULT_COLUMNS: tuple[str, ...] = (
    "row",
    "user_id",
    "action",
    "target_status",
    "outcome",
    "confirmed",
    "http_status",
    "attempts",
    "message",
    "request_id",
)

#: A preview's own columns, before the input's, in this order.
PREVIEW_HEADERS: tuple[str, ...] = (
    "row",
    "user_id",
    "action",
    "current_status",
    "target_status",
    "preview",
    "message",
)

#: The columns of ``undo.csv``: a file ``pcxbatch run`` takes as its input.
UNDO_HEADERS: tuple[str, ...] = (
    "user_id",
    "status",
    "reason",
    "updated_by",
    "undo_note",
    "changed_in_row",
)

#: Column widths (in Excel's character units) for the report's own columns: fixed, because a
#: streamed sheet cannot be measured before it is written.
_WIDTHS: dict[str, float] = {
    "row": 8,
    "user_id": 26,
    "action": 12,
    "target_status": 20,
    "current_status": 20,
    "outcome": 14,
    "confirmed": 11,
    "preview": 14,
    "http_status": 11,
    "attempts": 9,
    "message": 60,
    "request_id": 38,
}


def _header_key(name: str) -> str:
    # What a person would consider "the same header": the text the CSV shows (neutralised, so
    # "=a" and "'=a" look alike there), in any case, ignoring surrounding spaces.
    return neutralise(name).strip().casefold()


def report_headers(input_columns: Sequence[str]) -> list[str]:
    """The header row of the results files, raw (the table writer applies the cell rule).

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


def _widths(headers: Sequence[str], own: int) -> list[float]:
    # The first ``own`` columns are the report's; the rest are the input's.
    return [_WIDTHS.get(h, 12.0) if i < own else column_width(h) for i, h in enumerate(headers)]


def _check_values(row: int, values: Sequence[str], width: int, what: str) -> None:
    # A line whose input cells do not match the header would shift every later column.
    if len(values) != width:
        raise ValueError(
            f"{what} line for row {row} has {len(values)} input values,"
            f" but the input has {width} columns"
        )


def _result_cells(line: ReportLine, width: int) -> list[Cell]:
    _check_values(line.row, line.values, width, "report")
    return [
        line.row,
        line.user_id,
        line.action,
        line.target_status,
        line.outcome.value,
        "yes" if line.confirmed else "no",
        line.http_status,
        line.attempts,
        line.message,
        line.request_id,
        *line.values,
    ]


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
    Out: the paths written, CSV first. The lines are streamed; on any error neither file
    appears and the error propagates.
    """
    headers = report_headers(input_columns)
    width = len(input_columns)
    return write_table(
        run_dir,
        "results",
        headers,
        (_result_cells(line, width) for line in lines),
        xlsx=xlsx,
        sheet_title=sheet_title,
        widths=_widths(headers, len(RESULT_COLUMNS)),
    )


def _preview_preamble(
    title: str, counts: Mapping[str, int], transitions: Sequence[tuple[str, str, int]]
) -> list[list[Cell]]:
    lines: list[list[Cell]] = [[title]]
    lines += [[kind.value, counts.get(kind.value, 0)] for kind in Verdict]
    lines += [[f"{before} -> {after}", n] for before, after, n in transitions]
    lines.append([])  # a blank line, then the header: what a reader of the CSV splits on
    return lines


def _preview_cells(row: PlanRow, width: int) -> list[Cell]:
    _check_values(row.row, row.values, width, "preview")
    return [
        row.row,
        row.user_id,
        row.action,
        row.seen_status or "",
        row.target_status,
        row.verdict.value,
        row.message,
        *row.values,
    ]


def write_preview(
    run_dir: Path,
    input_columns: Sequence[str],
    rows: Iterable[PlanRow],
    *,
    title: str,
    counts: Mapping[str, int],
    transitions: Sequence[tuple[str, str, int]],
    xlsx: bool,
) -> list[Path]:
    """Write ``run_dir/preview.csv`` and, when ``xlsx`` is true, ``run_dir/preview.xlsx``.

    In: the run folder (created if missing), the input's own column names, the rows (one per
    input data row, in the order given; each ``values`` one text per input column, else
    ``ValueError``), the title line (what was previewed, against what, when), the rows per
    verdict (keyed by the :class:`Verdict` value; a missing one counts 0), the ``(from, to,
    rows)`` status transitions of the rows that will change, and whether to write the XLSX.
    Out: the paths written, CSV first. The preamble, then :data:`PREVIEW_HEADERS` and the
    input's columns (named as in :func:`report_headers`), then a line per row: ``row``,
    ``user_id``, ``action``, ``current_status`` (empty when not read), ``target_status``,
    ``preview`` (the verdict), ``message``, the input's cells.
    """
    headers = [*PREVIEW_HEADERS, *report_headers(input_columns)[len(RESULT_COLUMNS) :]]
    width = len(input_columns)
    return write_table(
        run_dir,
        "preview",
        headers,
        (_preview_cells(row, width) for row in rows),
        xlsx=xlsx,
        widths=_widths(headers, len(PREVIEW_HEADERS)),
        preamble=_preview_preamble(title, counts, transitions),
    )


def _undo_cells(row: UndoRow) -> list[Cell]:
    return [row.user_id, row.status, row.reason, row.updated_by, row.note, row.changed_in_row]


def write_undo(run_dir: Path, rows: Iterable[UndoRow]) -> list[Path]:
    """Write ``run_dir/undo.csv``: :data:`UNDO_HEADERS`, then one line per row given.

    In: the run folder (created if missing) and the rows, in the order given. Out: the path
    written, in a list like the other writers'. CSV only: it is an input for ``pcxbatch run``,
    not a report to read.
    """
    return write_table(run_dir, "undo", UNDO_HEADERS, map(_undo_cells, rows), xlsx=False)


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
