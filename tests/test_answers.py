"""The decision table (pcxbatch.answers), row by row, as README.md's "What each answer means".

Each case is one line of the table: what was known before the send, the final answer, and what
the row must come out as. A second set checks the rules that hold over the whole table: no
outcome is claimed without something that shows it, and what is unconfirmed says both.
"""

from __future__ import annotations

import itertools

import pytest

from pcxbatch import answers
from pcxbatch.answers import Decision, Facts, Kind
from pcxbatch.model import Action, Outcome

W = "inactive"
EARLIER = answers.EARLIER_ATTEMPT
READ = "the read at 2026-12-01T09:00:00+00:00"


def facts(before: str | None = None, earlier: str = "") -> Facts:
    return Facts(Action.DEACTIVATE, W, before, READ if before else None, earlier)


def answer(kind: Kind, f: Facts, status: int | None, shown: str | None = None) -> Decision:
    text = answers.describe(kind, status, 3, "the API's words", shown, W)
    return answers.on_answer(f, kind, text)


A, U, F, N = Outcome.APPLIED, Outcome.UNCHANGED, Outcome.FAILED, Outcome.NOT_FOUND


@pytest.mark.parametrize(
    ("kind", "status", "shown", "before", "earlier", "outcome", "confirmed", "open_"),
    [
        # 2xx showing the user in the wanted state: applied; confirmed only when a read saw it
        # in another state before (PCX may answer 200 to a change that was not needed).
        (Kind.WANTED, 200, W, "active", "", A, True, False),
        (Kind.WANTED, 200, W, "not inactive", "", A, True, False),  # a status=inactive listing
        (Kind.WANTED, 200, W, None, "", A, False, False),
        (Kind.WANTED, 200, W, None, EARLIER, A, False, False),
        # 2xx showing another state (PCX's own example) or not JSON: open, never applied.
        (Kind.OTHER, 200, "active", None, "", F, False, True),
        (Kind.OTHER, 200, "active", "active", "", F, False, True),
        (Kind.UNSHOWN, 200, None, None, "", F, False, True),
        (Kind.UNSHOWN, 200, None, "active", EARLIER, F, False, True),
        # 409 showing the wanted state: unchanged, unless an earlier attempt may have done it.
        (Kind.CONFLICT_WANTED, 409, W, None, "", U, True, False),
        (Kind.CONFLICT_WANTED, 409, W, "active", EARLIER, A, True, False),
        (Kind.CONFLICT_WANTED, 409, W, None, EARLIER, A, False, False),  # no read can tell
        # 409 showing another state: refused, confirmed.
        (Kind.CONFLICT_OTHER, 409, "active", None, "", F, True, False),
        (Kind.CONFLICT_OTHER, 409, "active", None, EARLIER, F, True, False),
        # 409 otherwise: open (already so, refused, or an earlier attempt's echo).
        (Kind.CONFLICT, 409, None, None, "", F, False, True),
        (Kind.CONFLICT, 409, None, "active", "", F, False, True),
        (Kind.CONFLICT, 409, None, "active", EARLIER, F, False, True),
        # 404: not found.
        (Kind.NOT_FOUND, 404, None, None, "", N, True, False),
        (Kind.NOT_FOUND, 404, None, "active", EARLIER, N, True, False),
        # Other 4xx, and 5xx/429/no answer: failed, open when an earlier attempt may have done it.
        (Kind.REFUSED, 400, None, None, "", F, True, False),
        (Kind.REFUSED, 400, None, None, EARLIER, F, False, True),
        (Kind.UNDELIVERED, 503, None, None, "", F, True, False),
        (Kind.UNDELIVERED, None, None, "active", "", F, True, False),
        (Kind.UNDELIVERED, 503, None, None, EARLIER, F, False, True),
        (Kind.UNDELIVERED, None, None, "active", EARLIER, F, False, True),
    ],
)
def test_the_answer_table(
    kind: Kind,
    status: int | None,
    shown: str | None,
    before: str | None,
    earlier: str,
    outcome: Outcome,
    confirmed: bool,
    open_: bool,
) -> None:
    assert answers.kind_of(status, shown, W) is kind
    decision = answer(kind, facts(before, earlier), status, shown)
    assert (decision.outcome, decision.confirmed, decision.open) == (outcome, confirmed, open_)


#: Kinds whose rows may be open, and the rest.
OPEN_KINDS = (Kind.OTHER, Kind.UNSHOWN, Kind.CONFLICT, Kind.REFUSED, Kind.UNDELIVERED)


