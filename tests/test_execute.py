"""The execute stage against a scripted client: outcomes, the journal's promises, stopping."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from pcxbatch.errors import AuthError, StoppedError
from pcxbatch.execute import FailureGuard, execute
from pcxbatch.journal import Journal
from pcxbatch.model import Action, Item, Outcome, RowResult


@dataclass(frozen=True)
class Answer:
    http_status: int | None
    attempts: int = 1
    request_id: str | None = "req-1"
    message: str = ""
    ambiguous: bool = False
    throttled: int = 0


class ScriptedClient:
    """Answers each user with a scripted Answer (or raises), and checks the journal first."""

    def __init__(self, journal_path: Path, script: dict[str, Answer | Exception]) -> None:
        self.script = script
        self.calls: list[tuple[str, str, dict[str, str | None]]] = []
        self.intent_seen: list[bool] = []
        self._db = sqlite3.connect(journal_path)

    def _intent_recorded(self, user_id: str) -> bool:
        row = self._db.execute("SELECT sent FROM rows WHERE user_id = ?", (user_id,)).fetchone()
        return bool(row and row[0])

    async def _answer(self, endpoint: str, user_id: str, body: dict[str, str | None]) -> Answer:
        # The journal must hold the intent before the request leaves.
        self.intent_seen.append(self._intent_recorded(user_id))
        self.calls.append((endpoint, user_id, body))
        await asyncio.sleep(0)
        answer = self.script.get(user_id, Answer(200))
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def deactivate(self, user_id: str, *, updated_by: str, reason: str | None) -> Answer:
        return await self._answer(
            "deactivate", user_id, {"updated_by": updated_by, "reason": reason}
        )

    async def set_status(self, user_id: str, *, status: str, reason: str | None) -> Answer:
        return await self._answer("activate", user_id, {"status": status, "reason": reason})


def make_journal(tmp_path: Path, items: list[Item]) -> Journal:
    journal = Journal(tmp_path / "journal.sqlite")
    journal.add_items(replace(item, values=(item.user_id,)) for item in items)
    return journal


def deact(row: int, user: str) -> Item:
    return Item(row, user, Action.DEACTIVATE, "inactive", "fraud", "ops@x")


def setst(row: int, user: str, status: str = "rejected") -> Item:
    return Item(row, user, Action.SET_STATUS, status, "kyc", None)


def run(
    journal: Journal,
    client: ScriptedClient,
    *,
    concurrency: int = 4,
    stop: asyncio.Event | None = None,
    on_result: Callable[[RowResult], None] = lambda _r: None,
    guard: FailureGuard | None = None,
) -> None:
    async def main() -> None:
        await execute(
            journal,
            client,
            concurrency=concurrency,
            stop=stop or asyncio.Event(),
            on_result=on_result,
            guard=guard,
        )

    asyncio.run(main())


def outcomes(journal: Journal) -> dict[str, tuple[str, str]]:
    return {line.user_id: (line.outcome.value, line.message) for line in journal.lines()}


def test_each_answer_becomes_the_right_outcome(tmp_path: Path) -> None:
    items = [
        deact(2, "ok"),
        deact(3, "already"),
        deact(4, "ghost-then-409"),
        deact(5, "missing"),
        setst(6, "kyc-ok"),
        setst(7, "kyc-409"),
        deact(8, "gone-quiet"),
        Item(9, "bad id", None, None, None, None, Outcome.INVALID, "row 9: bad"),
    ]
    journal = make_journal(tmp_path, items)
    client = ScriptedClient(
        journal.path,
        {
            "already": Answer(409, message="User is already inactive"),
            "ghost-then-409": Answer(409, attempts=2, ambiguous=True, message="already inactive"),
            "missing": Answer(404, message="User not found"),
            "kyc-409": Answer(409, message="Invalid transition"),
            "gone-quiet": Answer(None, attempts=8, ambiguous=True, message="connection reset"),
        },
    )
    run(journal, client)
    got = outcomes(journal)
    assert got["ok"][0] == "applied"
    assert got["already"][0] == "unchanged"
    assert got["ghost-then-409"][0] == "applied"  # its own first attempt made the change
    assert got["missing"] == ("not_found", "user not found (404: User not found)")
    assert got["kyc-ok"] == ("applied", "status set to rejected")
    assert got["kyc-409"][0] == "failed"
    assert "Invalid transition" in got["kyc-409"][1]
    assert got["gone-quiet"][0] == "failed"
    assert "may have been applied" in got["gone-quiet"][1]
    assert got["bad id"] == ("invalid", "row 9: bad")
    assert "bad id" not in {c[1] for c in client.calls}  # invalid rows are never sent
    assert all(client.intent_seen), "a request left before its intent was recorded"
    assert [line.row for line in journal.lines()] == [2, 3, 4, 5, 6, 7, 8, 9]


def test_bodies_carry_the_rows_values(tmp_path: Path) -> None:
    journal = make_journal(tmp_path, [deact(2, "a"), setst(3, "b", "active")])
    client = ScriptedClient(journal.path, {})
    run(journal, client)
    assert sorted(client.calls) == [
        ("activate", "b", {"status": "active", "reason": "kyc"}),
        ("deactivate", "a", {"updated_by": "ops@x", "reason": "fraud"}),
    ]


def test_auth_failure_stops_the_run_and_leaves_the_rest_resumable(tmp_path: Path) -> None:
    items = [deact(r, f"u{r}") for r in range(2, 40)]
    journal = make_journal(tmp_path, items)
    client = ScriptedClient(journal.path, {"u5": AuthError(401, "Unauthorized")})
    with pytest.raises(AuthError):
        run(journal, client, concurrency=1)
    counts = journal.counts()
    assert counts["applied"] == 3  # u2..u4 went through before the 401
    assert counts["not_attempted"] == len(items) - 3
    # The refused row was not applied: it goes back to plain pending, not "maybe sent".
    pending = {p.user_id: p for p in journal.pending()}
    assert pending["u5"].resent is False
    assert len(client.calls) == 4


def test_stop_sends_nothing_more_and_keeps_the_rest_pending(tmp_path: Path) -> None:
    journal = make_journal(tmp_path, [deact(r, f"u{r}") for r in range(2, 102)])
    client = ScriptedClient(journal.path, {})
    stop = asyncio.Event()
    seen: list[RowResult] = []

    def on_result(result: RowResult) -> None:
        seen.append(result)
        if len(seen) == 10:
            stop.set()

    run(journal, client, concurrency=2, stop=stop, on_result=on_result)
    counts = journal.counts()
    assert counts["applied"] == len(client.calls) <= 12  # in-flight requests finish
    assert counts["not_attempted"] == 100 - counts["applied"]


def test_rows_a_previous_run_sent_without_an_answer_are_sent_again(tmp_path: Path) -> None:
    journal = make_journal(tmp_path, [deact(2, "a"), deact(3, "b"), deact(4, "c")])
    journal.commit(intents=[2, 3], results=[RowResult(2, Outcome.APPLIED, 200, 1, "deactivated")])
    client = ScriptedClient(journal.path, {"b": Answer(409, message="already inactive")})
    run(journal, client)
    got = outcomes(journal)
    assert sorted(c[1] for c in client.calls) == ["b", "c"]  # never the answered row
    assert got["b"][0] == "applied"  # the 409 echoes the earlier run's request
    assert "previous run" in got["b"][1]


def test_failure_guard_stops_a_run_that_fails_row_after_row(tmp_path: Path) -> None:
    items = [deact(r, f"u{r}") for r in range(2, 302)]
    journal = make_journal(tmp_path, items)
    client = ScriptedClient(journal.path, {f"u{r}": Answer(500) for r in range(2, 302)})
    with pytest.raises(StoppedError, match="of the last 20 rows failed"):
        run(journal, client, concurrency=2, guard=FailureGuard(threshold=0.5, window=20))
    assert len(client.calls) < 30
    assert journal.counts()["not_attempted"] > 250


def test_failure_guard_judges_a_file_smaller_than_its_window(tmp_path: Path) -> None:
    items = [deact(r, f"u{r}") for r in range(2, 32)]  # 30 rows, a window of 50
    journal = make_journal(tmp_path, items)
    client = ScriptedClient(journal.path, {f"u{r}": Answer(500) for r in range(2, 32)})
    with pytest.raises(StoppedError, match="15 of the last 15 rows failed"):
        run(journal, client, concurrency=1, guard=FailureGuard(threshold=0.5, window=50))
    assert len(client.calls) == 15  # half the file: the other half is spared
    assert journal.counts()["not_attempted"] == 15


def test_failure_guard_leaves_a_tiny_file_alone(tmp_path: Path) -> None:
    journal = make_journal(tmp_path, [deact(r, f"u{r}") for r in range(2, 8)])
    client = ScriptedClient(journal.path, {f"u{r}": Answer(500) for r in range(2, 8)})
    run(journal, client, concurrency=1, guard=FailureGuard(threshold=0.5, window=50))
    assert journal.counts()["failed"] == 6  # 6 rows: over before a stop could spare any
