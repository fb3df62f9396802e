"""Reading users' statuses around the sends: before, to skip what needs no request; after, to
settle what an answer left open.

In: the :class:`~pcxbatch.config.Job` (``read_before_send``, ``max_read_age``, ``org_id``,
``list_page_size``), the run's :class:`~pcxbatch.journal.Journal`, a client that pages
``GET /users/list`` (:class:`Lister`), and the time. Out: the journal updated, and a line per
read in its ``status_reads`` for ``summary.json``.

- :func:`read_before` (before the sends): when some row still to send has no read younger than
  ``max_read_age``, lists the users (``listing.read_states``, filtered by the job's ``org_id``) and
  records each pending row's status and when. A user seen in the wanted state is ``unchanged``
  and one absent from the complete listing is ``not_found``, with no request sent; a row a
  stopped run sent without recording the answer and now seen in the wanted state is decided
  without sending it again (``answers.on_read``).
- :func:`settle_open` (after the sends): one read of just the users whose answers were left
  open, narrowed with ``status=<wanted>``, and each such row settled (``answers.on_settle``), or
  closed as unsettled with both possibilities and why no read was made (``answers.unsettled``).

No read at all when the preflight found that the key may not list users (``can_read``
False, a 403 on the list): nothing is skipped before the sends, and every open row is closed
as unsettled, with both possibilities and ``confirmed`` no.

The cost rule, for both: the first page's ``total`` says how many pages a full read takes; with
``read_before_send: auto`` (the default) the read is made when those pages are no more than a
quarter of the rows to send (before) or sent (after); ``always`` reads whatever it costs,
``never`` never reads. A credential refused during a read stops the run like one refused by a
send; any other failed listing only means there is no read.
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from pcxbatch import answers
from pcxbatch.errors import AuthError, StoppedError
from pcxbatch.execute import facts_of
from pcxbatch.journal import Journal, OpenRow, PendingRow, Settled
from pcxbatch.listing import Page, StateReader, read_states
from pcxbatch.model import RowResult

if TYPE_CHECKING:
    from pcxbatch.config import Job
    from pcxbatch.context import RunContext
    from pcxbatch.credentials import Credentials


class ReadMode(StrEnum):
    """``read_before_send``: when pcxbatch reads users' statuses around the sends."""

    AUTO = "auto"  # when the listing costs no more than a quarter of the sends
    ALWAYS = "always"
    NEVER = "never"


#: A read is worth it (``auto``) when its pages are at most this share of the rows it serves.
COST_SHARE = 0.25


class Lister(StateReader, Protocol):
    """A client that pages ``GET /users/list`` and is closed after (``PcxClient``)."""

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class Reading:
    """How to read for one run: the job's settings and the time."""

    mode: ReadMode
    max_age: timedelta
    org_id: str | None
    page_size: int
    now: Callable[[], datetime]
    can_read: bool = True  # False: the key may not list users (the preflight's 403)
    on_page: Callable[[int, int, int], None] = lambda _p, _l, _f: None
    on_result: Callable[[RowResult], None] = lambda _r: None
    reads: list[dict[str, Any]] = field(default_factory=list)  # what summary.json shows

    @property
    def scope(self) -> str:
        return f" of organisation {self.org_id}" if self.org_id else ""


# --- what the runner calls -----------------------------------------------------------------------


def before_sending(
    job: Job,
    journal: Journal,
    ctx: RunContext,
    base_url: str,
    credentials: Credentials,
    *,
    can_read: bool = True,
) -> str | None:
    """:func:`read_before` for one run; returns why the run must stop (credential refused).
    ``can_read`` False (the key may not list users): no read, nothing to do."""
    if not can_read:
        return None
    return _with_client(job, journal, ctx, base_url, credentials, read_before)


def after_sending(
    job: Job,
    journal: Journal,
    ctx: RunContext,
    base_url: str,
    credentials: Credentials,
    *,
    can_read: bool = True,
) -> str | None:
    """:func:`settle_open` for one run (nothing to do when no answer was left open).
    ``can_read`` False: the open rows are closed as unsettled, no read is tried."""
    if not journal.open_count():
        return None
    return _with_client(job, journal, ctx, base_url, credentials, settle_open, can_read)


def summary_fields(journal: Journal) -> dict[str, Any]:
    """What ``summary.json`` adds: unconfirmed rows and the reads made (or skipped)."""
    return {"unconfirmed": journal.unconfirmed(), "status_reads": journal.meta().get("reads", [])}


def _with_client(
    job: Job,
    journal: Journal,
    ctx: RunContext,
    base_url: str,
    credentials: Credentials,
    step: Callable[[Lister, Journal, Reading], Any],
    can_read: bool = True,
) -> str | None:
    reading = Reading(
        mode=ReadMode(job.read_before_send),
        max_age=timedelta(minutes=job.max_read_age),
        org_id=job.org_id,
        page_size=job.list_page_size,
        now=ctx.clock,
        can_read=can_read,
        on_page=ctx.ui.listing,
        on_result=ctx.ui.result,
    )

    async def go() -> str | None:
        client: Any = ctx.client_factory(job, base_url, credentials, connections=1)
        try:
            await step(client, journal, reading)
        except AuthError as exc:
            return str(exc)
        finally:
            await client.aclose()
            if reading.reads:
                journal.set_meta(reads=[*journal.meta().get("reads", []), *reading.reads])
        return None

    result: str | None = ctx.run_async(go())
    return result


