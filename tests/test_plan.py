"""The plan stage: verdicts, state reading by paging, the sealed plan file and its checks."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pcxbatch.errors import StoppedError, UnusableError
from pcxbatch.listing import PagingError, read_states
from pcxbatch.model import PlanRow, UsersPage, Verdict
from pcxbatch.plan import (
    Plan,
    check_age,
    check_second_person,
    load_plan,
    seal,
    undo_status,
    verdict,
)


@dataclass(frozen=True)
class User:
    user_id: str
    status: str


@dataclass(frozen=True)
class Page:
    """One page as ``listing.Page`` reads it."""

    users: list[User]
    key: str | None
    total: int | None = None


class Pages:
    """A fake ``list_users`` over a fixed population, recording every call."""

    def __init__(self, users: list[User], page: int) -> None:
        self.users, self.page, self.calls = users, page, 0

    async def list_users(
        self,
        *,
        status: str | None = None,
        org_id: str | None = None,
        limit: int = 100,
        last_evaluated_key: str | None = None,
    ) -> Page:
        self.calls += 1
        start = int(last_evaluated_key or 0)
        end = start + min(limit, self.page)
        return Page(self.users[start:end], str(end) if end < len(self.users) else None)


def test_verdicts() -> None:
    assert verdict("inactive", "active") is Verdict.WILL_CHANGE
    assert verdict("inactive", "inactive") is Verdict.UNCHANGED
    assert verdict("active", None) is Verdict.NOT_FOUND


def test_read_states_pages_until_every_wanted_user_is_seen() -> None:
    users = [User(f"u{i}", "active" if i % 2 else "inactive") for i in range(100)]
    pages = Pages(users, page=10)
    found, read = asyncio.run(read_states(pages, {"u3", "u14"}, page_size=10))
    assert found == {"u3": "active", "u14": "inactive"}
    assert read == pages.calls == 2  # stopped as soon as both were seen


def test_read_states_reads_everything_to_know_a_user_is_missing() -> None:
    pages = Pages([User(f"u{i}", "active") for i in range(25)], page=10)
    progress: list[tuple[int, int, int]] = []
    found, read = asyncio.run(
        read_states(pages, {"u1", "nobody"}, page_size=10, on_page=lambda *p: progress.append(p))
    )
    assert found == {"u1": "active"} and read == 3
    assert progress == [(1, 10, 1), (2, 20, 1), (3, 25, 1)]  # pages, users listed, found


class BrokenPages:
    """A list whose paging never ends: the same key again (``repeat``), or ever new keys over
    empty pages while claiming ``total`` users."""

    def __init__(self, *, repeat: bool, total: int = 5) -> None:
        self.repeat, self.total, self.calls = repeat, total, 0

    async def list_users(
        self,
        *,
        status: str | None = None,
        org_id: str | None = None,
        limit: int = 100,
        last_evaluated_key: str | None = None,
    ) -> UsersPage:
        self.calls += 1
        if self.calls > 1000:
            raise AssertionError("read_states is looping")
        key = "k1" if self.repeat else f"k{self.calls}"
        return UsersPage([], key, self.total)


@pytest.mark.parametrize("repeat", [True, False], ids=["same key again", "far past total"])
def test_paging_that_never_ends_is_stopped_with_a_clear_error(repeat: bool) -> None:
    pages = BrokenPages(repeat=repeat, total=5)
    with pytest.raises(PagingError, match="the user list does not end") as stopped:
        asyncio.run(read_states(pages, {"u1"}, page_size=10))
    assert isinstance(stopped.value, StoppedError)  # exit 3: nothing was changed
    assert pages.calls == (2 if repeat else 13)  # 5 users fit one page; 10 spare pages


def a_plan(**changes: Any) -> Plan:
    row = PlanRow(
        2, "u1", "deactivate", "inactive", "", "ops", "active", Verdict.WILL_CHANGE, "", ()
    )
    plan = Plan(
        job={"require_second_person": True},
        fingerprint={},
        input={"path": "hits.csv", "file": "hits.csv", "sha256": "0" * 64, "sheet": None},
        columns=["user_id"],
        target="https://api.example.com/v1",
        previewed_by="ana",
        previewed_with="API key pcx_abc_…",
        previewed_at="2026-11-23T10:00:00+00:00",
        preview_dir="reports/x",
        counts={"will_change": 1},
        rows=[row],
    )
    return replace(plan, **changes)


def sealed(tmp_path: Path, plan: Plan | None = None) -> Path:
    path = tmp_path / "plan.json"
    text, _digest = seal(plan or a_plan())
    path.write_text(text)
    return path


def test_a_sealed_plan_loads_and_any_edit_is_refused(tmp_path: Path) -> None:
    path = sealed(tmp_path)
    loaded = load_plan(path)
    assert loaded.previewed_by == "ana"
    assert loaded.rows[0].verdict is Verdict.WILL_CHANGE and loaded.rows[0].user_id == "u1"
    body = json.loads(path.read_text())
    body["rows"][0]["target_status"] = "active"
    path.write_text(json.dumps(body))
    with pytest.raises(UnusableError, match="hash does not match"):
        load_plan(path)
    path.write_text("{not json")
    with pytest.raises(UnusableError, match="not a pcxbatch plan file"):
        load_plan(path)


def test_plan_age_limit() -> None:
    plan = a_plan()
    at = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    check_age(plan, timedelta(hours=24), now=at + timedelta(hours=23))
    with pytest.raises(UnusableError, match=r"25\.0 h old, older than the 24 h allowed"):
        check_age(plan, timedelta(hours=24), now=at + timedelta(hours=25))


def test_second_person_rule(tmp_path: Path) -> None:
    plan = load_plan(sealed(tmp_path))
    check_second_person(plan, "ben")
    with pytest.raises(UnusableError, match="second person"):
        check_second_person(plan, "ana")
    check_second_person(replace(plan, job={"require_second_person": False}), "ana")


@pytest.mark.parametrize(
    ("seen", "status", "why"),
    [
        ("active", "active", ""),
        ("inactive", "inactive", ""),
        ("not_verified", "not_verified", ""),
        ("pending", "", "cannot be restored"),
        ("sandbox", "", "cannot be restored"),
    ],
)
def test_undo_status(seen: str, status: str, why: str) -> None:
    got_status, got_why = undo_status(seen)
    assert got_status == status and why in got_why
