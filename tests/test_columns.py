"""The analyst's files (issue 13): a workbook exported by LibreOffice from a case system, with a
title above the header, a current-status column beside the new one, a reviewer column, and the
damage spreadsheets do (an ID that lost its leading zeros, one turned into a date, one made by a
formula, a blank status, a misspelt one). The job names its columns (``columns:`` and
``--column``) and its header row (``header_row:`` and ``--header-row``); the real command line
reads the committed LibreOffice exports in ``tests/fixtures`` (how they were made:
``tests/fixtures/make_fixtures.py``), and no damaged ID ever reaches the API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from e2e.conftest import pcxbatch

from pcxbatch import runfolder
from pcxbatch.cli import run_cli
from pcxbatch.config import job_from_dict, job_to_dict, load_job
from pcxbatch.errors import ConfigError, ExitCode, UnusableError
from pcxbatch.sandbox import SandboxConfig, start
from pcxbatch.sandbox.server import RunningSandbox

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CASE_EXPORT = FIXTURES / "case_export.xlsx"
WITH_SUMMARY = FIXTURES / "review_with_summary.xlsx"
NEW_STATUS = "status=New Status"

# What each data row of sheet Cases comes to once the new status column is named.
EXPECTED = {
    4: "planned",  # 00012340 -> rejected
    5: "invalid",  # 12345: a number that lost its leading zeros
    6: "invalid",  # a deactivation with no reviewer
    7: "invalid",  # a blank New Status cell
    8: "invalid",  # 'Rejectd'
    9: "invalid",  # a date
    10: "invalid",  # a formula
    11: "planned",  # 00012350 -> active
    12: "planned",  # 00012351 deactivated by m.lee
}


def job_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kyc.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --- the job keys and flags ----------------------------------------------------------------------


def test_columns_and_header_row_in_a_job_file(tmp_path: Path) -> None:
    path = job_file(
        tmp_path,
        f'input: {CASE_EXPORT}\nheader_row: 3\ncolumns:\n  status: "New Status"\n'
        "  User ID: User ID\n",
    )
    job = load_job(path)
    assert (job.header_row, dict(job.columns)) == (
        3,
        {"status": "New Status", "user_id": "User ID"},
    )


def test_column_flags_win_field_by_field_over_the_job(tmp_path: Path) -> None:
    path = job_file(
        tmp_path, f"input: {CASE_EXPORT}\ncolumns: {{status: Current Status, reason: Reason}}\n"
    )
    job = load_job(path, {"column": ("status=New  Status", "updated_by=Reviewed By")})
    assert dict(job.columns) == {
        "status": "New Status",  # runs of spaces are one, as read makes of a header
        "reason": "Reason",
        "updated_by": "Reviewed By",
    }
    assert load_job(path, {"column": ()}).columns == {
        "status": "Current Status",
        "reason": "Reason",
    }


def test_a_mapping_survives_the_journal(tmp_path: Path) -> None:
    job = load_job(CASE_EXPORT, {"column": (NEW_STATUS,), "header_row": 3})
    stored = json.loads(json.dumps(job_to_dict(job)))
    again = job_from_dict(stored)
    assert (again.columns, again.header_row) == ({"status": "New Status"}, 3)


@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        (
            {"column": ("statu=New Status",)},
            "--column: 'statu' is not a field (did you mean status?)",
        ),
        ({"column": ("New Status",)}, "--column New Status: must be FIELD=HEADER"),
        ({"column": ("status=  ",)}, "--column: status must name a header"),
        ({"columns": ["New Status"]}, "columns: must map fields to headers"),
        ({"columns": {"status": True}}, "columns: status must name a header"),
        ({"header_row": 0}, "header_row: must be between 1 and 1.04858e+06"),
        ({"header_row": "three"}, "header_row: must be a whole number"),
    ],
)
def test_bad_column_settings_name_the_key(overrides: dict[str, object], said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_job(CASE_EXPORT, overrides)
    assert said in str(caught.value)


def test_the_flags_are_on_validate_and_run(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("validate", "run", "preview"):
        assert run_cli([command, "--help"]) == ExitCode.OK
        shown = capsys.readouterr().out
        assert '--column FIELD="HEADER"' in shown and "--header-row" in shown, command


# --- the LibreOffice exports through the command line --------------------------------------------


def test_validate_tells_which_sheet_has_the_user_ids() -> None:
    ran = pcxbatch("validate", WITH_SUMMARY)
    assert ran.code == ExitCode.UNUSABLE
    (line,) = ran.stderr.splitlines()
    assert line.startswith(f"error: {WITH_SUMMARY}, sheet 'Summary': no user ID column")
    assert "other sheets are 'Cases' (has one): read 'Cases' with --sheet \"Cases\"" in line


def test_validate_asks_which_of_two_status_columns_to_read() -> None:
    ran = pcxbatch("validate", CASE_EXPORT)
    assert ran.code == ExitCode.UNUSABLE
    assert ran.stderr.strip() == (
        f"error: {CASE_EXPORT}, sheet 'Cases': columns 'Current Status' and 'New Status' could "
        'both be the status column; say which one: --column status="New Status" (columns: '
        '{status: "New Status"} in the job)'
    )


def test_validate_reads_the_analysts_workbook_once_told_the_status_column() -> None:
    ran = pcxbatch("validate", CASE_EXPORT, "--column", NEW_STATUS)
    assert ran.code == ExitCode.FILE_PROBLEMS, ran.stderr
    out = " ".join(ran.stdout.split())  # the table wraps long messages
    assert f"{CASE_EXPORT}, sheet 'Cases': 9 data rows" in out
    for said in (
        "invalid 6",
        "ready: deactivate 1",
        "ready: set_status 2",
        "row 5, column 'User ID': 12345 was stored as a number, but the column's other IDs are "
        "zero-padded to 8 digits (like '00012340'): it was probably 00012345 with its leading "
        "zeros lost",
        "row 6, column 'Reviewed By': empty; a deactivation needs updated_by",
        "--updated-by NAME (updated_by: in the job)",
        "row 7, column 'New Status': empty, so nothing says what to do",
        "row 8, column 'New Status': unknown status 'Rejectd' (did you mean 'rejected'?",
        "row 9, column 'User ID': '2024-03-01' looks like a date or time",
        "row 10, column 'User ID': a formula, not a value",
    ):
        assert said in out


def test_a_dry_run_of_the_analysts_workbook(tmp_path: Path) -> None:
    ran = pcxbatch(
        "run",
        WITH_SUMMARY,
        "--sheet",
        "Cases",
        "--column",
        NEW_STATUS,
        "--dry-run",
        "--report-dir",
        tmp_path,
    )
    assert ran.code == ExitCode.FILE_PROBLEMS, ran.stderr
    results = ran.results()
    assert {int(line["row"]): line["outcome"] for line in results} == EXPECTED
    planned = [(r["user_id"], r["action"], r["target_status"]) for r in results[-2:]]
    # Row 12 is a deactivation, so it is planned only because 'Reviewed By' gave it updated_by.
    assert planned == [("00012350", "set_status", "active"), ("00012351", "deactivate", "inactive")]
    assert results[0]["User ID"] == "00012340" and results[0]["Ticket #"] == "4411"
    assert ran.summary()["input"]["sheet"] == "Cases"


def test_a_job_file_that_names_the_header_row_and_the_columns(tmp_path: Path) -> None:
    path = job_file(
        tmp_path,
        f"input: {WITH_SUMMARY}\nsheet: Cases\nheader_row: 3\ndry_run: true\n"
        f"report_dir: {tmp_path / 'reports'}\n"
        "columns:\n  status: New Status\n  updated_by: Reviewed By\n",
    )
    ran = pcxbatch("run", path)
    assert ran.code == ExitCode.FILE_PROBLEMS, ran.stderr
    assert {int(line["row"]): line["outcome"] for line in ran.results()} == EXPECTED
    blank = pcxbatch("validate", path, "--header-row", "2")
    assert blank.code == ExitCode.UNUSABLE
    assert (
        "sheet 'Cases': row 2, set as the header row" in blank.stderr and "is blank" in blank.stderr
    )


@pytest.fixture
def case_users(tmp_path: Path) -> Iterator[RunningSandbox]:
    """A sandbox holding the workbook's users, and also a user '12345': what the damaged
    '00012345' would have reached, someone else's account."""
    ids = ["00012340", "00012345", "00012346", "00012347", "00012348", "00012349"]
    ids += ["00012350", "00012351", "12345"]
    # 00012350 is to become active: it must not be active already (a read before sending would
    # find it so and send nothing).
    users = [
        {"user_id": user_id, "status": "not_verified" if user_id == "00012350" else "active"}
        for user_id in ids
    ]
    users_file = tmp_path / "users.json"
    users_file.write_text(json.dumps(users), encoding="utf-8")
    running = start(SandboxConfig(users_file=users_file, seed=1))
    yield running
    running.stop()


