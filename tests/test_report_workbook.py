"""The workbooks as an auditor opens and prints them: results.xlsx and preview.xlsx.

A first Summary sheet answers "which system, which file, who, when, what came of it"; a Rows
sheet holds one line per row, its columns in a reader's order, wide enough for full IDs, the
header frozen, filtered and printed on every landscape page. A retry run's report holds every
row of the original file. The files are opened with openpyxl, as a program would; the README
says how they look when rendered (LibreOffice).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from pcxbatch import runfolder
from pcxbatch.journal import JOURNAL_NAME, Journal
from pcxbatch.model import Action, Item, Outcome, PlanRow, ReportLine, Verdict
from pcxbatch.report import (
    PREVIEW_HEADERS,
    RESULT_COLUMNS,
    write_preview,
    write_results,
    write_summary,
)

UUID = "8c0d5e1a-3b7f-4c2e-9a61-0f4d2b8e7c95"  # 36 characters, as PCX's user IDs are
REQUEST_ID = "e7021af8-55bd-4fcd-be30-bd9966be4892"
INPUT_COLUMNS = ("User ID", "Case ref")
RUN_ID = "20261201T090000Z-sanctions"
LONG_MESSAGE = (
    "row 20, column 'User ID': '1.23457E+14' is a number in scientific notation: a spreadsheet"
    " turned the ID into a number and its digits are lost; format the column as text in the"
    " source file and export it again"
)


def line(row: int, **fields: Any) -> ReportLine:
    values: dict[str, Any] = {
        "row": row,
        "user_id": UUID,
        "action": "deactivate",
        "target_status": "inactive",
        "outcome": Outcome.APPLIED,
        "http_status": 200,
        "attempts": 1,
        "message": "deactivated",
        "request_id": REQUEST_ID,
        "values": (UUID, f"CASE-{row}"),
        "seen_status": "active",
    }
    values.update(fields)
    return ReportLine(**values)


def run_summary(**changes: Any) -> dict[str, Any]:
    """A summary as the runner builds it for an apply (``pcxbatch.facts.run_summary``)."""
    summary: dict[str, Any] = {
        "job": "sanctions",
        "job_file": "jobs/sanctions.yaml",
        "run_id": RUN_ID,
        "kind": "apply",
        "previous_run": None,
        "input": {"file": "hits.xlsx", "sha256": "ab" * 32, "sheet": "Hits"},
        "target": "https://prod-api.pcxpay.com/v1",
        "base_url": "https://prod-api.pcxpay.com/v1",
        "sandbox": False,
        "credential": "API key pcx_live1234_…",
        "dry_run": False,
        "run_by": "bob",
        "started": "2026-12-01T09:00:00+00:00",
        "finished": "2026-12-01T09:05:00+00:00",
        "counts": {o.value: 0 for o in Outcome} | {"applied": 2, "invalid": 1},
        "rows": 3,
        "retries": 4,
        "throttled": 1,
        "stopped": None,
        "exit_code": 1,
        "hidden_rows_skipped": [],
        "plan": "/srv/plans/hits-plan.json",
        "plan_hash": "cd" * 32,
        "previewed_by": "ana",
        "previewed_at": "2026-12-01T08:30:00+00:00",
        "applied_by": "bob",
        "pcxbatch_version": "0.1.0",
    }
    summary.update(changes)
    return summary


def three_lines() -> list[ReportLine]:
    return [
        line(2),
        line(3, user_id="00000000-0000-4000-8000-000000000001", seen_status="pending"),
        line(4, outcome=Outcome.INVALID, http_status=None, attempts=0, request_id="",
             message=LONG_MESSAGE, seen_status=""),
    ]  # fmt: skip


def facts(ws: Any) -> dict[str, tuple[Any, Any]]:
    """The Summary sheet's ``label -> (value, note)`` lines (a label seen twice: the last)."""
    found = {}
    for label, value, note in ws.iter_rows(min_col=1, max_col=3, values_only=True):
        if label is not None and (value is not None or note is not None):
            found[label] = (value, note)
    return found


