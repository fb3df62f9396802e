"""The runner's operations in-process: an in-process sandbox, a virtual clock, no sockets, no sleep.

Each test drives ``run_job``/``resume_run``/``retry_failed``/``preview_job``/``apply_plan``
through a :class:`~pcxbatch.context.RunContext` whose client factory reaches a sandbox in the
same event loop and whose async runner is the virtual-clock loop, then checks what a user would
notice: the report's rows, the summary, the exit code, and the sandbox's final state.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from vclock import run_virtual

from pcxbatch.audit.folder import verify_folder
from pcxbatch.client import PcxClient, RetryPolicy
from pcxbatch.config import Job, load_job
from pcxbatch.context import Confirmation, RunContext, RunResult, job_limiter
from pcxbatch.credentials import Credentials
from pcxbatch.errors import ExitCode, InternalError, StoppedError, UnusableError
from pcxbatch.journal import JOURNAL_NAME
from pcxbatch.model import RowResult
from pcxbatch.runfolder import UnfinishedRun
from pcxbatch.runner import apply_plan, preview_job, resume_run, retry_failed, run_job
from pcxbatch.sandbox import INPROCESS_BASE_URL, Sandbox, SandboxConfig, inprocess_transport

SEED = 4


@dataclass
class RecordingUI:
    """A RunUI that answers the prompt with ``answer`` and remembers what it was told."""

    answer: bool = True
    on_result: Callable[[RowResult], None] | None = None
    results: list[RowResult] = field(default_factory=list)
    stops: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    resumed: list[Path] = field(default_factory=list)
    resumed_runs: list[UnfinishedRun] = field(default_factory=list)
    left: list[UnfinishedRun] = field(default_factory=list)
    confirmations: list[Confirmation] = field(default_factory=list)

    def planned(self, plan: Confirmation) -> bool:
        self.confirmations.append(plan)
        return self.answer

    def started(self, total: int) -> None:
        pass

    def result(self, result: RowResult) -> None:
        self.results.append(result)
        if self.on_result is not None:
            self.on_result(result)

    def stopping(self, reason: str) -> None:
        self.stops.append(reason)

    def notice(self, text: str) -> None:
        self.notices.append(text)

    def resuming(self, run: UnfinishedRun) -> None:
        self.resumed.append(run.path)
        self.resumed_runs.append(run)

    def left_unfinished(self, runs: Sequence[UnfinishedRun]) -> None:
        self.left.extend(runs)

    def listing(self, pages: int, listed: int, found: int) -> None:
        pass


class Clock:
    """Wall-clock time for folder names and plan ages: a minute passes at every look."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


def context(
    sandbox: Sandbox,
    ui: RecordingUI | None = None,
    transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
    **fields: Any,
) -> RunContext:
    def factory(job: Job, base_url: str, credentials: Credentials, *, connections: int) -> Any:
        return PcxClient(
            base_url,
            credentials,
            limiter=job_limiter(job),
            retry=RetryPolicy(
                max_attempts=job.max_attempts, jitter=False, max_wait=job.max_retry_wait
            ),
            transport=transport() if transport else inprocess_transport(sandbox),
            max_connections=connections,
            id_pattern=job.id_pattern,
            deadline=job.request_timeout,
        )

    settings: dict[str, Any] = {
        "ui": ui or RecordingUI(),
        "credentials": Credentials(api_key=sandbox.api_key),
        "clock": Clock(),
        "operator": "ana",
        "client_factory": factory,
        "run_async": run_virtual,
    }
    settings.update(fields)
    return RunContext(**settings)


def users(sandbox: Sandbox, status: str, n: int) -> list[str]:
    found = [uid for uid, user in sandbox.users.items() if user["status"] == status][:n]
    assert len(found) == n
    return found


def make_job(tmp_path: Path, ids: list[str], **settings: Any) -> Job:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "hits.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["User ID", "Note"])
        writer.writerows([uid, f"case {n}"] for n, uid in enumerate(ids))
    flags: dict[str, Any] = {
        "report_dir": tmp_path / "reports",
        "action": "deactivate",
        "updated_by": "ops",
        "reason": "sanctions",
        "base_url": INPROCESS_BASE_URL,
        "allow_insecure_http": True,  # in-process: nothing goes on a wire
        "rate": 1000.0,
        "concurrency": 4,
        "yes": True,
    }
    flags.update(settings)
    return load_job(path, flags)