def test_no_damaged_id_reaches_the_api(tmp_path: Path, case_users: RunningSandbox) -> None:
    ran = pcxbatch(
        "run",
        CASE_EXPORT,
        "--column",
        NEW_STATUS,
        "--base-url",
        case_users.base_url,
        "--report-dir",
        tmp_path / "reports",
        "--yes",
        env={"PCX_API_KEY": case_users.api_key},
    )
    assert ran.code == ExitCode.FILE_PROBLEMS, ran.stdout + ran.stderr
    outcomes = {int(line["row"]): line["outcome"] for line in ran.results()}
    assert outcomes == {
        row: "applied" if said == "planned" else said for row, said in EXPECTED.items()
    }
    puts = [r for r in case_users.sandbox.requests if r.method == "PUT"]
    sent = sorted((r.user_id, r.path.rsplit("/", 1)[-1]) for r in puts)
    assert sent == [
        ("00012340", "activate"),
        ("00012350", "activate"),
        ("00012351", "deactivate"),
    ]
    (deactivation,) = [r for r in puts if r.user_id == "00012351"]
    assert deactivation.body == {"updated_by": "m.lee", "reason": "Fraud ring FR-2211"}
    statuses = {user_id: user["status"] for user_id, user in case_users.sandbox.users.items()}
    assert statuses["12345"] == statuses["00012345"] == "active"  # neither was touched