def texts(ws: Any) -> list[str]:
    return [v for row in ws.iter_rows(values_only=True) for v in row if isinstance(v, str)]


def header(ws: Any) -> list[Any]:
    return [cell.value for cell in ws[1]]


def widths(ws: Any) -> dict[str, float]:
    names = header(ws)
    return {names[i]: ws.column_dimensions[chr(ord("A") + i)].width for i in range(len(names))}


def assert_prints_as_a_table(ws: Any, last_cell: str) -> None:
    """Landscape, one page wide, the header row on every page, frozen and filtered."""
    assert ws.page_setup.orientation == "landscape"
    assert ws.sheet_properties.pageSetUpPr.fitToPage
    assert ws.page_setup.fitToWidth in (None, 1)  # None: openpyxl's reading of the default 1
    assert ws.page_setup.fitToHeight == 0  # as many pages down as it takes
    assert ws.print_title_rows == "$1:$1"
    assert ws.freeze_panes == "C2"  # the header, and row and user_id when scrolling sideways
    assert ws.auto_filter.ref == f"A1:{last_cell}"
    assert all(cell.font.b for cell in ws[1])


# --- results.xlsx: the Summary sheet -----------------------------------------------------------


def test_the_summary_sheet_says_which_system_which_file_who_when_and_what_came_of_it(
    tmp_path: Path,
) -> None:
    summary = run_summary()
    write_results(tmp_path, INPUT_COLUMNS, three_lines(), xlsx=True, summary=summary)
    book = openpyxl.load_workbook(tmp_path / "results.xlsx")
    assert book.sheetnames == ["Summary", "Rows"]
    ws = book["Summary"]
    got = facts(ws)

    assert ws["A1"].value == f"pcxbatch results of run {RUN_ID}"
    assert got["Run"][0] == RUN_ID
    assert got["What it was"][0] == "the apply of a reviewed plan"
    assert got["Job"] == ("sanctions", "job file jobs/sanctions.yaml")
    assert got["Sent to (base URL)"][0] == "https://prod-api.pcxpay.com/v1"
    assert got["Built-in sandbox"][0] == "no"
    assert got["Credential"][0] == "API key pcx_live1234_…"
    assert got["Input file"][0] == "hits.xlsx"
    assert got["Input sheet"][0] == "Hits"
    assert got["Input SHA-256"][0] == "ab" * 32
    assert got["Plan hash"][0] == "cd" * 32
    # Who: the CLI cannot check a name, and the sheet says so.
    assert got["Previewed by (name given)"][0] == "ana"
    assert got["Applied by (name given)"][0] == "bob"
    assert "cannot check" in got["Applied by (name given)"][1]
    assert "Run by (name given)" not in got  # the applier ran it
    assert got["Previewed at"][0] == "2026-12-01T08:30:00+00:00"
    assert got["Started"][0] == "2026-12-01T09:00:00+00:00"
    assert got["Finished"][0] == "2026-12-01T09:05:00+00:00"
    assert got["Exit code"] == (1, "finished; only the file's own problems (invalid, duplicate,"
                                   " not_found rows)")  # fmt: skip
    assert got["Why it stopped"][0] == "it did not stop early"
    assert got["Retries"][0] == 4 and got["Throttled answers"][0] == 1
    # Counts per outcome (every outcome, as numbers), and per transition, from the lines.
    assert got["applied"][0] == 2 and got["invalid"][0] == 1 and got["failed"][0] == 0
    assert got["active \u2192 inactive"][0] == 1
    assert got["pending \u2192 inactive"][0] == 1
    assert ws.page_setup.orientation == "landscape"
    assert ws.column_dimensions["B"].width >= 66  # a SHA-256 in full


def test_summary_json_says_what_the_summary_sheet_says(tmp_path: Path) -> None:
    summary = run_summary()
    write_results(tmp_path, INPUT_COLUMNS, three_lines(), xlsx=True, summary=summary)
    write_summary(tmp_path, summary)
    written = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))

    assert written["transitions"] == [
        {"from": "active", "to": "inactive", "rows": 1},
        {"from": "pending", "to": "inactive", "rows": 1},
    ]
    assert written["results_xlsx"] == {"written": True}
    got = facts(openpyxl.load_workbook(tmp_path / "results.xlsx")["Summary"])
    for move in written["transitions"]:
        assert got[f"{move['from']} \u2192 {move['to']}"][0] == move["rows"]
    for outcome, n in written["counts"].items():
        assert got[outcome][0] == n