# --- before the sends ----------------------------------------------------------------------------


async def read_before(client: Lister, journal: Journal, reading: Reading) -> None:
    """Read the pending rows' users when due and cheap; decide those that need no request.

    The full listing (filtered by ``org_id``) when it is cheap enough; else, when that is, a
    listing of only the users already in each wanted status: those rows need no request, and
    the others are known not to be in it (``seen_at`` set, ``seen_status`` empty).
    """
    previewed = journal.meta().get("previewed_at")
    if previewed:
        journal.date_reads(_iso(datetime.fromisoformat(previewed)))
    started = reading.now()
    if not journal.reads_due(_iso(started - reading.max_age)):
        return
    sends = sum(journal.pending_counts().values())
    full: dict[str, str] | None = None
    narrow: dict[str, dict[str, str]] = {}
    try:
        full = await _read_full(client, reading, journal.pending_user_ids(), sends)
    except _NoRead as skipped:
        if skipped.final:
            return
        try:
            narrow = await _read_narrowed(client, reading, "before", _targets(journal), sends)
        except _NoRead:
            return
    _decide_read(journal, reading, _iso(started), full, narrow, previewed)


def _decide_read(
    journal: Journal,
    reading: Reading,
    at: str,
    full: dict[str, str] | None,
    narrow: dict[str, dict[str, str]],
    previewed: str | None,
) -> None:
    """Record what a read before sending saw, and decide the rows that need no request."""
    seen: list[tuple[int, str | None, str]] = []
    decided: list[Settled] = []
    for row in journal.all_pending():
        target = row.target_status
        facts = facts_of(row, at=_label(row.seen_at, previewed))
        if full is not None:
            status: str | None = full.get(row.user_id)
            decision = answers.on_read(facts, status, at, reading.scope)
        else:  # listed only users in the wanted status: the others are not in it
            status = narrow[target].get(row.user_id)
            decision = answers.on_read(facts, target, at) if status == target else None
            if decision is None and row.seen_status is not None:
                continue  # keep the status an earlier read saw, it is still the one before
        if decision is None:
            seen.append((row.row, status, at))
            continue
        decided.append((row.row, decision.outcome, decision.confirmed, decision.message))
        reading.on_result(_result(row, decision))
    journal.record_read(seen, decided)


def _targets(journal: Journal) -> dict[str, set[str]]:
    """The users of the rows still to send, per wanted status."""
    by_target: dict[str, set[str]] = defaultdict(set)
    for row in journal.all_pending():
        by_target[row.target_status].add(row.user_id)
    return by_target


def _result(row: PendingRow, decision: answers.Decision) -> RowResult:
    return RowResult(
        row.row, decision.outcome, message=decision.message, confirmed=decision.confirmed
    )


# --- after the sends -----------------------------------------------------------------------------


async def settle_open(client: Lister, journal: Journal, reading: Reading) -> None:
    """Settle every open row by one read of its users narrowed by their wanted status, or close
    it as unsettled, saying why."""
    rows = journal.open_rows()
    if not rows:
        return
    previewed = journal.meta().get("previewed_at")
    by_target: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        by_target[row.target_status].add(row.user_id)
    found: dict[str, dict[str, str]] = {}
    why = ""
    try:
        found = await _read_narrowed(client, reading, "after", by_target, journal.sent_count())
    except _NoRead as skipped:
        why = f"{skipped.why}; check it by hand"
    settled: list[Settled] = []
    for row in rows:
        facts = _open_facts(row, previewed)
        kind = answers.Kind(row.answer_kind)
        if why:
            decision = answers.unsettled(facts, kind, row.answer_text, why)
        else:
            now_wanted = found[row.target_status].get(row.user_id) == row.target_status
            decision = answers.on_settle(facts, kind, row.answer_text, now_wanted)
        settled.append((row.row, decision.outcome, decision.confirmed, decision.message))
    journal.settle(settled)


def _open_facts(row: OpenRow, previewed: str | None) -> answers.Facts:
    before = answers.before_of(row.seen_status, row.seen_at, row.target_status)
    return answers.Facts(
        action=row.action,
        target=row.target_status,
        before=before,
        before_at=_label(row.seen_at, previewed) if before else None,
        earlier=row.earlier,
    )


# --- reading -------------------------------------------------------------------------------------


class _NoRead(Exception):
    """No read is made; ``why`` says so in words for a row's message. ``final``: no narrower
    read will be made either (``never``, or the listing failed)."""

    def __init__(self, why: str, *, final: bool = False) -> None:
        super().__init__(why)
        self.why = why
        self.final = final


_NEVER = "no read was made to settle it (read_before_send: never)"
_NO_LIST = "no read could be made to settle it: the credential may not list users (403)"


