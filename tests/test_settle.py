"""Reads around the sends, in-process on a virtual clock: the decision table as a user meets it.

Each test runs the runner's operations against an in-process sandbox with the faults of issue 11
switched on, and checks every row against the truth the sandbox holds: the status each user had
before the run and the one it has after. No ``applied`` for a user already in the wanted state,
no ``failed`` for a change that was made, and what could not be settled says so.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_runner import RecordingUI as UI  # the runner tests' UI: says yes, keeps the results
from vclock import run_virtual

from pcxbatch.client import PcxClient, RetryPolicy
from pcxbatch.config import Job, load_job
from pcxbatch.context import RunContext, RunResult, job_limiter
from pcxbatch.credentials import Credentials
from pcxbatch.errors import ConfigError, ExitCode
from pcxbatch.journal import JOURNAL_NAME
from pcxbatch.model import RowResult
from pcxbatch.runner import apply_plan, preview_job, resume_run, run_job
from pcxbatch.sandbox import INPROCESS_BASE_URL, Sandbox, SandboxConfig, inprocess_transport
from pcxbatch.sandbox.faults import PAYOUT_PENDING

MISSING = "00000000-0000-4000-8000-00000000000"  # + one digit: users PCX does not have


class Clock:
    """Wall-clock time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def context(
    sandbox: Sandbox,
    ui: UI | None = None,
    clock: Clock | None = None,
    wrap: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] = lambda t: t,
) -> RunContext:
    def factory(job: Job, base_url: str, credentials: Credentials, *, connections: int) -> Any:
        return PcxClient(
            base_url,
            credentials,
            limiter=job_limiter(job),
            retry=RetryPolicy(max_attempts=job.max_attempts, jitter=False),
            transport=wrap(inprocess_transport(sandbox)),
            max_connections=connections,
            id_pattern=job.id_pattern,
        )

    return RunContext(
        ui=ui or UI(),
        credentials=Credentials(api_key=sandbox.api_key),
        clock=clock or Clock(),
        operator="ana",
        client_factory=factory,
        run_async=run_virtual,
    )