def test_a_plain_run_says_who_ran_it_and_that_the_status_before_was_not_read(
    tmp_path: Path,
) -> None:
    summary = run_summary(kind="run", applied_by=None, previewed_by=None, plan=None, plan_hash=None)
    lines = [line(2, seen_status="")]
    write_results(tmp_path, INPUT_COLUMNS, lines, xlsx=True, summary=summary)
    got = facts(openpyxl.load_workbook(tmp_path / "results.xlsx")["Summary"])
    assert got["What it was"][0] == "a run of the job"
    assert got["Run by (name given)"][0] == "bob"
    assert "Plan hash" not in got and "Previewed by (name given)" not in got
    value, note = got["(not read) \u2192 inactive"]
    assert value == 1 and "not read" in note
    assert summary["transitions"] == [{"from": None, "to": "inactive", "rows": 1}]


def test_the_sandbox_a_dry_run_and_a_stop_are_said_plainly(tmp_path: Path) -> None:
    summary = run_summary(
        sandbox=True,
        base_url="http://127.0.0.1:4000/v1",
        dry_run=True,
        stopped="interrupted (Ctrl-C)",
        exit_code=3,
        hidden_rows_skipped=list(range(5, 50)),
        unfinished_runs=["/srv/reports/20261130T020000Z-sanctions"],
        label_printer="inkjet",  # a fact the sheet does not know still shows
    )
    write_results(tmp_path, INPUT_COLUMNS, [line(2, outcome=Outcome.PLANNED)], xlsx=True,
                  summary=summary)  # fmt: skip
    ws = openpyxl.load_workbook(tmp_path / "results.xlsx")["Summary"]
    got = facts(ws)
    assert got["Built-in sandbox"][0] == "yes" and "no real user" in got["Built-in sandbox"][1]
    assert got["What it was"][0] == "a dry run: nothing was sent"
    assert got["Why it stopped"] == ("interrupted (Ctrl-C)", "the run can be resumed")
    assert got["Exit code"][0] == 3
    assert got["Hidden rows skipped"][0].startswith("45: rows 5, 6, 7")
    assert "all in summary.json" in got["Hidden rows skipped"][0]
    assert "Changes this dry run plans, from \u2192 to" in texts(ws)
    assert got["Would be sent to (base URL)"][0] == "http://127.0.0.1:4000/v1"
    assert got["Runs left unfinished"][0] == 1
    assert "20261130T020000Z-sanctions" in got["Runs left unfinished"][1]
    assert got["label_printer"][0] == "inkjet"


# --- results.xlsx: the Rows sheet --------------------------------------------------------------


def test_the_rows_sheet_reads_in_a_readers_order_with_full_ids_and_prints_landscape(
    tmp_path: Path,
) -> None:
    write_results(tmp_path, INPUT_COLUMNS, three_lines(), xlsx=True, summary=run_summary())
    ws = openpyxl.load_workbook(tmp_path / "results.xlsx")["Rows"]

    lead = [c for c in ("row", "user_id", "outcome", "confirmed", "message") if c in RESULT_COLUMNS]
    technical = [c for c in RESULT_COLUMNS if c not in lead]
    assert header(ws) == [*lead, *INPUT_COLUMNS, *technical, "earlier_run"]
    assert technical[:5] == ["action", "target_status", "http_status", "attempts", "request_id"]
    first = dict(zip(header(ws), [c.value for c in ws[2]], strict=True))
    assert first["row"] == 2 and first["user_id"] == UUID and first["outcome"] == "applied"
    assert first["User ID"] == UUID and first["request_id"] == REQUEST_ID

    width = widths(ws)
    for name in ("user_id", "User ID", "request_id"):
        assert width[name] >= len(UUID) + 2, name  # an ID is never cut off
    assert 60 <= width["message"] < 61  # the long message wraps instead of widening the sheet
    assert width["row"] < 12 and width["Case ref"] < 14  # narrow columns stay narrow
    message = ws.cell(row=4, column=header(ws).index("message") + 1)
    assert message.value == LONG_MESSAGE and message.alignment.wrap_text
    assert ws.row_dimensions[4].height >= 45  # its row grows to show every line
    assert_prints_as_a_table(ws, "M4")  # 13 columns: confirmed among them
    assert RUN_ID in ws.oddFooter.left.text and "&P of &N" in ws.oddFooter.right.text


