"""Hostile input through the installed command line: the nastiest files end with exit code 2,
one ``error:`` line naming the file and no traceback, and no request reaches the API; mangled
IDs become invalid rows that are never sent; a file over ``max_rows`` is refused before
anything is sent; a new run never writes into another run's folder.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter
from e2e.conftest import Ran, pcxbatch

from pcxbatch.sandbox import SandboxConfig, start
from pcxbatch.sandbox.server import RunningSandbox
from pcxbatch.sandbox.users import seed_users


@pytest.fixture
def server() -> Iterator[RunningSandbox]:
    running = start(SandboxConfig(users=40, seed=9))
    yield running
    running.stop()


def send(path: Path, server: RunningSandbox, reports: Path, *extra: str) -> Ran:
    return pcxbatch(
        "run",
        path,
        "--base-url",
        server.base_url,
        "--report-dir",
        reports,
        "--action",
        "deactivate",
        "--updated-by",
        "ops",
        "--rate",
        "200",
        "--yes",
        *extra,
        env={"PCX_API_KEY": server.api_key},
    )


def _encrypted() -> bytes:
    return (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600 + "EncryptedPackage".encode("utf-16-le")
    )


def _ods() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", "<x/>")
    return out.getvalue()


def _merged(path: Path, ids: list[str]) -> None:
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Hits")
    sheet.write_row(0, 0, ["user_id", "status"])
    for n, uid in enumerate(ids, start=1):
        sheet.write_string(n, 0, uid)
    sheet.merge_range(1, 1, len(ids), 1, "inactive")
    book.close()


def _truncated(path: Path, ids: list[str]) -> None:
    book = openpyxl.Workbook()
    for uid in ["user_id", *ids]:
        book.active.append([uid])
    buffer = io.BytesIO()
    book.save(buffer)
    path.write_bytes(buffer.getvalue()[:-200])


NASTY: list[tuple[str, Callable[[Path, list[str]], object], str]] = [
    ("random.xlsx", lambda p, ids: p.write_bytes(bytes(range(256)) * 40), "not an Excel"),
    ("encrypted.xlsx", lambda p, ids: p.write_bytes(_encrypted()), "password-protected"),
    ("calc.xlsx", lambda p, ids: p.write_bytes(_ods()), "OpenDocument"),
    ("merged.xlsx", _merged, "merged cells"),
    ("cut.xlsx", _truncated, "damaged"),
    ("binary.csv", lambda p, ids: p.write_bytes(b"user_id\n\x00\x01\x02"), "binary data"),
    (
        "wide.csv",
        lambda p, ids: p.write_text(",".join(f"c{i}" for i in range(4000)) + "\n1\n"),
        "no user ID column",
    ),
    ("quote.csv", lambda p, ids: p.write_text(f'user_id\n"{ids[0]}\n'), "never closed"),
]

# validate reads files through the same code as run; a few of them show it ends the same way.
VALIDATED = {"random.xlsx", "merged.xlsx", "quote.csv"}


def test_the_nastiest_files_end_in_one_clear_error_and_no_request(
    tmp_path: Path, server: RunningSandbox
) -> None:
    ids = [u["user_id"] for u in seed_users(40, 9)][:5]
    commands: list[tuple[str, str, str, Callable[..., Ran]]] = []
    for name, make, said in NASTY:
        path = tmp_path / name
        make(path, ids)
        reports = tmp_path / f"reports-{path.stem}"
        commands.append((name, said, "run", lambda p=path, r=reports: send(p, server, r)))
        if name in VALIDATED:
            commands.append((name, said, "validate", lambda p=path: pcxbatch("validate", p)))
    # The commands are independent (one report folder per file): run them side by side.
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda command: command[3](), commands))
    for (name, said, command, _), ran in zip(commands, results, strict=True):
        where = f"{command} {name}"
        assert ran.code == 2, f"{where}: {ran.stdout}{ran.stderr}"
        assert "Traceback" not in ran.stderr, where
        errors = [line for line in ran.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and errors[0].startswith("error: "), f"{where}: {ran.stderr}"
        assert name in errors[0] and said in errors[0], f"{where}: {errors[0]}"
    assert server.sandbox.requests == []
    assert not list(tmp_path.glob("reports-*/*/results.csv"))


def test_mangled_ids_in_a_workbook_are_invalid_and_never_sent(
    tmp_path: Path, server: RunningSandbox
) -> None:
    good = [u["user_id"] for u in seed_users(40, 9) if u["status"] == "active"][:3]
    path = tmp_path / "ids.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Hits")
    sheet.write_row(0, 0, ["User ID", "Status"])
    sheet.write_row(1, 0, [good[0], "inactive"])
    sheet.write_number(2, 0, 123457000000000)  # 1.23457E+14 read back
    sheet.write_number(3, 0, 1234567890123456789)  # more than 15 digits
    sheet.write_string(4, 0, "1.23457E+14")
    sheet.write_formula(5, 0, f'="{good[1]}"', None, good[1])  # a formula that yields an ID
    sheet.write_row(6, 0, [good[1], '=IF(1,"inactive")'])
    sheet.write_formula(7, 1, '="inactive"', None, "inactive")
    sheet.write_string(7, 0, good[2])
    sheet.write_datetime(8, 0, datetime(2024, 3, 1), book.add_format({"num_format": "d-mmm"}))
    book.close()

    ran = send(path, server, tmp_path / "reports")
    assert ran.code == 1, ran.stderr
    by_row = {int(r["row"]): r for r in ran.results()}
    assert by_row[2]["outcome"] == "applied"
    for row in range(3, 10):
        assert by_row[row]["outcome"] == "invalid", by_row[row]
    assert "1.23457E+14" in by_row[3]["message"]
    assert "more than 15 digits" in by_row[4]["message"]
    assert "scientific notation" in by_row[5]["message"]
    assert "a formula" in by_row[6]["message"]
    assert "a formula" in by_row[7]["message"]
    assert "a formula" in by_row[8]["message"]
    assert "date" in by_row[9]["message"]
    puts = [r for r in server.sandbox.requests if r.method == "PUT"]
    assert len(puts) == 1 and good[0] in puts[0].path


def test_a_file_over_max_rows_is_refused_before_any_request(
    tmp_path: Path, server: RunningSandbox
) -> None:
    ids = [u["user_id"] for u in seed_users(40, 9)][:30]
    path = tmp_path / "many.csv"
    path.write_text("user_id\n" + "\n".join(ids) + "\n")
    ran = send(path, server, tmp_path / "reports", "--max-rows", "10")
    assert ran.code == 2
    assert "Traceback" not in ran.stderr
    assert "30 rows would be sent" in ran.stderr and "max_rows" in ran.stderr
    assert "--max-rows" in ran.stderr  # says how to raise it
    assert server.sandbox.requests == []
    assert not list((tmp_path / "reports").glob("*/results.csv"))


def test_a_hidden_sheet_is_never_what_a_run_acts_on(tmp_path: Path, server: RunningSandbox) -> None:
    users = [u["user_id"] for u in seed_users(40, 9) if u["status"] == "active"]
    book = openpyxl.Workbook()
    stale = book.active
    stale.title = "last month"
    stale.append(["user_id"])
    stale.append([users[0]])
    stale.sheet_state = "hidden"
    shown = book.create_sheet("Hits")
    shown.append(["user_id"])
    shown.append([users[1]])
    book.active = 1
    path = tmp_path / "hidden.xlsx"
    book.save(path)
    ran = send(path, server, tmp_path / "reports")
    assert ran.code == 0, ran.stderr
    assert [r["user_id"] for r in ran.results()] == [users[1]]
    puts = [r for r in server.sandbox.requests if r.method == "PUT"]
    assert len(puts) == 1 and users[1] in puts[0].path


def test_rows_hidden_by_a_filter_are_refused_or_skipped_as_asked(
    tmp_path: Path, server: RunningSandbox
) -> None:
    users = [u["user_id"] for u in seed_users(40, 9) if u["status"] == "active"]
    book = xlsxwriter.Workbook(str(tmp_path / "filtered.xlsx"))
    sheet = book.add_worksheet("Hits")
    sheet.write_row(0, 0, ["user_id", "review"])
    for n, (uid, review) in enumerate(
        [(users[2], "confirmed"), (users[3], "REJECTED - false positive"), (users[4], "confirmed")],
        start=1,
    ):
        sheet.write_row(n, 0, [uid, review])
    sheet.autofilter(0, 0, 3, 1)
    sheet.filter_column(1, "x == confirmed")
    sheet.set_row(2, options={"hidden": True})  # what Excel writes for a filtered-out row
    book.close()
    path = tmp_path / "filtered.xlsx"
    refused = send(path, server, tmp_path / "reports")
    assert refused.code == 2 and "--hidden-rows" in refused.stderr and "3" in refused.stderr
    assert not [r for r in server.sandbox.requests if r.method == "PUT"]
    skipped = send(path, server, tmp_path / "reports", "--hidden-rows", "skip")
    assert skipped.code == 0, skipped.stderr
    assert [r["user_id"] for r in skipped.results()] == [users[2], users[4]]
    assert skipped.summary()["hidden_rows_skipped"] == [3]
    assert server.sandbox.status_of(users[3]) == "active"  # the rejected row was never sent


def test_a_new_run_never_writes_into_another_runs_folder(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    path = tmp_path / "in.csv"
    path.write_text("user_id\nu1\n")
    # Folders named as this run's would be, for every second it could start in, each holding
    # an earlier run's report.
    now = datetime.now(UTC)
    taken = []
    for second in range(-1, 30):
        stamp = (now + timedelta(seconds=second)).strftime("%Y%m%dT%H%M%SZ")
        folder = reports / f"{stamp}-in"
        folder.mkdir()
        (folder / "results.csv").write_text("an earlier run's report\n")
        taken.append(folder)
    ran = pcxbatch(
        "run", path, "--dry-run", "--action", "deactivate", "--updated-by", "x",
        "--report-dir", reports,
    )  # fmt: skip
    assert ran.code == 0, ran.stderr
    assert ran.run_dir not in taken
    assert ran.run_dir.name.endswith("-in-2")
    for folder in taken:
        assert (folder / "results.csv").read_text() == "an earlier run's report\n"
        assert [p.name for p in folder.iterdir()] == ["results.csv"]


def test_a_report_dir_that_is_a_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("user_id\nu1\n")
    blocker = tmp_path / "reports"
    blocker.write_text("")
    ran = pcxbatch(
        "run", path, "--dry-run", "--action", "deactivate", "--updated-by", "x",
        "--report-dir", blocker,
    )  # fmt: skip
    assert ran.code == 2
    assert "Traceback" not in ran.stderr
    assert str(blocker) in ran.stderr
