"""The CLI's one boundary: every way a command can end becomes one exit code and plain lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pcxbatch.cli import run_cli
from pcxbatch.errors import ExitCode


def a_file(tmp_path: Path, name: str = "hits.csv") -> Path:
    path = tmp_path / name
    path.write_text("user_id\nu1\nu2\n", encoding="utf-8")
    return path


def test_every_problem_of_a_job_is_its_own_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli(["validate", str(a_file(tmp_path)), "--max-bytes", "-3", "--status", "bogus"])
    err = capsys.readouterr().err.splitlines()
    assert code is ExitCode.UNUSABLE
    assert err[0].startswith("error: command line: 2 problem(s)")  # both from flags
    assert err[1].startswith("  - --status:") and err[2].startswith("  - --max-bytes:")


def test_a_problem_a_flag_caused_names_the_flag_not_the_job_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = tmp_path / "review.yaml"
    job.write_text(f"input: {a_file(tmp_path)}\nstatus: bogus\n", encoding="utf-8")
    code = run_cli(["validate", str(job), "--max-bytes", "-3"])
    err = capsys.readouterr().err.splitlines()
    assert code is ExitCode.UNUSABLE
    assert err[0].startswith(f"error: {job}: 2 problem(s)")  # the job file has one of them
    assert err[1].startswith("  - status:") and err[2].startswith("  - --max-bytes:")


def test_an_unexpected_error_is_one_line_and_exit_70(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("something inside broke")

    monkeypatch.setattr("pcxbatch.runner.read_input", broken)
    code = run_cli(["validate", str(a_file(tmp_path))])
    err = capsys.readouterr().err
    assert code is ExitCode.INTERNAL
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "internal error (RuntimeError: something inside broke)" in err and "--debug" in err
    code = run_cli(["validate", str(a_file(tmp_path)), "--debug"])
    assert code is ExitCode.INTERNAL
    assert "Traceback" in capsys.readouterr().err


def test_text_from_outside_cannot_drive_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = a_file(tmp_path, "x\x1b]0;owned\x07\u202e.csv")
    code = run_cli(["validate", str(hostile), "--action", "deactivate", "--updated-by", "ops"])
    out = capsys.readouterr().out
    assert code is ExitCode.OK
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "\\x1b]0;owned\\x07\\u202e.csv" in out


def test_without_a_terminal_the_last_progress_line_is_printed_once(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pcxbatch.cli.ui import TerminalUI
    from pcxbatch.model import Outcome, RowResult

    clock = iter(range(0, 10_000, 10))  # ten seconds pass at every look: each row prints
    monkeypatch.setattr("pcxbatch.cli.ui.time.monotonic", lambda: float(next(clock)))
    ui = TerminalUI(ask=False)  # pytest's capture is not a terminal: plain lines
    ui.started(2)
    for row in (2, 3):
        ui.result(RowResult(row=row, outcome=Outcome.APPLIED, http_status=200, attempts=1))
    ui.close()
    lines = [line for line in capsys.readouterr().err.splitlines() if "rows," in line]
    shown = [line.split(" ", 1)[1].split(",")[0] for line in lines]
    assert shown == ["0/2 rows", "1/2 rows", "2/2 rows"]  # not "2/2" again at the end


def test_a_run_with_failed_rows_ends_by_saying_how_to_send_them_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pcxbatch.cli.summaries import print_result
    from pcxbatch.context import RunResult

    print_result(RunResult(tmp_path, {"applied": 3, "failed": 2}, ExitCode.FAILED_ROWS))
    out = capsys.readouterr().out.splitlines()
    assert f"to send the failed rows again: pcxbatch run --retry-failed {tmp_path}" in out
    assert out[-1] == f"report: {tmp_path}"