def make_job(tmp_path: Path, rows: list[tuple[str, str]], **settings: Any) -> Job:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "hits.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["User ID", "Status"])
        writer.writerows(rows)
    flags: dict[str, Any] = {
        "report_dir": tmp_path / "reports",
        "updated_by": "ops",
        "base_url": INPROCESS_BASE_URL,
        "allow_insecure_http": True,
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


def summary(result: RunResult) -> dict[str, Any]:
    assert result.run_dir is not None
    return dict(json.loads((result.run_dir / "summary.json").read_text()))


def every_kind_of_row(sandbox: Sandbox, n: int) -> list[tuple[str, str]]:
    """Deactivations of users in every status (already inactive ones too), status changes, and
    users PCX does not have."""
    rows = []
    for i, (uid, user) in enumerate(list(sandbox.users.items())[:n]):
        if i % 4 == 3 and user["status"] in ("active", "pending_verification"):
            rows.append((uid, "rejected"))
        else:
            rows.append((uid, "inactive"))
    return rows + [(f"{MISSING}{d}", "inactive") for d in range(4)]


def check_against_the_truth(
    rows: list[dict[str, str]], before: dict[str, str], sandbox: Sandbox
) -> None:
    """Every row's outcome and ``confirmed`` agree with the sandbox, before and after."""
    for r in rows:
        uid, wanted, outcome = r["user_id"], r["target_status"], r["outcome"]
        was, now = before.get(uid), sandbox.status_of(uid)
        assert r["confirmed"] in ("yes", "no"), r
        if outcome == "not_found":
            assert was is None and r["confirmed"] == "yes", r
        elif outcome == "unchanged":
            assert was == wanted == now and r["confirmed"] == "yes", r
        elif outcome == "applied":
            assert now == wanted, r
            if r["confirmed"] == "yes":
                assert was != wanted, r  # never "applied" for a user already in that state
            else:
                assert "either" in r["message"], r
        else:
            assert outcome == "failed", r
            if r["confirmed"] == "yes":
                assert now != wanted, r  # never a plain "failed" for a change that was made
            else:
                assert "either" in r["message"], r


def puts(sandbox: Sandbox) -> Counter[str | None]:
    return Counter(r.user_id for r in sandbox.requests if r.method == "PUT")


def lists(sandbox: Sandbox) -> list[str]:
    """The status reads' queries (not the preflight's ``limit=1`` probe, made before any run
    that sends, whatever ``read_before_send`` says)."""
    return [r.query for r in sandbox.requests if r.method == "GET" and r.query != "limit=1"]


# --- the reproduced run ----------------------------------------------------------------------


def test_the_reproduced_run_reports_no_applied_for_users_already_inactive(tmp_path: Path) -> None:
    """Issue 11: 5% 502/503, 3% applied-then-504, 2% dropped connections, 304 rows."""
    sandbox = Sandbox(
        SandboxConfig(users=300, seed=11, fail_rate=0.05, ghost_rate=0.03, drop_rate=0.02)
    )
    before = {uid: u["status"] for uid, u in sandbox.users.items()}
    rows = [(uid, "inactive") for uid in before] + [(f"{MISSING}{d}", "inactive") for d in range(4)]
    result = run_job(make_job(tmp_path, rows), context(sandbox))
    got = results(result)
    check_against_the_truth(got, before, sandbox)
    assert all(r["confirmed"] == "yes" for r in got)
    already = [uid for uid, status in before.items() if status == "inactive"]
    assert already and not any(puts(sandbox)[uid] for uid in already)  # read, never sent
    assert result.exit_code is ExitCode.FILE_PROBLEMS  # only the 4 unknown users
    assert Counter(r["outcome"] for r in got)["not_found"] == 4
    assert summary(result)["unconfirmed"] == 0


def test_every_open_answer_is_settled_by_one_read_after_the_sends(tmp_path: Path) -> None:
    config = SandboxConfig(
        users=160,
        seed=5,
        fail_rate=0.05,
        ghost_rate=0.05,
        drop_rate=0.05,
        refuse_rate=0.15,
        wrong_status_rate=0.08,
        html_rate=0.08,
        applied_503_rate=0.08,
        huge_rate=0.08,
    )
    sandbox = Sandbox(config)
    before = {uid: u["status"] for uid, u in sandbox.users.items()}
    result = run_job(make_job(tmp_path, every_kind_of_row(sandbox, 150)), context(sandbox))
    got = results(result)
    check_against_the_truth(got, before, sandbox)
    assert all(r["confirmed"] == "yes" for r in got)
    refused = [r for r in got if PAYOUT_PENDING in r["message"]]
    assert refused and all(r["outcome"] == "failed" for r in refused)
    outcomes = Counter(r["outcome"] for r in got)
    assert outcomes["applied"] > 50 and outcomes["failed"] >= len(refused)
    assert result.exit_code is ExitCode.FAILED_ROWS
    reads = summary(result)["status_reads"]
    assert [read["when"] for read in reads] == ["before", "after"]
    assert all("skipped" not in read for read in reads)


def test_without_any_read_nothing_is_guessed(tmp_path: Path) -> None:
    config = SandboxConfig(
        users=120, seed=5, ghost_rate=0.1, refuse_rate=0.15, wrong_status_rate=0.1, html_rate=0.1
    )
    sandbox = Sandbox(config)
    before = {uid: u["status"] for uid, u in sandbox.users.items()}
    job = make_job(tmp_path, every_kind_of_row(sandbox, 110), read_before_send="never")
    result = run_job(job, context(sandbox))
    got = results(result)
    check_against_the_truth(got, before, sandbox)
    unconfirmed = [r for r in got if r["confirmed"] == "no"]
    assert unconfirmed and result.exit_code is ExitCode.FAILED_ROWS
    for r in unconfirmed:  # a 200 that cannot tell, or an open answer nothing read back
        if r["outcome"] == "applied":
            assert "its status before the run was not read" in r["message"], r
        else:
            assert "read_before_send: never" in r["message"], r
    assert not lists(sandbox)  # never means never
    assert summary(result)["unconfirmed"] == len(unconfirmed)


# --- reading before sending --------------------------------------------------------------------


def test_users_read_in_the_wanted_state_or_absent_are_decided_without_a_request(
    tmp_path: Path,
) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=4))
    before = {uid: u["status"] for uid, u in sandbox.users.items()}
    active = [uid for uid, s in before.items() if s == "active"][:6]
    inactive = [uid for uid, s in before.items() if s == "inactive"][:2]
    rows = [(uid, "inactive") for uid in [*active, *inactive]] + [(f"{MISSING}1", "inactive")]
    result = run_job(make_job(tmp_path, rows), context(sandbox))
    got = {r["user_id"]: r for r in results(result)}
    assert set(puts(sandbox)) == set(active)
    for uid in inactive:
        assert got[uid]["outcome"] == "unchanged" and "not sent" in got[uid]["message"]
        assert got[uid]["http_status"] == "" and got[uid]["attempts"] == "0"
    assert got[f"{MISSING}1"]["outcome"] == "not_found"
    assert all(got[uid]["message"] == "deactivated (was active)" for uid in active)
    assert result.run_dir is not None
    with sqlite3.connect(result.run_dir / JOURNAL_NAME) as db:
        seen = dict(db.execute("SELECT user_id, seen_at FROM rows WHERE seen_status IS NOT NULL"))
    assert set(seen) == set(active) and set(seen.values()) == {"2026-12-01T09:00:00+00:00"}


