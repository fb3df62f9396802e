"""Files with care: what a run writes is readable by its owner only, whatever the umask, and
writing a report never follows a planted link or keeps an earlier file's looser mode."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pcxbatch.journal import JOURNAL_NAME, Journal
from pcxbatch.model import Outcome, ReportLine
from pcxbatch.report import write_results, write_summary


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def line(row: int) -> ReportLine:
    return ReportLine(
        row=row,
        user_id=f"u{row}",
        action="deactivate",
        target_status="inactive",
        outcome=Outcome.APPLIED,
        http_status=200,
        attempts=1,
        message="",
        request_id="r",
        values=(f"u{row}",),
    )


@pytest.mark.usefixtures("open_umask")
def test_the_journal_and_its_wal_files_are_owner_only_while_a_run_is_live(tmp_path: Path) -> None:
    journal = Journal(tmp_path / JOURNAL_NAME)
    try:
        journal.set_meta(state="ready", columns=["user_id"])
        live = sorted(p.name for p in tmp_path.iterdir())
        assert live == [JOURNAL_NAME, f"{JOURNAL_NAME}-shm", f"{JOURNAL_NAME}-wal"]
        assert {name: mode(tmp_path / name) for name in live} == dict.fromkeys(live, 0o600)
    finally:
        journal.close()


@pytest.mark.usefixtures("open_umask")
def test_rewriting_a_report_does_not_keep_an_earlier_files_looser_mode(tmp_path: Path) -> None:
    for name in ("results.csv", "results.xlsx", "summary.json"):
        (tmp_path / name).write_text("old")
        (tmp_path / name).chmod(0o666)
    write_results(tmp_path, ["user_id"], [line(2)], xlsx=True)
    write_summary(tmp_path, {"exit_code": 0})
    for name in ("results.csv", "results.xlsx", "summary.json"):
        assert mode(tmp_path / name) == 0o600, name


def test_a_planted_link_in_the_run_folder_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("results.csv", "results.xlsx", "summary.json"):
        (run_dir / name).symlink_to(victim)
    write_results(run_dir, ["user_id"], [line(2)], xlsx=True)
    write_summary(run_dir, {"exit_code": 0})
    assert victim.read_text() == "precious\n"
    for name in ("results.csv", "results.xlsx", "summary.json"):
        assert not (run_dir / name).is_symlink(), name
