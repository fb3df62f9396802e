"""The ``report`` stage: every file pcxbatch writes into a run folder for people to read.

In: the run folder, the input's own column names, and typed records from :mod:`pcxbatch.model`
(:class:`ReportLine` for ``results``, :class:`PlanRow` for ``preview``, :class:`UndoRow` for
``undo``; usually a generator, possibly a million long), and a summary mapping (the run's facts:
written as ``summary.json`` and shown on the XLSX's Summary sheet). Out: the files, each written
to a temporary name in the run folder and renamed into place only when complete (so a crash
never leaves half a report under the final name), readable by the owner only (``0o600``).

Why typed records and not rows of cells: callers say *what* a line holds; the column order,
the headers and the cell rule are decided here, once. Every table goes through one writer
(:mod:`.table`), which passes every text it writes through one module (:mod:`.cells`); nothing
else in pcxbatch writes CSV or XLSX. Column orders are derived from :data:`RESULT_COLUMNS` and
:data:`PREVIEW_HEADERS` by name, so a column added there appears in every file.

What a reader of the files can rely on:

* ``results.csv``: headers are :data:`RESULT_COLUMNS`, the input's own columns, then
  :data:`RESULT_TRAILING` (``earlier_run``; see :func:`report_headers`), one line per input
  data row. A retry run's results hold every row of the original file: its own rows, and the
  earlier runs' lines for the rest (:mod:`.merge`), whose ``earlier_run`` names the run that
  decided them and whose message starts with ``earlier run:``. ``preview.csv``: a
  preamble (a title line, a count per :class:`Verdict`, a ``from -> to`` line per status
  transition with its count, a blank line), then :data:`PREVIEW_HEADERS` and the input's own
  columns, one line per row. ``undo.csv``: :data:`UNDO_HEADERS`, one line per changed user,
  CSV only.
* ``results.xlsx`` and ``preview.xlsx``, for an auditor: a **Summary** sheet (:mod:`.summary`:
  which system, which file, who, when, the counts and the ``from -> to`` moves, how it ended),
  then a **Rows** sheet with the same lines as the CSV, its columns in a reader's order: ``row``,
  ``user_id``, the outcome (``preview``), ``message``, then the input's own columns, then the
  report's technical columns in their CSV order (and ``earlier_run``). Columns are as wide as
  their text (up to 60, then wrapped), the header frozen, filtered and printed on every page,
  pages landscape and one page wide (:mod:`.table`). A file with more rows than an Excel sheet
  holds gets no XLSX; ``summary.json`` says so (``results_xlsx``), and the CSV holds every row.
* CSV (every file): every text cell, header names and preamble included, that a spreadsheet
  would run as a formula (leading ``=``, ``+``, ``-``, ``@``, tab or CR) gets a leading
  apostrophe (:func:`neutralise`). Otherwise text is kept exactly. UTF-8 with a BOM (so Excel
  picks the encoding), comma-separated, quoted by the ``csv`` module wherever a field needs it
  (commas, quotes, newlines), CRLF line ends. The CSV is the complete record: nothing is ever
  shortened.
* XLSX: every text, header names and summary included, is a string cell (never a formula, URL
  or number), so nothing in it is ever evaluated, and it holds the text exactly, with no
  apostrophe added. The only numbers are ``row``, ``http_status`` and ``attempts`` in results,
  ``row`` in a preview, and the counts on the Summary sheet. Excel's own limits apply, and are
  handled so:

  - a text longer than 32,767 characters (Excel's cell limit, counted in UTF-16 units) is cut
    short and ends with ``[... truncated: ...]``, saying how long it was and that the full text
    is in the CSV beside it;
  - control characters that XML cannot hold (U+0000-U+001F other than tab and newline, and
    U+FFFE/U+FFFF) are stored with OOXML's ``_xHHHH_`` escape, which Excel decodes back to the
    original character (XlsxWriter does this, and likewise escapes a literal ``_xHHHH_`` so it
    reads back unchanged). Readers that do not decode the escape (openpyxl) show ``_x0001_``.

* Both formats: a lone UTF-16 surrogate (which no UTF-8 file can hold) becomes U+FFFD; an
  empty text is an empty cell.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from ..model import PlanRow, ReportLine, UndoRow, Verdict
from . import table
from .cells import Cell, neutralise
from .files import atomic_write_text
from .merge import EarlierRun, Tally, final_lines
from .summary import preview_sheet, results_sheet
from .table import SheetLine, XlsxLayout, write_table

__all__ = [
    "PREVIEW_HEADERS",
    "RESULT_COLUMNS",
    "RESULT_TRAILING",
    "UNDO_HEADERS",
    "EarlierRun",
    "atomic_write_text",
    "neutralise",
    "preview_headers",
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

#: After the input's own columns in the results files: the earlier run that decided the row,
#: for a retry run's rows carried over from the run it retried; empty when this run did.
RESULT_TRAILING: tuple[str, ...] = ("earlier_run",)

#: The Rows sheet's first columns, where a file has them: what a reader looks at first. Then
#: come the input's own columns, then the file's other columns in their CSV order.
_RESULT_LEAD = ("row", "user_id", "outcome", "confirmed", "message")
_PREVIEW_LEAD = ("row", "user_id", "preview", "message")
#: Rows sheet columns that stay in view when scrolling sideways: row and user_id.
_FROZEN = 2


def _header_key(name: str) -> str:
    # What a person would consider "the same header": the text the CSV shows (neutralised, so
    # "=a" and "'=a" look alike there), in any case, ignoring surrounding spaces.
    return neutralise(name).strip().casefold()


def _input_headers(input_columns: Sequence[str], reserved: Iterable[str]) -> list[str]:
    seen = {_header_key(h) for h in reserved}
    headers = []
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


def report_headers(input_columns: Sequence[str]) -> list[str]:
    """The header row of the results files, raw (the table writer applies the cell rule).

    In: the input's own column names, in order. Out: :data:`RESULT_COLUMNS`, one header per
    input column, then :data:`RESULT_TRAILING`. An input column whose name matches (ignoring
    case and surrounding spaces) a report column or an earlier header becomes
    ``"<name> (input)"``, then ``"<name> (input 2)"``, ... until it is unique; so the same
    input always gives the same headers, and every header is distinct.
    """
    inputs = _input_headers(input_columns, (*RESULT_COLUMNS, *RESULT_TRAILING))
    return [*RESULT_COLUMNS, *inputs, *RESULT_TRAILING]


def preview_headers(input_columns: Sequence[str]) -> list[str]:
    """The header row of the preview files, raw: :data:`PREVIEW_HEADERS`, then the input's
    columns named as in :func:`report_headers`, and never as a preview column either."""
    reserved = (*RESULT_COLUMNS, *RESULT_TRAILING, *PREVIEW_HEADERS)
    return [*PREVIEW_HEADERS, *_input_headers(input_columns, reserved)]


def _sheet_order(own: Sequence[str], inputs: int, lead: Sequence[str], trailing: int) -> list[int]:
    """The Rows sheet's column order, as indexes into a CSV line of ``own`` columns, then
    ``inputs`` input columns, then ``trailing`` more: ``lead`` (those ``own`` has), the
    input's, the rest of ``own`` in order, the trailing ones."""
    first = [own.index(name) for name in lead if name in own]
    rest = [i for i, name in enumerate(own) if name not in lead]
    after = len(own) + inputs
    return [*first, *range(len(own), after), *rest, *range(after, after + trailing)]


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
    summary: MutableMapping[str, Any] | None = None,
    earlier: Sequence[EarlierRun] = (),
) -> list[Path]:
    """Write ``run_dir/results.csv`` and, when ``xlsx`` is true, ``run_dir/results.xlsx``.

    In: the run folder (created if missing), the input's own column names, this run's lines
    (one per row it holds, in row order; each ``values`` must have one text per input column,
    else ``ValueError``), whether to write the XLSX, the run's ``summary`` (what
    ``summary.json`` will hold; its ``run_id`` names this run, else the folder does), and the
    ``earlier`` runs this one follows on from, most recent first (see :mod:`.merge`): their
    lines fill in the rows this run does not hold.

    Out: the paths written, CSV first; the XLSX is left out when the lines do not fit on one
    sheet. ``summary`` is completed in place with what only the lines tell, so that
    ``summary.json`` written from it afterwards says what the Summary sheet says:
    ``transitions`` (this run's ``from -> to`` moves), ``whole_file`` (with ``earlier`` runs:
    the final state of every row of the file) and ``results_xlsx`` (whether it was written, and
    why not). The lines are streamed; on any error neither file appears and the error
    propagates.
    """
    facts: MutableMapping[str, Any] = {} if summary is None else summary
    run_id = str(facts.get("run_id") or run_dir.name)
    headers = report_headers(input_columns)
    width = len(input_columns)
    order = _sheet_order(RESULT_COLUMNS, width, _RESULT_LEAD, len(RESULT_TRAILING))
    tally = Tally(run_id)

    def cells() -> Iterator[list[Cell]]:
        for decided_in, line in final_lines(run_id, lines, earlier):
            tally.add(decided_in, line)
            yield [*_result_cells(line, width), "" if decided_in == run_id else decided_in]

    def sheet() -> Sequence[SheetLine]:
        facts.update(tally.facts(earlier))
        return results_sheet(facts, [headers[i] for i in order])

    footer = f"pcxbatch results of run {run_id}"
    layout = XlsxLayout(order, sheet, footer, _FROZEN) if xlsx else None
    paths = write_table(run_dir, "results", headers, cells(), xlsx=layout)
    facts.update(tally.facts(earlier))
    if xlsx:
        facts["results_xlsx"] = _xlsx_written(paths, sum(tally.counts.values()))
    return paths