def test_a_run_is_not_resumed_under_another_column_mapping(tmp_path: Path) -> None:
    job = load_job(CASE_EXPORT, {"column": (NEW_STATUS,), "report_dir": tmp_path})
    folder = runfolder.create(job, datetime.now(UTC), sheet="Cases", columns=["User ID"])
    folder.journal.set_meta(state=runfolder.STATE_READY)
    runfolder.check_resumable(folder, job)  # the same settings: fine
    for other in ({"column": ("status=Current Status",)}, {"header_row": 3}):
        changed = load_job(CASE_EXPORT, {"column": (NEW_STATUS,), "report_dir": tmp_path, **other})
        with pytest.raises(UnusableError, match=r"other settings|cannot change what the run sends"):
            runfolder.check_resumable(folder, changed)
    folder.journal.close()


def test_a_csv_whose_id_column_has_another_name_is_told_the_flag(tmp_path: Path) -> None:
    path = tmp_path / "hits.csv"
    path.write_text("Hits export\nrun 7\n\nCustomer ID;Change To\n00123;inactive\n", "utf-8")
    ran = pcxbatch("validate", path)
    assert ran.code == ExitCode.UNUSABLE
    assert (
        "no user ID column; the columns are 'Customer ID', 'Change To' (from row 4); if "
        "'Customer ID' holds the PCX user IDs, say so: --column user_id=\"Customer ID\""
    ) in ran.stderr
    ran = pcxbatch("validate", path, "--column", "user_id=Customer ID")
    assert "if column 'Change To' holds the new status, say so: --column status=" in ran.stderr
    ran = pcxbatch(
        "validate", path, "--column", "user_id=Customer ID", "--column", "status=Change To"
    )
    assert ran.code == ExitCode.FILE_PROBLEMS
    out = " ".join(ran.stdout.split())
    assert "row 5: a deactivation needs updated_by (who answers for the change)" in out
    assert "or give --updated-by NAME (updated_by: in the job)" in out