def test_a_job_org_id_scopes_the_read(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=4))
    users = list(sandbox.users.values())
    org = users[0]["org_id"]
    inside = [u["user_id"] for u in users if u["status"] == "active" and u["org_id"] == org]
    outside = [u["user_id"] for u in users if org not in (u["org_id"], *u["org_ids"])]
    rows = [(uid, "inactive") for uid in [*inside[:3], *outside[:2]]]
    result = run_job(make_job(tmp_path, rows, org_id=org), context(sandbox))
    got = {r["user_id"]: r["outcome"] for r in results(result)}
    assert [got[uid] for uid in inside[:3]] == ["applied"] * 3
    assert [got[uid] for uid in outside[:2]] == ["not_found"] * 2
    assert set(puts(sandbox)) == set(inside[:3])
    assert all(f"org_id={org}" in query for query in lists(sandbox))


def interrupt_after(n: int) -> UI:
    def maybe_stop(_result: RowResult) -> None:
        if len(ui.results) == n:
            os.kill(os.getpid(), signal.SIGTERM)

    ui = UI(on_result=maybe_stop)
    return ui


def test_a_resume_reads_again_only_when_the_read_is_older_than_max_read_age(
    tmp_path: Path,
) -> None:
    sandbox = Sandbox(SandboxConfig(users=80, seed=4, latency_ms=20))
    active = [uid for uid, u in sandbox.users.items() if u["status"] == "active"][:40]
    job = make_job(tmp_path, [(uid, "inactive") for uid in active], concurrency=2)
    clock = Clock()
    first = run_job(job, context(sandbox, interrupt_after(4), clock))
    assert first.exit_code is ExitCode.STOPPED and len(lists(sandbox)) == 1
    clock.now += timedelta(minutes=2)  # younger than max_read_age (5 minutes): no new read
    second = run_job(job, context(sandbox, interrupt_after(4), clock))
    assert second.run_dir == first.run_dir and len(lists(sandbox)) == 1
    # Someone else deactivates a user meanwhile; later than max_read_age, the resume reads again.
    remaining = [r["user_id"] for r in results(second) if r["outcome"] == "not_attempted"]
    sandbox.set_status(remaining[-1], "inactive")
    clock.now += timedelta(minutes=10)
    third = run_job(job, context(sandbox, clock=clock))
    assert len(lists(sandbox)) == 2 and third.exit_code is ExitCode.OK
    got = {r["user_id"]: r for r in results(third)}
    assert got[remaining[-1]]["outcome"] == "unchanged"
    assert "changed since the read at 2026-12-01T09:00:00+00:00" in got[remaining[-1]]["message"]
    assert puts(sandbox)[remaining[-1]] == 0
    assert max(puts(sandbox).values()) == 1


def test_apply_reads_again_when_the_preview_is_older_than_max_read_age(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=4))
    active = [uid for uid, u in sandbox.users.items() if u["status"] == "active"][:4]
    clock = Clock()
    job = make_job(tmp_path, [(uid, "inactive") for uid in active])
    preview = preview_job(job, context(sandbox, clock=clock))
    sandbox.set_status(active[0], "inactive")
    clock.now += timedelta(hours=1)
    applied = apply_plan(preview.plan_path, context(sandbox, clock=clock))
    got = results(applied)
    assert [r["outcome"] for r in got] == ["unchanged", "applied", "applied", "applied"]
    assert "changed since the preview" in got[0]["message"] and puts(sandbox)[active[0]] == 0


# --- the cost rule -------------------------------------------------------------------------------


