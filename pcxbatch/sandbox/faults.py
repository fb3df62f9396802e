"""The sandbox's injected faults: which one a request meets, and the answers they give.

In: a ``SandboxConfig`` and the sandbox's seeded fault stream (``random.Random``). Out: a
``Plan`` per admitted request (``draw``), whether a user's deactivation is refused
(``refuses``), and the answers the faults send: the gateway's error bodies, a proxy's HTML page,
an answer showing the user as it was, an answer padded far past any sane size.

Every fault but the refusal is drawn per request from one uniform number, in this order:
``fail_rate`` (502/503, nothing applied), ``ghost_rate`` (applied, then 504), ``drop_rate``
(connection closed; half of them after applying), ``applied_503_rate`` (applied, then 503),
``wrong_status_rate`` (200 showing the user as it was, nothing applied), ``html_rate`` (200 with
a proxy's HTML page, nothing applied), ``huge_rate`` (the normal answer, padded). A config with
none of the later ones set draws exactly as before they existed. The refusal (``refuse_rate``) is
a property of the user, as a pending payout would be: the same users are refused on every
attempt, chosen from the seed and the user ID.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from .config import _DRAWN_FAULTS, SandboxConfig
from .messages import JSON, Answer

#: The faults drawn per request, in the order their shares are laid end to end.
FAULTS = _DRAWN_FAULTS
#: What a refused deactivation answers (the sandbox changes nothing).
PAYOUT_PENDING = "User cannot be deactivated while a payout is pending"
#: How large a ``huge`` answer is: far past any cap a client should hold (64 KB).
HUGE_BYTES = 4 * 1024 * 1024

GATEWAY_BODIES: dict[int, JSON] = {
    429: {"message": "Too Many Requests"},
    502: {"message": "Internal server error"},
    503: {"message": "Service Unavailable"},
    504: {"message": "Endpoint request timed out"},
}

_HTML = (
    b"<!DOCTYPE html>\n<html><head><title>Request blocked</title></head>\n<body><h1>Request"
    b" blocked</h1><p>The request was blocked by the network's security policy. Reference"
    b" 7f3a9c.</p></body></html>\n"
)


@dataclass(slots=True)
class Plan:
    """What the integration will do with one admitted request, drawn at arrival."""

    delay: float = 0.0
    fault: str | None = None  # one of FAULTS
    fail_status: int = 502
    drop_after_apply: bool = False


def draw(config: SandboxConfig, rng: random.Random, plan: Plan) -> None:
    """Set ``plan.fault`` from one draw of ``rng`` (and the details a fault needs)."""
    rates = [getattr(config, f"{name}_rate") for name in FAULTS]
    if not any(rates):
        return
    point = rng.random()
    edge = 0.0
    for name, rate in zip(FAULTS, rates, strict=True):
        edge += rate
        if point < edge:
            plan.fault = name
            break
    if plan.fault == "fail":
        plan.fail_status = rng.choice((502, 503))
    elif plan.fault == "drop":
        plan.drop_after_apply = rng.random() < 0.5


def refuses(config: SandboxConfig, user_id: str) -> bool:
    """Whether this user's deactivation is refused (a payout is pending)."""
    if config.refuse_rate <= 0:
        return False
    return (
        random.Random(f"pcx-sandbox-refuse:{config.seed}:{user_id}").random() < config.refuse_rate
    )


def gateway(status: int) -> Answer:
    """The gateway's own answer for ``status`` (429, 502, 503, 504)."""
    return Answer(status, dict(GATEWAY_BODIES[status]))


def html_page() -> Answer:
    """A proxy's "Request blocked" page, answered 200."""
    return Answer(200, {}, raw=_HTML, content_type="text/html; charset=utf-8")


def as_it_was(route: str, user: JSON, reason: object) -> Answer:
    """A success answer showing the user as it is (no change was made)."""
    if route == "deactivate":
        return Answer(
            200, {"message": "User deactivated successfully", "user": user, "reason": reason}
        )
    return Answer(200, {"message": "User status updated successfully", "user": user})


def padded(answer: Answer) -> Answer:
    """``answer`` with a filler field that makes it :data:`HUGE_BYTES` long (the request log
    keeps the answer without it)."""
    text = json.dumps(answer.body, separators=(",", ":"))
    filler = "x" * max(0, HUGE_BYTES - len(text))
    raw = (text[:-1] + ("," if answer.body else "") + f'"padding":"{filler}"}}').encode()
    return Answer(answer.status, answer.body, answer.headers, raw=raw)