def test_results_csv_keeps_its_order_beside_the_reordered_sheet(tmp_path: Path) -> None:
    write_results(tmp_path, INPUT_COLUMNS, three_lines(), xlsx=True)
    first = (tmp_path / "results.csv").read_text(encoding="utf-8-sig").splitlines()[0]
    assert first.split(",") == [*RESULT_COLUMNS, *INPUT_COLUMNS, "earlier_run"]


# --- one results file per outcome of a file ----------------------------------------------------


def test_a_retry_report_holds_every_row_of_the_file_and_says_which_run_decided_each(
    tmp_path: Path,
) -> None:
    failed = {"outcome": Outcome.FAILED, "http_status": 503, "message": "HTTP 503"}
    first = [line(2), line(3, **failed), line(4, outcome=Outcome.INVALID, http_status=None),
             line(5, **failed), line(6)]  # fmt: skip
    retry = [line(3, message="deactivated on retry"), line(5, **failed)]
    this = [line(5, message="deactivated at last")]
    summary = run_summary(run_id="run-3", previous_run=str(tmp_path / "run-2"), rows=1)
    paths = write_results(
        tmp_path, INPUT_COLUMNS, this, xlsx=True, summary=summary,
        earlier=[("run-2", retry), ("run-1", first)],
    )  # fmt: skip
    assert [p.name for p in paths] == ["results.csv", "results.xlsx"]

    with (tmp_path / "results.csv").open(encoding="utf-8-sig") as f:
        rows = [r.split(",") for r in f.read().splitlines()[1:]]
    got = [(r[0], r[4], r[8], r[-1]) for r in rows]  # row, outcome, message, earlier_run
    assert got == [
        ("2", "applied", "earlier run: deactivated", "run-1"),
        ("3", "applied", "earlier run: deactivated on retry", "run-2"),
        ("4", "invalid", "earlier run: deactivated", "run-1"),
        ("5", "applied", "deactivated at last", ""),
        ("6", "applied", "earlier run: deactivated", "run-1"),
    ]
    whole = summary["whole_file"]
    assert whole["rows"] == 5
    assert whole["counts"]["applied"] == 4 and whole["counts"]["invalid"] == 1
    assert whole["counts"]["failed"] == 0  # the final state, not the first run's
    assert whole["rows_by_run"] == {"run-3": 1, "run-2": 1, "run-1": 3}
    assert whole["unreadable_runs"] == []
    assert summary["transitions"] == [{"from": "active", "to": "inactive", "rows": 1}]

    book = openpyxl.load_workbook(tmp_path / "results.xlsx")
    ws = book["Summary"]
    assert facts(ws)["What it was"][0] == "a retry of the rows run run-2 did not finish"
    assert facts(ws)["Rows of the file"][0] == 5
    decided = [(v, n) for label, v, n in ws.iter_rows(max_col=3, values_only=True)
               if str(label).startswith("Decided by")]  # fmt: skip
    assert decided == [(1, "run-3"), (1, "run-2 (its earlier_run on Rows)"),
                       (3, "run-1 (its earlier_run on Rows)")]  # fmt: skip
    rows_sheet = book["Rows"]
    assert [r[0] for r in rows_sheet.iter_rows(min_row=2, values_only=True)] == [2, 3, 4, 5, 6]