def results(result: RunResult) -> list[dict[str, str]]:
    assert result.run_dir is not None
    with (result.run_dir / "results.csv").open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def audit_entries(folder: Path) -> list[dict[str, Any]]:
    """The bodies of the report folder's audit entries, checkpoints left out."""
    lines = (folder / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    bodies = [json.loads(line)["body"] for line in lines]
    return [b for b in bodies if b["event"] != "checkpoint"]


def summary(result: RunResult) -> dict[str, Any]:
    assert result.run_dir is not None
    return dict(json.loads((result.run_dir / "summary.json").read_text()))


def puts_per_user(sandbox: Sandbox) -> Counter[str | None]:
    return Counter(r.user_id for r in sandbox.requests if r.method == "PUT")


def interrupt_after(n: int, sig: signal.Signals = signal.SIGTERM) -> RecordingUI:
    """A UI that sends this process ``sig`` once ``n`` rows have their outcome."""

    def maybe_stop(_result: RowResult) -> None:
        if len(ui.results) == n:
            os.kill(os.getpid(), sig)

    ui = RecordingUI(on_result=maybe_stop)
    return ui


# --- run and its exit codes ----------------------------------------------------------------------


def test_a_run_applies_every_row_and_the_sandbox_agrees(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    ids = users(sandbox, "active", 12)
    result = run_job(make_job(tmp_path, ids), context(sandbox))
    assert result.exit_code is ExitCode.OK
    assert [r["outcome"] for r in results(result)] == ["applied"] * 12
    assert [r["Note"] for r in results(result)] == [f"case {n}" for n in range(12)]
    assert all(sandbox.status_of(uid) == "inactive" for uid in ids)
    assert summary(result)["exit_code"] == 0


def test_failed_rows_exit_5_and_file_problems_alone_exit_1(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    ids = users(sandbox, "active", 3)
    missing = "00000000-0000-4000-8000-000000000000"
    bad = run_job(make_job(tmp_path / "a", [*ids, "bad/id", ids[0], missing]), context(sandbox))
    assert bad.exit_code is ExitCode.FILE_PROBLEMS
    outcomes = Counter(r["outcome"] for r in results(bad))
    assert outcomes == {"applied": 3, "invalid": 1, "duplicate": 1, "not_found": 1}
    failing = Sandbox(SandboxConfig(users=60, seed=SEED, fail_rate=1.0))
    others = users(failing, "active", 2)
    failed = run_job(make_job(tmp_path / "b", [*others, "x/y"], max_attempts=1), context(failing))
    assert failed.exit_code is ExitCode.FAILED_ROWS  # the API failed them: 5 wins over 1
    assert summary(failed)["exit_code"] == 5


def test_declining_sends_nothing_exits_6_and_leaves_no_folder(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    job = make_job(tmp_path, users(sandbox, "active", 4))
    result = run_job(job, context(sandbox, RecordingUI(answer=False)))
    assert result.exit_code is ExitCode.DECLINED and result.run_dir is None
    assert not puts_per_user(sandbox)
    assert not [p for p in job.report_dir.iterdir() if p.is_dir()]
    (entry,) = audit_entries(job.report_dir)  # the decline is on record, nothing else
    assert entry["event"] == "run.decline"


def test_a_missing_credential_leaves_no_folder(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    job = make_job(tmp_path, users(sandbox, "active", 2))
    with pytest.raises(UnusableError, match="no API credential"):
        run_job(job, context(sandbox, credentials=None))
    assert not job.report_dir.exists()  # refused before anything was made


def test_an_unexpected_error_before_anything_was_sent_leaves_no_resumable_folder(
    tmp_path: Path,
) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    job = make_job(tmp_path, users(sandbox, "active", 2))

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("no client today")

    with pytest.raises(RuntimeError, match="no client today"):
        run_job(job, context(sandbox, client_factory=broken))
    assert not [p for p in job.report_dir.iterdir() if p.is_dir()]
    again = run_job(job, context(sandbox))  # a fresh run, not a "resume" into the same crash
    assert again.exit_code is ExitCode.OK


def test_an_unexpected_error_after_sends_keeps_the_report_and_the_run_resumable(
    tmp_path: Path,
) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    ids = users(sandbox, "active", 10)
    job = make_job(tmp_path, ids, concurrency=1)

    def explode(result: RowResult) -> None:
        if len(ui.results) == 3:
            raise RuntimeError("display broke")

    ui = RecordingUI(on_result=explode)
    with pytest.raises(InternalError, match="pcxbatch resume") as caught:
        run_job(job, context(sandbox, ui))
    run_dir = caught.value.run_dir
    with (run_dir / "results.csv").open(encoding="utf-8-sig") as f:
        outcomes = Counter(r["outcome"] for r in csv.DictReader(f))
    assert outcomes["applied"] == 3 and outcomes["not_attempted"] == 7
    resumed = run_job(job, context(sandbox))
    assert resumed.run_dir == run_dir and resumed.exit_code is ExitCode.OK
    assert max(puts_per_user(sandbox).values()) == 1


# --- stop, drain, resume -------------------------------------------------------------------------


def test_sigterm_drains_in_flight_requests_and_a_rerun_resumes(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=80, seed=SEED, latency_ms=20))
    ids = users(sandbox, "active", 30)
    job = make_job(tmp_path, ids, concurrency=3)
    ui = interrupt_after(5)
    first = run_job(job, context(sandbox, ui))
    assert first.exit_code is ExitCode.STOPPED
    assert first.stopped == "interrupted (SIGTERM)" and ui.stops
    done = Counter(r["outcome"] for r in results(first))
    assert done["applied"] >= 5 and done["not_attempted"] > 0
    assert done["applied"] + done["not_attempted"] == 30  # in-flight rows finished, none lost
    again_ui = RecordingUI()
    second = run_job(job, context(sandbox, again_ui))
    assert again_ui.resumed == [first.run_dir] and second.run_dir == first.run_dir
    assert [r["outcome"] for r in results(second)] == ["applied"] * 30
    assert max(puts_per_user(sandbox).values()) == 1  # nothing with an outcome was sent again
    # On record: the stop with why, the resume, the finish; the folder verifies.
    entries = audit_entries(job.report_dir)
    assert [e["event"] for e in entries] == ["run.start", "run.stop", "run.resume", "run.finish"]
    assert entries[1]["details"]["stopped"] == "interrupted (SIGTERM)"
    assert entries[1]["details"]["exit_code"] == ExitCode.STOPPED
    assert verify_folder(job.report_dir).ok


def test_a_resume_after_a_kill_treats_an_unanswered_send_as_possibly_applied(
    tmp_path: Path,
) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    ids = users(sandbox, "active", 6)
    job = make_job(tmp_path, ids)
    first = run_job(job, context(sandbox))
    assert first.run_dir is not None
    # As if killed right after row 3's request left: its intent is recorded, its answer is not.
    with sqlite3.connect(first.run_dir / JOURNAL_NAME) as db:
        db.execute("UPDATE rows SET outcome = NULL, sent = 1 WHERE row = 3")
        db.execute("UPDATE meta SET value = '\"ready\"' WHERE key = 'state'")
    second = resume_run(first.run_dir, context(sandbox))
    row3 = results(second)[1]
    assert row3["outcome"] == "applied" and "previous run" in row3["message"]
    assert puts_per_user(sandbox)[ids[1]] == 2


def test_a_changed_input_or_settings_start_a_new_run_and_the_old_one_is_named(
    tmp_path: Path,
) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED, latency_ms=20))
    ids = users(sandbox, "active", 20)
    job = make_job(tmp_path, ids, concurrency=2)
    clock = Clock()
    first = run_job(job, context(sandbox, interrupt_after(2), clock=clock))
    assert first.exit_code is ExitCode.STOPPED and first.run_dir is not None
    ui = RecordingUI()
    clock.now += timedelta(hours=20)  # the next night
    other = run_job(replace(job, reason="something else"), context(sandbox, ui, clock=clock))
    assert other.run_dir != first.run_dir and not ui.resumed
    assert [u.path for u in ui.left] == [first.run_dir]
    assert ui.left[0].remaining > 0 and ui.left[0].age_seconds > 20 * 3600
    assert other.exit_code is ExitCode.STOPPED  # every row done, but an older run is not
    assert [u.path for u in other.unfinished] == [first.run_dir]
    assert summary(other)["unfinished_runs"] == [str(first.run_dir)]
    assert summary(other)["exit_code"] == 3
    # The old run is never forgotten: an explicit resume finishes it, whatever the file is now.
    job.input.write_text(job.input.read_text() + "extra-user,case x\n")
    resumed = resume_run(first.run_dir, context(sandbox))
    assert resumed.run_dir == first.run_dir and resumed.exit_code is ExitCode.OK
    assert len(results(resumed)) == 20  # the journal's rows, not tonight's file


def test_a_refused_key_is_caught_before_the_first_change_and_leaves_no_folder(
    tmp_path: Path,
) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    job = make_job(tmp_path, users(sandbox, "active", 20))
    refused = Credentials(api_key="pcx_bad_key")
    with pytest.raises(UnusableError, match=r"refused the credential \(401"):
        run_job(job, context(sandbox, credentials=refused))
    assert not puts_per_user(sandbox)
    assert [r.path for r in sandbox.requests] == ["/v1/users/list"]  # the one preflight read
    assert not [p for p in job.report_dir.iterdir() if p.is_dir()]


def test_a_key_refused_mid_run_stops_the_run_and_the_same_input_resumes_it(
    tmp_path: Path,
) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    ids = users(sandbox, "active", 20)
    job = make_job(tmp_path, ids)
    # A key that may list users (so the preflight passes) but not change them (403 on PUT).
    readonly = Credentials(api_key=sandbox.readonly_api_key)
    stopped = run_job(job, context(sandbox, credentials=readonly))
    assert stopped.exit_code is ExitCode.STOPPED
    assert stopped.stopped is not None and "not allowed to do this (403)" in stopped.stopped
    assert Counter(r["outcome"] for r in results(stopped))["not_attempted"] == 20
    original = job.input.read_bytes()
    job.input.write_bytes(original + b"extra-user,case x\r\n")
    tonight = run_job(job, context(sandbox))  # tonight's export: a new run; the old one waits
    assert tonight.run_dir != stopped.run_dir and tonight.exit_code is ExitCode.STOPPED
    assert [u.path for u in tonight.unfinished] == [stopped.run_dir]
    job.input.write_bytes(original)
    ui = RecordingUI()
    resumed = run_job(job, context(sandbox, ui))
    assert ui.resumed == [stopped.run_dir] and resumed.exit_code is ExitCode.OK
    fresh = run_job(job, context(sandbox), fresh=True)
    assert fresh.run_dir != stopped.run_dir and fresh.exit_code is ExitCode.OK
    assert Counter(r["outcome"] for r in results(fresh)) == {"unchanged": 20}


def test_the_failure_guard_stops_a_small_file_too(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED, fail_rate=1.0))
    ids = users(sandbox, "active", 30)
    job = make_job(tmp_path, ids, concurrency=1, max_attempts=2, failure_window=5)
    ui = RecordingUI()
    result = run_job(job, context(sandbox, ui))
    assert result.exit_code is ExitCode.STOPPED
    assert result.stopped is not None and "of the last 5 rows failed" in result.stopped
    assert Counter(r["outcome"] for r in results(result))["not_attempted"] >= 20


# --- retry-failed, preview, apply ----------------------------------------------------------------


def test_retry_failed_makes_a_linked_run_of_only_the_failed_rows(tmp_path: Path) -> None:
    config = SandboxConfig(users=60, seed=SEED)
    failing = Sandbox(replace(config, fail_rate=1.0))
    healthy = Sandbox(config)  # the same seeded users, answering normally
    ids = users(healthy, "active", 4)
    first = run_job(make_job(tmp_path, [*ids, "bad/id"], max_attempts=1), context(failing))
    assert first.exit_code is ExitCode.FAILED_ROWS and first.run_dir is not None
    retried = retry_failed(first.run_dir, context(healthy))
    assert retried.run_dir != first.run_dir
    assert summary(retried)["previous_run"] == str(first.run_dir)
    # One report for the file: the rows retried, and the invalid row as the first run left it.
    got = [(r["outcome"], r["earlier_run"]) for r in results(retried)]
    assert got == [("applied", "")] * 4 + [("invalid", first.run_dir.name)]
    retry_start = audit_entries(job_dir := first.run_dir.parent)[2]
    assert retry_start["details"]["kind"] == "retry"
    assert retry_start["details"]["previous_run"] == str(first.run_dir)
    assert verify_folder(job_dir).ok
    assert all(healthy.status_of(uid) == "inactive" for uid in ids)


def test_a_preview_folder_is_never_resumed_into_sends(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    job = make_job(tmp_path, users(sandbox, "active", 3))
    preview = preview_job(job, context(sandbox))
    for operation in (resume_run, retry_failed):
        with pytest.raises(UnusableError, match="is a preview"):
            operation(preview.run_dir, context(sandbox))
    assert not puts_per_user(sandbox)


def test_apply_sends_the_plan_and_reports_drift_since_the_preview(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    active = users(sandbox, "active", 4)
    already = users(sandbox, "inactive", 1)
    job = make_job(tmp_path, [*active, *already])
    preview = preview_job(job, context(sandbox))
    assert preview.counts == {"will_change": 4, "unchanged": 1}
    assert preview.transitions == [("active", "inactive", 4)]
    sandbox.set_status(active[0], "inactive")  # someone else got there between preview and apply
    applied = apply_plan(preview.plan_path, context(sandbox, operator="ben"))
    rows = results(applied)
    outcomes = [r["outcome"] for r in rows]
    assert outcomes == ["unchanged", "applied", "applied", "applied", "unchanged"]
    assert "changed since the preview" in rows[0]["message"] and "was active" in rows[0]["message"]
    assert "at the preview" in rows[4]["message"]
    assert puts_per_user(sandbox)[already[0]] == 0  # unchanged at the preview: never sent
    assert applied.run_dir is not None
    with (applied.run_dir / "undo.csv").open(encoding="utf-8-sig") as f:
        undo = list(csv.DictReader(f))
    assert [(u["user_id"], u["status"]) for u in undo] == [(uid, "active") for uid in active[1:]]


def test_a_second_person_must_apply_when_the_job_says_so(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    job = make_job(tmp_path, users(sandbox, "active", 3), require_second_person=True)
    preview = preview_job(job, context(sandbox, operator="ana"))
    with pytest.raises(UnusableError, match="second person"):
        apply_plan(preview.plan_path, context(sandbox, operator="ana"))
    assert not puts_per_user(sandbox)
    other = apply_plan(preview.plan_path, context(sandbox, operator="ben"))
    assert other.exit_code is ExitCode.OK
    assert summary(other)["applied_by"] == "ben" and summary(other)["previewed_by"] == "ana"


def test_apply_refuses_a_plan_too_old_for_the_context_clock(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    job = make_job(tmp_path, users(sandbox, "active", 2))
    preview = preview_job(job, context(sandbox))
    later = Clock()
    later.now += timedelta(hours=30)
    with pytest.raises(UnusableError, match="older than the 24 h allowed"):
        apply_plan(preview.plan_path, context(sandbox, clock=later))
    assert not puts_per_user(sandbox)


# --- the network: preflight, a dead API, long waits, hangs, endless paging ------------------------


class PutsAnswered(httpx.AsyncBaseTransport):
    """The sandbox in-process, except that every PUT gets ``answer(n)`` instead (n counts PUTs
    from 1): a response, or an exception to raise. ``None`` passes the PUT to the sandbox."""

    def __init__(
        self, sandbox: Sandbox, answer: Callable[[int], httpx.Response | Exception | None]
    ) -> None:
        self.inner, self.answer, self.puts = inprocess_transport(sandbox), answer, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            self.puts += 1
            reply = self.answer(self.puts)
            if isinstance(reply, Exception):
                raise reply
            if reply is not None:
                return reply
        return await self.inner.handle_async_request(request)


def timed(spent: list[float]) -> Callable[[Any], Any]:
    """A run_async that notes how much virtual time each coroutine took."""

    def run(coro: Any) -> Any:
        async def go() -> Any:
            try:
                return await coro
            finally:
                spent.append(asyncio.get_running_loop().time())

        return run_virtual(go())

    return run


def refused(_n: int) -> Exception:
    return httpx.ConnectError("All connection attempts failed")


def gateway_down(_n: int) -> httpx.Response:
    return httpx.Response(503, json={"message": "Service Unavailable"})


@pytest.mark.parametrize("dead", [refused, gateway_down], ids=["refused", "503s"])
def test_an_api_that_dies_mid_run_stops_it_within_about_a_minute(
    tmp_path: Path, dead: Callable[[int], Any]
) -> None:
    sandbox = Sandbox(SandboxConfig(users=500, seed=SEED))
    ids = users(sandbox, "active", 300)
    job = make_job(tmp_path, ids, concurrency=8)
    spent: list[float] = []
    ui = RecordingUI()
    dies = context(sandbox, ui, lambda: PutsAnswered(sandbox, dead), run_async=timed(spent))
    result = run_job(job, dies)
    assert result.exit_code is ExitCode.STOPPED
    assert result.stopped is not None and "has not answered for 60 s" in result.stopped
    assert ui.stops == [result.stopped]
    assert summary(result)["stopped"] == result.stopped
    assert Counter(r["outcome"] for r in results(result)) == {"not_attempted": 300}
    assert spent[-1] < 65  # virtual seconds of sending: a minute, not 8 attempts x 300 rows
    # It is resumable: the same command, once the API is back, finishes the run.
    again = run_job(job, context(sandbox))
    assert again.run_dir == result.run_dir and again.exit_code is ExitCode.OK
    assert max(puts_per_user(sandbox).values()) == 1


def test_a_dead_api_is_found_by_the_preflight_and_leaves_no_folder(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    job = make_job(tmp_path, users(sandbox, "active", 5))

    def dead() -> httpx.AsyncBaseTransport:
        return httpx.MockTransport(lambda r: (_ for _ in ()).throw(refused(0)))

    with pytest.raises(StoppedError, match="is not answering") as stopped:
        run_job(job, context(sandbox, transport=dead))
    assert stopped.value.exit_code is ExitCode.STOPPED
    assert not [p for p in job.report_dir.iterdir() if p.is_dir()]


@pytest.mark.parametrize("gateway", [False, True], ids=["404", "403 Missing Authentication Token"])
def test_a_base_url_without_v1_is_refused_before_any_row(tmp_path: Path, gateway: bool) -> None:
    sandbox = Sandbox(SandboxConfig(users=100, seed=SEED, gateway_missing_path=gateway))
    job = make_job(tmp_path, users(sandbox, "active", 57), base_url="http://pcx-sandbox.invalid")
    with pytest.raises(UnusableError, match=r"did you mean http://pcx-sandbox\.invalid/v1\?"):
        run_job(job, context(sandbox))
    assert not puts_per_user(sandbox)  # no row was sent, so none is "user not found"
    assert not [p for p in job.report_dir.iterdir() if p.is_dir()]


def test_a_retry_after_beyond_the_job_limit_stops_the_run_resumably(tmp_path: Path) -> None:
    # A daily quota with three requests left: the preflight read, the read before sending and
    # one change.
    sandbox = Sandbox(
        SandboxConfig(users=60, seed=SEED, rate=0.0001, burst=3, retry_after_seconds=86400)
    )
    ids = users(sandbox, "active", 10)
    job = make_job(tmp_path, ids, concurrency=1)
    spent: list[float] = []
    result = run_job(job, context(sandbox, run_async=timed(spent)))
    assert result.exit_code is ExitCode.STOPPED
    assert result.stopped is not None
    assert "the API asked to wait 24 h (Retry-After: 86400" in result.stopped
    assert "longer than the job's max_retry_wait of 5 min" in result.stopped
    outcomes = Counter(r["outcome"] for r in results(result))
    assert outcomes == {"applied": 1, "not_attempted": 9}
    assert spent[-1] < 1  # no 300 s waits on the way
    assert summary(result)["stopped"] == result.stopped


def test_a_shorter_wait_is_waited_for_and_told_to_the_person(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    ids = users(sandbox, "active", 6)
    job = make_job(tmp_path, ids, concurrency=1)

    def first_throttled(n: int) -> httpx.Response | None:
        return httpx.Response(429, headers={"Retry-After": "120"}, json={}) if n == 1 else None

    ui = RecordingUI()
    result = run_job(job, context(sandbox, ui, lambda: PutsAnswered(sandbox, first_throttled)))
    assert result.exit_code is ExitCode.OK
    assert len(ui.notices) == 1
    assert ui.notices[0].startswith("the API answered 429 with Retry-After: 120: waiting 120 s")


def test_a_trickling_answer_is_cut_at_the_request_deadline(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED, trickle_ms=2000))  # 1 byte per 2 s
    ids = users(sandbox, "active", 3)
    job = make_job(tmp_path, ids, concurrency=3, request_timeout=10, max_attempts=2)
    spent: list[float] = []
    result = run_job(job, context(sandbox, run_async=timed(spent)))
    rows = results(result)
    assert all("no complete answer within 10 s" in r["message"] for r in rows), rows
    assert [r["attempts"] for r in rows] == ["2"] * 3
    assert spent[-1] < 25  # two 10 s deadlines and a backoff, not a body at 2 s a byte


def test_a_preview_whose_paging_never_ends_stops_with_a_clear_error(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED, repeat_page_key=True))
    ids = [*users(sandbox, "active", 2), "no-such-user"]  # not found: the whole list is read
    job = make_job(tmp_path, ids, list_page_size=10)
    with pytest.raises(StoppedError, match="the user list does not end"):
        preview_job(job, context(sandbox))
    lists = [r for r in sandbox.requests if r.path == "/v1/users/list"]
    assert len(lists) == 3  # the preflight read, page 1, page 2 (which repeats page 1's key)
    assert not [p for p in job.report_dir.iterdir() if p.is_dir()]