def test_a_full_read_too_costly_gives_way_to_reads_of_the_wanted_status(tmp_path: Path) -> None:
    """3000 users are 30 pages: too many for 20 rows. The inactive ones are 2: before the sends
    they show which users need no request (and that the others were not inactive), after them
    they settle what the 504s left open."""
    sandbox = Sandbox(SandboxConfig(users=3000, seed=4, ghost_rate=0.3))
    before = {uid: u["status"] for uid, u in sandbox.users.items()}
    picked = [uid for uid, s in before.items() if s == "active"][:16]
    picked += [uid for uid, s in before.items() if s == "inactive"][:4]
    job = make_job(tmp_path, [(uid, "inactive") for uid in picked], list_page_size=100)
    result = run_job(job, context(sandbox))
    got = results(result)
    check_against_the_truth(got, before, sandbox)
    assert all(r["confirmed"] == "yes" for r in got)
    reads = summary(result)["status_reads"]
    assert [(read["when"], read.get("status"), read["pages"]) for read in reads] == [
        ("before", None, 30),
        ("before", ["inactive"], 2),
        ("after", ["inactive"], 2),
    ]
    assert "more than a quarter of the 20 rows to send" in reads[0]["skipped"]
    assert all("status=inactive" in query for query in lists(sandbox)[1:])
    outcomes = Counter(r["outcome"] for r in got)
    assert outcomes == {"applied": 16, "unchanged": 4}
    assert all(puts(sandbox)[uid] == 0 for uid in picked[16:])  # already inactive: not sent
    assert any("a read after the sends" in r["message"] for r in got)  # 504s, settled


def test_always_reads_whatever_it_costs_and_what_no_read_settles_says_why(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=3000, seed=4))
    inactive = [uid for uid, u in sandbox.users.items() if u["status"] == "inactive"][:2]
    rows = [(uid, "inactive") for uid in inactive]
    auto = run_job(make_job(tmp_path / "auto", rows, list_page_size=100), context(sandbox))
    assert auto.exit_code is ExitCode.FAILED_ROWS  # two 409s that no read could settle
    for r in results(auto):
        assert (r["outcome"], r["confirmed"]) == ("failed", "no")
        assert "either the user is already inactive" in r["message"]
        assert "more than a quarter of the 2 rows sent" in r["message"]
    job = make_job(tmp_path / "always", rows, list_page_size=100, read_before_send="always")
    always = run_job(job, context(sandbox))
    assert [r["outcome"] for r in results(always)] == ["unchanged", "unchanged"]
    assert always.exit_code is ExitCode.OK


# --- stops, kills and resumes --------------------------------------------------------------------