def test_an_earlier_run_that_cannot_be_read_is_named_not_hidden(tmp_path: Path) -> None:
    summary = run_summary(previous_run="/gone/run-1")
    write_results(tmp_path, INPUT_COLUMNS, [line(3)], xlsx=True, summary=summary,
                  earlier=[("run-1", None)])  # fmt: skip
    assert summary["whole_file"]["unreadable_runs"] == ["run-1"]
    assert summary["whole_file"]["rows"] == 1
    got = facts(openpyxl.load_workbook(tmp_path / "results.xlsx")["Summary"])
    assert got["Could not be read"][0] == "run-1"
    assert "missing" in got["Could not be read"][1]


def test_without_earlier_runs_the_report_is_this_runs_alone(tmp_path: Path) -> None:
    summary = run_summary()
    write_results(tmp_path, INPUT_COLUMNS, three_lines(), xlsx=False, summary=summary)
    assert "whole_file" not in summary and "results_xlsx" not in summary
    assert len(summary["transitions"]) == 2


# --- preview.xlsx ------------------------------------------------------------------------------


def plan_row(row: int, verdict: Verdict, seen: str | None, **fields: Any) -> PlanRow:
    values: dict[str, Any] = {
        "row": row,
        "user_id": UUID,
        "action": "deactivate",
        "target_status": "inactive",
        "reason": "sanctions",
        "updated_by": "ops",
        "seen_status": seen,
        "verdict": verdict,
        "message": f"{seen} -> inactive" if verdict is Verdict.WILL_CHANGE else "",
        "values": (UUID, "x"),
    }
    values.update(fields)
    return PlanRow(**values)


def test_the_preview_workbook_has_its_counts_and_transitions_labelled_then_its_rows(
    tmp_path: Path,
) -> None:
    rows = [
        plan_row(2, Verdict.WILL_CHANGE, "active"),
        plan_row(3, Verdict.UNCHANGED, "inactive", message="already inactive"),
        plan_row(4, Verdict.NOT_FOUND, None, message="no such user"),
    ]
    facts_given = {
        "run_id": "20261201T083000Z-sanctions-preview",
        "job": "sanctions",
        "target": "the built-in sandbox at http://127.0.0.1:4000/v1",
        "base_url": "http://127.0.0.1:4000/v1",
        "sandbox": True,
        "previewed_with": "API key pcx_sbx_…",
        "input": {"file": "hits.csv", "sha256": "ef" * 32, "sheet": None},
        "previewed_by": "ana",
        "previewed_at": "2026-12-01T08:30:00+00:00",
        "plan": "/srv/plans/hits-plan.json",
        "plan_hash": "01" * 32,
    }
    write_preview(
        tmp_path, ["User ID", "Preview"], rows, title="pcxbatch preview of hits.csv",
        counts={"will_change": 1, "unchanged": 1, "not_found": 1},
        transitions=[("active", "inactive", 1)], xlsx=True, summary=facts_given,
    )  # fmt: skip
    book = openpyxl.load_workbook(tmp_path / "preview.xlsx")
    assert book.sheetnames == ["Summary", "Rows"]
    got = facts(book["Summary"])
    assert got["Preview"][0] == "20261201T083000Z-sanctions-preview"
    assert got["Read from (base URL)"][0] == "http://127.0.0.1:4000/v1"
    assert got["Built-in sandbox"][0] == "yes"
    assert got["Previewed by (name given)"][0] == "ana"
    assert got["Plan hash"][0] == "01" * 32
    assert got["Input SHA-256"][0] == "ef" * 32
    assert got["will_change"][0] == 1 and "applying the plan sends" in got["will_change"][1]
    assert got["invalid"][0] == 0
    assert got["active \u2192 inactive"][0] == 1

    ws = book["Rows"]
    rest = [c for c in PREVIEW_HEADERS if c not in ("row", "user_id", "preview", "message")]
    # An input column named like a preview column keeps its cells apart: "Preview (input)".
    assert header(ws) == ["row", "user_id", "preview", "message", "User ID", "Preview (input)",
                          *rest]  # fmt: skip
    assert widths(ws)["user_id"] >= len(UUID) + 2
    assert_prints_as_a_table(ws, "I4")
    with (tmp_path / "preview.csv").open(encoding="utf-8-sig", newline="") as f:
        csv_text = f.read()
    assert csv_text.startswith("pcxbatch preview of hits.csv\r\n")  # the CSV keeps its preamble
    assert ",".join([*PREVIEW_HEADERS, "User ID", "Preview (input)"]) in csv_text