def _xlsx_written(paths: Sequence[Path], rows: int) -> dict[str, Any]:
    if any(p.suffix == ".xlsx" for p in paths):
        return {"written": True}
    limit = table.XLSX_ROWS_PER_SHEET
    return {
        "written": False,
        "why": f"{rows:,} rows are more than one Excel sheet holds ({limit:,});"
        " results.csv holds every row",
    }


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
    summary: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write ``run_dir/preview.csv`` and, when ``xlsx`` is true, ``run_dir/preview.xlsx``.

    In: the run folder (created if missing), the input's own column names, the rows (one per
    input data row, in the order given; each ``values`` one text per input column, else
    ``ValueError``), the title line (what was previewed, against what, when), the rows per
    verdict (keyed by the :class:`Verdict` value; a missing one counts 0), the ``(from, to,
    rows)`` status transitions of the rows that will change, whether to write the XLSX, and
    what the Summary sheet says of the preview (``run_id``, ``job``, ``base_url``, ``sandbox``,
    ``previewed_with``, ``input``, ``previewed_by``, ``previewed_at``, ``plan``, ``plan_hash``;
    any other key is shown as it is).

    Out: the paths written, CSV first. The CSV: the preamble, then :func:`preview_headers`,
    then a line per row: ``row``, ``user_id``, ``action``, ``current_status`` (empty when not
    read), ``target_status``, ``preview`` (the verdict), ``message``, the input's cells. The
    XLSX: the Summary sheet, then the same lines on the Rows sheet in a reader's order.
    """
    headers = preview_headers(input_columns)
    width = len(input_columns)
    order = _sheet_order(PREVIEW_HEADERS, width, _PREVIEW_LEAD, 0)
    facts = summary or {}

    def sheet() -> Sequence[SheetLine]:
        return preview_sheet(title, facts, counts, transitions, [headers[i] for i in order])

    footer = f"pcxbatch preview {facts.get('run_id') or run_dir.name}"
    return write_table(
        run_dir,
        "preview",
        headers,
        (_preview_cells(row, width) for row in rows),
        xlsx=XlsxLayout(order, sheet, footer, _FROZEN) if xlsx else None,
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
    return write_table(run_dir, "undo", UNDO_HEADERS, map(_undo_cells, rows))


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