class RefuseAfter(httpx.AsyncBaseTransport):
    """Passes ``n`` PUTs to the sandbox, then answers 401 to everything (a key rotated)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, n: int) -> None:
        self.inner = inner
        self.left = n

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            if self.left <= 0:
                return httpx.Response(401, json={"message": "Unauthorized"})
            self.left -= 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_504_then_a_401_stays_maybe_applied_through_the_stop_and_the_resume(
    tmp_path: Path,
) -> None:
    sandbox = Sandbox(SandboxConfig(users=40, seed=4, ghost_rate=1.0))
    active = [uid for uid, u in sandbox.users.items() if u["status"] == "active"][:3]
    job = make_job(tmp_path, [(uid, "inactive") for uid in active], concurrency=1)
    clock = Clock()
    stopped = run_job(job, context(sandbox, clock=clock, wrap=lambda t: RefuseAfter(t, 1)))
    assert stopped.exit_code is ExitCode.STOPPED
    first = results(stopped)[0]
    assert sandbox.status_of(active[0]) == "inactive"  # the 504 did make the change
    assert (first["outcome"], first["confirmed"]) == ("not_attempted", "no")
    assert "may have been applied" in first["message"]
    sandbox.config = replace(sandbox.config, ghost_rate=0.0)  # the gateway recovers
    clock.now += timedelta(minutes=10)
    assert stopped.run_dir is not None
    resumed = resume_run(stopped.run_dir, context(sandbox, clock=clock))
    got = results(resumed)
    assert [(r["outcome"], r["confirmed"]) for r in got] == [("applied", "yes")] * 3
    assert "earlier attempt" in got[0]["message"] and "(was active)" in got[0]["message"]
    assert puts(sandbox)[active[0]] == 1  # decided by the read: not sent again


def test_open_rows_left_by_a_kill_are_settled_by_the_resume_without_sending(
    tmp_path: Path,
) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=4, ghost_rate=0.5))
    before = {uid: u["status"] for uid, u in sandbox.users.items()}
    active = [uid for uid, s in before.items() if s == "active"][:12]
    job = make_job(tmp_path, [(uid, "inactive") for uid in active])
    done = run_job(job, context(sandbox))
    assert done.run_dir is not None
    # As if killed after the answers were recorded and before the read that settles them.
    with sqlite3.connect(done.run_dir / JOURNAL_NAME) as db:
        db.execute(
            "UPDATE rows SET outcome = 'failed', confirmed = 0, open = 1, answer_kind ="
            " 'undelivered', answer_text = 'HTTP 504 after 8 attempt(s)', earlier = ?,"
            " uncertain = 1",
            ("an earlier attempt got no clear answer",),
        )
        db.execute("UPDATE meta SET value = '\"ready\"' WHERE key = 'state'")
    sent = sum(puts(sandbox).values())
    resumed = run_job(job, context(sandbox))
    assert resumed.run_dir == done.run_dir and sum(puts(sandbox).values()) == sent
    got = results(resumed)
    check_against_the_truth(got, before, sandbox)
    assert [(r["outcome"], r["confirmed"]) for r in got] == [("applied", "yes")] * 12


class FailListsAfter(httpx.AsyncBaseTransport):
    """Passes ``left[0]`` listings to the sandbox (counted over every client of the run), then
    answers every listing 503."""

    def __init__(self, inner: httpx.AsyncBaseTransport, left: list[int]) -> None:
        self.inner = inner
        self.left = left

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            if self.left[0] <= 0:
                return httpx.Response(503, json={"message": "Service Unavailable"})
            self.left[0] -= 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_listing_that_fails_means_no_read_never_a_guess(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=4, ghost_rate=0.5))
    before = {uid: u["status"] for uid, u in sandbox.users.items()}
    active = [uid for uid, s in before.items() if s == "active"]
    for n, name, ids in ((1, "settle", active[:10]), (0, "both", active[10:20])):
        # The preflight's probe works; the read before works (or not); the read after the sends
        # fails after every retry.
        job = make_job(tmp_path / name, [(uid, "inactive") for uid in ids], max_attempts=2)
        left = [n + 1]

        def failing(inner: httpx.AsyncBaseTransport, left: list[int] = left) -> FailListsAfter:
            return FailListsAfter(inner, left)

        result = run_job(job, context(sandbox, wrap=failing))
        got = results(result)
        check_against_the_truth(got, before, sandbox)
        assert result.exit_code is ExitCode.FAILED_ROWS
        open_ = [r for r in got if r["confirmed"] == "no" and r["outcome"] == "failed"]
        assert open_ and all("the read to settle it failed" in r["message"] for r in open_)
        assert "skipped" in summary(result)["status_reads"][-1]


def test_the_read_keys_are_checked_with_every_other_job_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        make_job(tmp_path, [], read_before_send="sometimes", max_read_age=-1)
    assert caught.value.problems == [
        "max_read_age: must be between 0 and 525600",
        "read_before_send: must be one of auto, always, never",
    ]
    assert make_job(tmp_path, []).read_before_send == "auto"
    assert make_job(tmp_path, [], read_before_send=" Never ").read_before_send == "never"
    assert make_job(tmp_path, [], read_before_send=True).read_before_send == "always"


class ListsForbidden(httpx.AsyncBaseTransport):
    """A key that may change users but not list them: every ``GET /users/list`` answers 403."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(403, json={"message": "User is not authorized to list users"})
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_key_that_may_not_list_users_reads_nothing_and_settles_nothing(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=4, ghost_rate=0.5))
    before = {uid: u["status"] for uid, u in sandbox.users.items()}
    active = [uid for uid, s in before.items() if s == "active"][:12]
    ui = UI()
    job = make_job(tmp_path, [(uid, "inactive") for uid in active], max_attempts=1)
    result = run_job(job, context(sandbox, ui, wrap=ListsForbidden))
    got = results(result)
    check_against_the_truth(got, before, sandbox)
    assert any("may not list users" in text for text in ui.notices)
    assert len([r for r in sandbox.requests if r.method == "GET"]) == 0  # 403s never reach it
    assert set(puts(sandbox)) == set(active)  # nothing skipped by a read before sending
    assert all("either" in r["message"] for r in got if r["confirmed"] == "no")
    left_open = [r for r in got if r["outcome"] == "failed"]  # the 504s: applied, unseen
    assert left_open and result.exit_code is ExitCode.FAILED_ROWS
    for r in left_open:
        assert r["confirmed"] == "no" and "may not list users" in r["message"], r
    assert [read["skipped"] for read in summary(result)["status_reads"]] == [
        "no read could be made to settle it: the credential may not list users (403)"
    ]