@pytest.mark.parametrize(
    ("kind", "before", "earlier", "now_wanted", "outcome", "confirmed"),
    [
        # The change did not happen: failed, confirmed, whatever the answer was.
        *(
            (k, b, e, False, F, True)
            for k in OPEN_KINDS
            for b in (None, "active")
            for e in ("", EARLIER)
        ),
        # Wanted now, and something shows it was not so before: applied, confirmed.
        (Kind.OTHER, None, "", True, A, True),  # the answer itself showed the user active
        (Kind.UNSHOWN, "active", "", True, A, True),
        (Kind.CONFLICT, "active", EARLIER, True, A, True),
        (Kind.UNDELIVERED, "active", EARLIER, True, A, True),
        (Kind.REFUSED, "active", EARLIER, True, A, True),
        # Wanted now, nothing shows how it was before: applied or already so, unconfirmed.
        (Kind.UNSHOWN, None, "", True, A, False),
        (Kind.CONFLICT, None, EARLIER, True, A, False),
        (Kind.UNDELIVERED, None, EARLIER, True, A, False),
        # A 409 with no attempt of ours that could have made it: it was already so.
        (Kind.CONFLICT, None, "", True, U, True),
        (Kind.CONFLICT, "active", "", True, U, True),  # changed since the read, not by us
        # Seen in the wanted state before (a stale read that was sent anyway): unchanged.
        (Kind.UNDELIVERED, W, EARLIER, True, U, True),
    ],
)
def test_the_settle_table(
    kind: Kind,
    before: str | None,
    earlier: str,
    now_wanted: bool,
    outcome: Outcome,
    confirmed: bool,
) -> None:
    decision = answers.on_settle(facts(before, earlier), kind, "the answer", now_wanted)
    assert (decision.outcome, decision.confirmed, decision.open) == (outcome, confirmed, False)


@pytest.mark.parametrize(
    ("seen", "before", "earlier", "outcome", "confirmed"),
    [
        (None, None, "", N, True),  # absent from a complete listing
        (W, None, "", U, True),  # already in the wanted state: not sent
        (W, "active", "", U, True),  # drift since the preview: not sent
        ("active", None, "", None, None),  # to send
        # A stopped run sent it without recording the answer:
        (W, "active", answers.EARLIER_RUN, A, True),  # read before that send: its work
        (W, None, answers.EARLIER_RUN, A, False),  # its work, or already so
        ("active", "active", answers.EARLIER_RUN, None, None),  # not applied: send again
        (None, "active", answers.EARLIER_RUN, N, True),
    ],
)
def test_the_read_before_sending_table(
    seen: str | None,
    before: str | None,
    earlier: str,
    outcome: Outcome | None,
    confirmed: bool | None,
) -> None:
    decision = answers.on_read(facts(before, earlier), seen, "09:05")
    if outcome is None:
        assert decision is None
    else:
        assert decision is not None
        assert (decision.outcome, decision.confirmed) == (outcome, confirmed)


# --- rules over the whole table ------------------------------------------------------------------

BEFORES = (None, "active", W)
EARLIERS = ("", EARLIER)


def every_answer() -> list[tuple[Facts, Kind, Decision]]:
    shown_for = {
        Kind.WANTED: W,
        Kind.OTHER: "active",
        Kind.CONFLICT_WANTED: W,
        Kind.CONFLICT_OTHER: "active",
    }
    status_for = {Kind.NOT_FOUND: 404, Kind.REFUSED: 400, Kind.UNDELIVERED: 503}
    cases = []
    for kind, before, earlier in itertools.product(Kind, BEFORES, EARLIERS):
        status = 200 if kind in (Kind.WANTED, Kind.OTHER, Kind.UNSHOWN) else 409
        f = facts(before, earlier)
        cases.append((f, kind, answer(kind, f, status_for.get(kind, status), shown_for.get(kind))))
    return cases


def test_no_answer_alone_claims_a_change_it_does_not_show() -> None:
    for f, kind, decision in every_answer():
        if decision.outcome is A and decision.confirmed:
            # Applied for sure: the answer shows the wanted state, and a read saw the user out
            # of it before a request of ours that may have made it (a 2xx, or an earlier one).
            assert kind in (Kind.WANTED, Kind.CONFLICT_WANTED), (f, kind)
            assert f.before not in (None, W) and (kind is Kind.WANTED or f.earlier), (f, kind)
        if decision.outcome is U:
            assert kind is Kind.CONFLICT_WANTED or (kind is Kind.WANTED and f.before == W)


def test_what_is_unconfirmed_names_both_possibilities() -> None:
    for f, kind, decision in every_answer():
        if not decision.confirmed:
            assert "either" in decision.message and " or " in decision.message, decision
        if decision.open:
            assert not decision.confirmed and decision.outcome is F
            assert answers.PENDING in decision.message
            closed = answers.unsettled(f, kind, "the answer", "no read: too costly")
            assert not closed.open and not closed.confirmed and closed.outcome is F
            assert "either" in closed.message and "no read: too costly" in closed.message


def test_the_refusing_409_is_never_unchanged_without_a_read() -> None:
    payout = "User cannot be deactivated while a payout is pending"
    text = answers.describe(Kind.CONFLICT, 409, 1, payout, None, W)
    decision = answers.on_answer(facts(), Kind.CONFLICT, text)
    assert decision.outcome is F and decision.open and payout in decision.message
    refused = answers.on_settle(facts(), Kind.CONFLICT, text, now_wanted=False)
    assert refused == Decision(
        F,
        True,
        f"the API refused the change (409: {payout}); a read after the sends shows the user is"
        " not inactive",
    )


def test_the_guard_counts_failures_but_not_404s_409s_or_200s_showing_another_state() -> None:
    for f, kind, decision in every_answer():
        counted = answers.alarming(kind, decision)
        if kind in (Kind.CONFLICT, Kind.OTHER):
            assert not counted
        elif decision.outcome is F:
            assert counted, (f, kind)
        else:
            assert not counted
