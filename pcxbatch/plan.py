"""The plan stage: what each checked row would do to its user, and the reviewed plan file.

In: checked rows (from ``validate``), the users' current statuses (read with
:func:`read_states` through any client that can page ``GET /users/list``), who is previewing.
Out: a :class:`Verdict` per row (``will_change`` from → to, ``unchanged``, ``not_found``, or the
row's ``invalid``/``duplicate``), transition counts for the reviewer, and a plan file that
``pcxbatch apply`` sends exactly, refusing it when it was altered, its input changed, or it is
too old.

The plan file is JSON with a SHA-256 over its canonical form: it shows accidental or careless
edits, not a determined forger (anyone can recompute it); who may apply is the job's rule.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from pcxbatch.errors import UnusableError
from pcxbatch.model import DEACTIVATED_STATUS, SETTABLE_STATUSES, Action, Verdict
from pcxbatch.rules import DEFAULT_PAGE_SIZE

PLAN_FORMAT = 1


class UserLike(Protocol):
    """What a listed user offers (``pcxbatch.client.UserState``)."""

    @property
    def user_id(self) -> str: ...
    @property
    def status(self) -> str: ...


class StateReader(Protocol):
    """A client that can page ``GET /users/list`` (``pcxbatch.client.PcxClient``)."""

    async def list_users(
        self,
        *,
        status: str | None = None,
        org_id: str | None = None,
        limit: int = 100,
        last_evaluated_key: str | None = None,
    ) -> tuple[Sequence[UserLike], str | None]: ...


async def read_states(
    client: StateReader,
    wanted: Collection[str],
    *,
    org_id: str | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    on_page: Callable[[int, int, int], None] | None = None,
) -> tuple[dict[str, str], int]:
    """Current status of each user in ``wanted`` that exists; also how many pages were read.

    PCX has no single-user read, so this pages ``GET /users/list`` (filtered by ``org_id`` when
    the job names one) until every wanted user was seen or the list ends. A user never seen
    does not exist (within the filter). ``on_page(pages, users listed, wanted found)`` is
    called after each page, for progress.
    """
    listed = 0
    found: dict[str, str] = {}
    key: str | None = None
    pages = 0
    while True:
        users, key = await client.list_users(org_id=org_id, limit=page_size, last_evaluated_key=key)
        pages += 1
        listed += len(users)
        for user in users:
            if user.user_id in wanted:
                found[user.user_id] = user.status
        if on_page is not None:
            on_page(pages, listed, len(found))
        if key is None or len(found) == len(wanted):
            return found, pages


def verdict(target_status: str | None, seen: str | None) -> Verdict:
    """``will_change`` unless the user is missing or already has ``target_status``."""
    if seen is None:
        return Verdict.NOT_FOUND
    if seen == target_status:
        return Verdict.UNCHANGED
    return Verdict.WILL_CHANGE


def transitions(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str, int]]:
    """Count (from, to) status pairs, most frequent first, for the reviewer's summary."""
    counted = Counter(pairs)
    return [(a, b, n) for (a, b), n in counted.most_common()]


def operator() -> str:
    """Who is at the keyboard: ``PCXBATCH_OPERATOR`` if set, else the login name."""
    return os.environ.get("PCXBATCH_OPERATOR") or getpass.getuser()


def plan_hash(body: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical JSON of the plan without its ``hash`` field."""
    canonical = json.dumps(
        {k: v for k, v in body.items() if k != "hash"},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def seal(body: dict[str, Any]) -> str:
    """Add the plan's hash to ``body`` and return the plan file's text."""
    body["format"] = PLAN_FORMAT
    body["hash"] = plan_hash(body)
    return json.dumps(body, ensure_ascii=False, indent=1) + "\n"


def load_plan(path: Path) -> dict[str, Any]:
    """Read a plan file and check it was not altered; :class:`UnusableError` otherwise."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnusableError(f"{path}: no such plan file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnusableError(f"{path}: not a pcxbatch plan file ({exc})") from None
    if not isinstance(body, dict) or body.get("format") != PLAN_FORMAT or "hash" not in body:
        raise UnusableError(f"{path}: not a pcxbatch plan file")
    if plan_hash(body) != body["hash"]:
        raise UnusableError(
            f"{path}: the plan was changed after it was written (its hash does not match);"
            " preview again to make a new plan"
        )
    return body


def check_age(body: Mapping[str, Any], max_age: timedelta, now: datetime | None = None) -> None:
    """Refuse a plan older than ``max_age``: the users' state it saw may be stale."""
    previewed = datetime.fromisoformat(body["previewed_at"])
    age = (now or datetime.now(UTC)) - previewed
    if age > max_age:
        hours = age.total_seconds() / 3600
        limit = max_age.total_seconds() / 3600
        raise UnusableError(
            f"the plan is {hours:.1f} h old, older than the {limit:g} h allowed"
            " (max_plan_age_hours in the job, or --max-age); preview again"
        )


def check_second_person(body: Mapping[str, Any], applier: str) -> None:
    """Refuse when the job requires a second person and the applier previewed the plan."""
    if body["job"].get("require_second_person") and body["previewed_by"] == applier:
        raise UnusableError(
            f"the job requires a second person: {applier} previewed this plan and may not apply"
            " it; ask a colleague to run pcxbatch apply"
        )


def undo_status(seen: str) -> tuple[str, str]:
    """How to put a user back to ``seen``: (status for the undo file, why not if empty)."""
    if seen == DEACTIVATED_STATUS or seen in SETTABLE_STATUSES:
        return seen, ""
    return "", f"cannot be restored: PCX has no call that sets the status {seen!r}"


def undo_action(seen: str) -> str:
    """The undo row's action: a deactivation to restore ``inactive``, else a status change."""
    return (Action.DEACTIVATE if seen == DEACTIVATED_STATUS else Action.SET_STATUS).value


def now_iso() -> str:
    """The current UTC time, as plan files and summaries write it."""
    return datetime.now(UTC).isoformat(timespec="seconds")