def test_a_preview_without_facts_still_has_its_counts(tmp_path: Path) -> None:
    write_preview(tmp_path, ["User ID"], [plan_row(2, Verdict.WILL_CHANGE, "active",
                  values=(UUID,))], title="t", counts={"will_change": 1},
                  transitions=[("active", "inactive", 1)], xlsx=True)  # fmt: skip
    got = facts(openpyxl.load_workbook(tmp_path / "preview.xlsx")["Summary"])
    assert got["will_change"][0] == 1 and got["active \u2192 inactive"][0] == 1
    assert "Preview" not in got


@pytest.mark.parametrize("text", ["a" * 200, "word " * 40, "one\ntwo\nthree\nfour"])
def test_long_or_multi_line_text_wraps_and_its_row_grows(tmp_path: Path, text: str) -> None:
    write_results(tmp_path, ["Note"], [line(2, values=(text,))], xlsx=True)
    ws = openpyxl.load_workbook(tmp_path / "results.xlsx")["Rows"]
    col = header(ws).index("Note") + 1
    assert ws.cell(row=2, column=col).alignment.wrap_text
    assert ws.column_dimensions[chr(ord("A") + col - 1)].width < 61
    assert ws.row_dimensions[2].height >= 4 * 15  # four lines or more


# --- the runs a retry follows on from ----------------------------------------------------------


def _run_folder(path: Path, rows: Sequence[int], previous: str | None) -> None:
    path.mkdir(parents=True)
    journal = Journal(path / JOURNAL_NAME)
    journal.set_meta(previous_run=previous)
    journal.add_items(
        Item(row, UUID, Action.DEACTIVATE, "inactive", None, "ops", Outcome.INVALID, f"r{row}")
        for row in rows
    )
    journal.close()


def test_a_chain_of_retries_is_followed_back_to_the_first_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports = tmp_path / "reports"
    _run_folder(reports / "run-1", [2, 3, 4], None)
    _run_folder(reports / "run-2", [3], "reports/run-1")  # given relative to another directory
    _run_folder(reports / "run-3", [3], str(reports / "run-2"))
    monkeypatch.chdir(tmp_path / "reports")  # where "reports/run-1" does not resolve
    with runfolder.open_folder(reports / "run-3") as folder, runfolder.earlier_runs(folder) as runs:
        assert [(rid, [ln.row for ln in lines or ()]) for rid, lines in runs] == [
            ("run-2", [3]),
            ("run-1", [2, 3, 4]),
        ]


def test_a_missing_earlier_run_ends_the_chain_and_is_named(tmp_path: Path) -> None:
    run_dir = tmp_path / "run-2"
    _run_folder(run_dir, [3], str(tmp_path / "gone" / "run-1"))
    with runfolder.open_folder(run_dir) as folder, runfolder.earlier_runs(folder) as runs:
        assert runs == [("run-1", None)]
    with runfolder.open_folder(run_dir) as folder:
        folder.journal.set_meta(previous_run=None)
        with runfolder.earlier_runs(folder) as runs:
            assert runs == []


def test_people_of_the_web_service_are_shown_as_signed_in_accounts(tmp_path: Path) -> None:
    summary = {**run_summary(), "people_signed_in": True}
    write_results(tmp_path, INPUT_COLUMNS, three_lines(), xlsx=True, summary=summary)
    got = facts(openpyxl.load_workbook(tmp_path / "results.xlsx")["Summary"])
    assert got["Applied by (signed-in account)"][0] == "bob"
    assert "signed in to the pcxbatch web service" in got["Applied by (signed-in account)"][1]
    assert "Applied by (name given)" not in got
    assert "people_signed_in" not in got  # said by the labels, not again as a raw fact