def _check_mode(reading: Reading, when: str) -> None:
    """Raise :class:`_NoRead` (final) when no read may be made at all."""
    if not reading.can_read:
        reading.reads.append({"when": when, "at": _iso(reading.now()), "skipped": _NO_LIST})
        raise _NoRead(_NO_LIST, final=True)
    if reading.mode is ReadMode.NEVER:
        raise _NoRead(_NEVER, final=True)


@contextlib.contextmanager
def _listing(reading: Reading, when: str) -> Iterator[None]:
    """A listing that fails after every retry (not a refused credential) means no read."""
    try:
        yield
    except AuthError:
        raise
    except StoppedError as exc:
        reading.reads.append({"when": when, "at": _iso(reading.now()), "skipped": str(exc)})
        raise _NoRead(f"the read to settle it failed ({exc})", final=True) from None


async def _read_full(
    client: Lister, reading: Reading, wanted: Collection[str], budget: int
) -> dict[str, str]:
    """The status of each ``wanted`` user in the job's whole listing (filtered by ``org_id``)."""
    _check_mode(reading, "before")
    with _listing(reading, "before"):
        first = await client.list_users(org_id=reading.org_id, limit=reading.page_size)
        _check_cost(reading, "before", _pages(first, reading.page_size), budget, rows=len(wanted))
        found, _ = await read_states(
            _FirstPage(client, first, None),
            wanted,
            org_id=reading.org_id,
            page_size=reading.page_size,
            on_page=reading.on_page,
        )
    return found


async def _read_narrowed(
    client: Lister, reading: Reading, when: str, by_target: dict[str, set[str]], budget: int
) -> dict[str, dict[str, str]]:
    """For each wanted status, which of its users are listed with it (``status=<wanted>``), if
    all those listings together cost no more than the rule allows."""
    _check_mode(reading, when)
    found: dict[str, dict[str, str]] = {}
    with _listing(reading, when):
        firsts = {
            t: await client.list_users(status=t, org_id=reading.org_id, limit=reading.page_size)
            for t in by_target
        }
        pages = [_pages(page, reading.page_size) for page in firsts.values()]
        total = None if None in pages else sum(p for p in pages if p is not None)
        rows = sum(map(len, by_target.values()))
        _check_cost(reading, when, total, budget, rows=rows, status=sorted(by_target))
        for target, first in firsts.items():
            found[target], _ = await read_states(
                _FirstPage(client, first, target),
                by_target[target],
                org_id=reading.org_id,
                page_size=reading.page_size,
                on_page=reading.on_page,
            )
    return found


def _check_cost(
    reading: Reading,
    when: str,
    pages: int | None,
    budget: int,
    *,
    rows: int,
    status: list[str] | None = None,
) -> None:
    """Record the read, or raise :class:`_NoRead` when the cost rule says no. A single page is
    always cheap enough."""
    entry: dict[str, Any] = {"when": when, "at": _iso(reading.now()), "rows": rows}
    if status:
        entry["status"] = status
    entry["pages"] = pages
    reading.reads.append(entry)
    cheap = pages is not None and pages <= max(1.0, budget * COST_SHARE)
    if reading.mode is ReadMode.ALWAYS or cheap:
        return
    cost = f"{pages} page(s) of users" if pages is not None else "an unknown number of pages"
    entry["skipped"] = (
        f"reading them would take {cost}, more than a quarter of the {budget} rows"
        f" {'to send' if when == 'before' else 'sent'} (read_before_send: auto)"
    )
    raise _NoRead(f"no read was made to settle it: {entry['skipped']}")


def _pages(first: Page, page_size: int) -> int | None:
    """How many pages the whole listing takes, from its first page (``None``: unknown)."""
    if first.key is None:
        return 1
    if first.total is None:
        return None
    return max(1, math.ceil(first.total / page_size))


class _FirstPage:
    """A ``listing.StateReader`` over ``client``: hands out the first page already read, then pages
    on, always with ``status`` (the narrowing of a settling read)."""

    def __init__(self, client: Lister, first: Page, status: str | None) -> None:
        self._client = client
        self._first: Page | None = first
        self._status = status

    async def list_users(
        self,
        *,
        status: str | None = None,
        org_id: str | None = None,
        limit: int = 100,
        last_evaluated_key: str | None = None,
    ) -> Page:
        page = self._first
        if page is None or last_evaluated_key is not None:
            page = await self._client.list_users(
                status=self._status,
                org_id=org_id,
                limit=limit,
                last_evaluated_key=last_evaluated_key,
            )
        self._first = None
        return page


def _iso(moment: datetime) -> str:
    """A moment as journals hold it: ISO 8601 in UTC, to the second (so texts sort as times)."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _label(seen_at: str | None, previewed: str | None) -> str:
    """The read that saw a row's status, for a message."""
    if seen_at and previewed and seen_at == _iso(datetime.fromisoformat(previewed)):
        return f"the preview at {seen_at}"
    return f"the read at {seen_at}" if seen_at else "the read before sending"
