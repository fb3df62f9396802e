"""What each answer means: the one decision table behind every sent row's outcome.

In: what is known about a row (:class:`Facts`: its action and wanted status, the status a read
before sending saw, and whether an earlier attempt may have made the change), and then one of:
the final answer to its request (:func:`on_answer`), a read of its user's status before sending
(:func:`on_read`), or a read after the sends that settles an open answer (:func:`on_settle`;
:func:`unsettled` when no such read could be made). Out: a :class:`Decision`: the outcome, whether
it is ``confirmed``, the message, and whether the row is still ``open``.

README.md, "What each answer means", is this module as a table; the two must say the same. The
rules it follows: no outcome is guessed. A 2xx is trusted only when it shows the user in the
wanted state (PCX's own example answers a deactivation with a user whose status reads
``active``, so one showing another state proves nothing either way); a 409 is ``unchanged``
only when its body or a read shows the user in the wanted state; an attempt that may have been
applied is ``applied`` only when a read shows the wanted state and something shows the user was
not in it before. What no read can settle is reported with both possibilities and
``confirmed`` false. Standard library only, no I/O: ``execute`` and ``settle`` call it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pcxbatch.model import Action, Outcome


class Kind(StrEnum):
    """The kinds of final answer a status change can get (after every retry)."""

    WANTED = "wanted"  # 2xx showing the user in the wanted state
    OTHER = "other"  # 2xx showing the user in another state
    UNSHOWN = "unshown"  # 2xx that is not JSON, or does not show the user
    CONFLICT_WANTED = "conflict_wanted"  # 409 showing the user in the wanted state
    CONFLICT_OTHER = "conflict_other"  # 409 showing the user in another state
    CONFLICT = "conflict"  # 409 that does not show the user
    NOT_FOUND = "not_found"  # 404
    REFUSED = "refused"  # any other 4xx (400, 413, 422, ...)
    UNDELIVERED = "undelivered"  # 5xx, 429, or no answer at all


#: Open answers that are not, by themselves, a sign of a broken key or a wrong file: a 409 is
#: what an already-inactive user gets, and PCX's own example 200 shows another state.
_NOT_ALARMING = frozenset({Kind.CONFLICT, Kind.OTHER})

#: The provisional "why" of an open row, until the read after the sends settles it.
PENDING = "its status is read once the sends are done, to settle it"
#: How an earlier attempt may have made the change.
EARLIER_ATTEMPT = "an earlier attempt got no clear answer"
EARLIER_RUN = "a previous run sent it without recording the answer"


@dataclass(frozen=True)
class Facts:
    """What is known about a sent (or about to be sent) row before its outcome is decided.

    ``before``: the status a read before sending saw (``None``: not read); ``before_at`` names
    that read for a message (``"the read at <time>"``, ``"the preview at <time>"``).
    ``earlier``: how an earlier attempt may have made the change (``""``: none may have).
    """

    action: Action
    target: str
    before: str | None = None
    before_at: str | None = None
    earlier: str = ""


@dataclass(frozen=True)
class Decision:
    """A row's outcome, whether it is proven, its message, and whether a read may still settle
    it (``open``: the outcome and message are provisional)."""

    outcome: Outcome
    confirmed: bool
    message: str
    open: bool = False


def before_of(seen_status: str | None, seen_at: str | None, target: str) -> str | None:
    """The status before sending, as a journal row holds it: the status read, ``"not <target>"``
    when a listing of only the target status did not list the user, ``None`` when not read."""
    if seen_status:
        return seen_status
    return f"not {target}" if seen_at else None


def kind_of(http_status: int | None, shown: str | None, target: str) -> Kind:
    """Which kind of answer: by status, and by the status of the user the body shows."""
    if http_status is None or http_status >= 500 or http_status == 429:
        return Kind.UNDELIVERED
    if 200 <= http_status < 300:
        return Kind.WANTED if shown == target else Kind.OTHER if shown else Kind.UNSHOWN
    if http_status == 409:
        if shown == target:
            return Kind.CONFLICT_WANTED
        return Kind.CONFLICT_OTHER if shown else Kind.CONFLICT
    return Kind.NOT_FOUND if http_status == 404 else Kind.REFUSED


def describe(
    kind: Kind, http_status: int | None, attempts: int, message: str, shown: str | None, target: str
) -> str:
    """The answer in words, for a message (never the user object: personal data)."""
    api = message.strip()
    if kind is Kind.OTHER:
        return f"the API answered {http_status} but showed the user as {shown}, not {target}"
    if kind is Kind.UNSHOWN:
        return f"the API answered {http_status} without showing the user ({api})"
    if kind is Kind.CONFLICT_OTHER:
        return f"409: {api}; the answer shows the user as {shown}"
    if kind is Kind.UNDELIVERED:
        if http_status is None:
            return f"no answer from the API after {attempts} attempt(s): {api}"
        if http_status == 429:
            return f"still throttled after {attempts} attempt(s) (429: {api})"
        return f"HTTP {http_status} after {attempts} attempt(s): {api}"
    if http_status == 400:
        return f"the API rejected the request (400: {api})"
    if kind is Kind.REFUSED:
        return f"HTTP {http_status}: {api}"
    return f"{http_status}: {api}"


def alarming(kind: Kind | None, decision: Decision) -> bool:
    """Whether the failure guard counts this row as a failure (see :data:`_NOT_ALARMING`)."""
    failed = decision.outcome is Outcome.FAILED  # not not_found: a 404 is a definite answer
    return failed and not (decision.open and kind in _NOT_ALARMING)


# --- the answer ----------------------------------------------------------------------------------


def on_answer(facts: Facts, kind: Kind, text: str) -> Decision:
    """The outcome of a row from its final answer; ``open`` when only a read can settle it."""
    was = _was(facts)
    if kind is Kind.WANTED:
        return _shown_wanted(facts, text)
    if kind is Kind.CONFLICT_WANTED:
        return _already_wanted(facts, text)
    if kind is Kind.CONFLICT_OTHER:
        return Decision(Outcome.FAILED, True, f"the API refused the change ({text})")
    if kind is Kind.NOT_FOUND:
        drift = f"; changed since it was read, when the user existed ({facts.before})"
        return Decision(Outcome.NOT_FOUND, True, f"user not found ({text}){drift if was else ''}")
    if kind in (Kind.REFUSED, Kind.UNDELIVERED) and not facts.earlier:
        return Decision(Outcome.FAILED, True, text if kind is Kind.REFUSED else _undelivered(text))
    return unsettled(facts, kind, text, PENDING, still_open=True)


def _shown_wanted(facts: Facts, text: str) -> Decision:
    """A 2xx whose body shows the user in the wanted state. It proves the user is in it now; it
    proves this run put it there only when a read saw it in another state before: PCX does not
    say what a change to the status a user already has answers (a 200 is possible)."""
    w = facts.target
    if facts.before == w:
        return Decision(Outcome.UNCHANGED, True, f"already {w} at {facts.before_at} ({text})")
    if facts.before:
        return Decision(Outcome.APPLIED, True, f"{_done(facts)}{_was(facts)}")
    return Decision(
        Outcome.APPLIED,
        False,
        f"{w} now ({text}): either this run made the change, or the user was already {w} (PCX"
        " does not say what a change to the status a user already has answers); its status"
        " before the run was not read",
    )


def _already_wanted(facts: Facts, text: str) -> Decision:
    """A 409 whose body shows the user in the wanted state."""
    w = facts.target
    if not facts.earlier or facts.before == w:
        return Decision(Outcome.UNCHANGED, True, f"already {w} ({text}){_drift(facts)}")
    if facts.before:
        return Decision(
            Outcome.APPLIED,
            True,
            f"{_done(facts)}{_was(facts)}: {facts.earlier}, and the API now answers {text}",
        )
    # Settled as far as any read could: the user is in the wanted state now; whether it was
    # before the run, nothing can tell any more.
    return Decision(
        Outcome.APPLIED,
        False,
        f"{w} now ({text}): either this run made the change ({facts.earlier}), or the user was"
        f" already {w} before the run; its status before the run was not read",
    )


def _undelivered(text: str) -> str:
    return f"{text}; nothing was applied"


def unsettled(
    facts: Facts, kind: Kind, text: str, why: str, *, still_open: bool = False
) -> Decision:
    """An open answer that no read has settled: ``failed``, not confirmed, both possibilities
    named; ``why`` says why no read settled it (or, while ``still_open``, that one will)."""
    w = facts.target
    if kind is Kind.OTHER:
        both = "either the change was made (PCX's answers may show the user as it was) or not"
    elif kind is Kind.UNSHOWN:
        both = "either the change was made or it was not"
    elif kind is Kind.CONFLICT and not facts.earlier:
        both = f"either the user is already {w} (nothing to do) or the API refused the change"
    elif kind is Kind.CONFLICT:
        text = f"{facts.earlier}, then {text}"
        both = (
            f"either that attempt made the change, the user was already {w}, or the API refused it"
        )
    else:
        text = f"{text}; the change may have been applied ({facts.earlier})"
        both = f"either the user is {w} now or the change was not made"
    return Decision(Outcome.FAILED, False, f"{text}: {both}; {why}", open=still_open)


# --- reads ---------------------------------------------------------------------------------------


def on_read(facts: Facts, seen: str | None, at: str, scope: str = "") -> Decision | None:
    """A read before sending saw the user as ``seen`` (``None``: absent from a complete listing)
    at ``at``. The row's outcome without a request, or ``None``: send it.

    ``facts.earlier`` set: a stopped run sent it without recording the answer, so a wanted state
    seen now may be that request's work (``facts.before`` is what was read before it).
    """
    w = facts.target
    if seen is None:
        return Decision(
            Outcome.NOT_FOUND, True, f"no such user among the users{scope} listed at {at}; not sent"
        )
    if seen != w:
        return None
    if not facts.earlier:
        moved = facts.before and facts.before != w
        drift = f" (changed since {facts.before_at}, when it was {facts.before})" if moved else ""
        return Decision(Outcome.UNCHANGED, True, f"already {w} when read at {at}; not sent{drift}")
    if facts.before and facts.before != w:
        return Decision(
            Outcome.APPLIED,
            True,
            f"{_done(facts)}{_was(facts)}: {facts.earlier}, and a read at {at} shows the user {w};"
            " not sent again",
        )
    return Decision(
        Outcome.APPLIED,
        False,
        f"{w} when read at {at}: either this run made the change ({facts.earlier}), or the user"
        f" was already {w} before the run; its status before the run was not read; not sent again",
    )


def on_settle(facts: Facts, kind: Kind, text: str, now_wanted: bool) -> Decision:
    """An open row settled by a read after the sends: is the user in the wanted state now?"""
    w = facts.target
    after = "a read after the sends"
    if not now_wanted:
        what = "the API refused the change" if kind is Kind.CONFLICT else "the change was not made"
        return Decision(Outcome.FAILED, True, f"{what} ({text}); {after} shows the user is not {w}")
    if facts.before == w:
        return Decision(
            Outcome.UNCHANGED, True, f"already {w} at {facts.before_at}, and still ({text})"
        )
    if kind is Kind.CONFLICT and not facts.earlier:
        return Decision(
            Outcome.UNCHANGED, True, f"already {w} ({text}); {after} confirms it{_drift(facts)}"
        )
    if facts.before or kind is Kind.OTHER:
        # The user was seen out of the wanted state during the run (read before, or shown by the
        # answer), and is in it now: this run's requests are the only way it got there.
        how = f"{facts.earlier}, then {text}" if facts.earlier else text
        return Decision(
            Outcome.APPLIED, True, f"{_done(facts)}{_was(facts)}: {how}; {after} shows the user {w}"
        )
    return Decision(
        Outcome.APPLIED,
        False,
        f"{w} now ({after}): either this run made the change ({facts.earlier or text}), or the"
        f" user was already {w} before the run; its status before the run was not read",
    )


# --- words ---------------------------------------------------------------------------------------


def _done(facts: Facts) -> str:
    """What the change did to the user."""
    if facts.action is Action.DEACTIVATE:
        return "deactivated"
    return f"status set to {facts.target}"


def _was(facts: Facts) -> str:
    """`` (was <status>)`` when a read before sending saw another status, else nothing."""
    before = facts.before
    return f" (was {before})" if before and before != facts.target else ""


def _drift(facts: Facts) -> str:
    """For a user found in the wanted state although a read before saw another status."""
    if not facts.before or facts.before == facts.target:
        return ""
    return f"; changed since {facts.before_at}, when it was {facts.before}, not by this run"
