"""Who is calling: sign-in (with attempts limited), sessions, CSRF tokens, API tokens.

In: a name and password, a session id from a cookie, a bearer token, the client's address.
Out: the :class:`~pcxbatch.web.events.Who` of a live session or token, a new session (its id
for the cookie, never stored: the store keeps its SHA-256) with its CSRF token, or
:class:`~pcxbatch.web.flow.Refused` (401 wrong name or password, 429 too many attempts).
Attempts are limited per account and per client address, so neither guessing one account's
password from many places nor many accounts' from one place goes fast.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pcxbatch.audit import Event
from pcxbatch.web import passwords
from pcxbatch.web.events import EventSink, Who
from pcxbatch.web.flow import Refused
from pcxbatch.web.store import Store

SESSION_HOURS = 12
#: Failed sign-ins allowed per account and per address in the window, before a wait.
MAX_FAILURES, FAILURE_WINDOW = 5, timedelta(minutes=15)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Access:
    """Sessions, tokens and the sign-in limit, all kept in the store (so every service
    process on one database counts the same attempts)."""

    def __init__(
        self, store: Store, sink: EventSink, clock: Callable[[], datetime] = _utc_now
    ) -> None:
        self.store, self.sink, self.clock = store, sink, clock

    def sign_in(self, name: str, password: str, origin: str) -> tuple[str, str]:
        """A new session's (id, CSRF token) for the right password; :class:`Refused` else."""
        name = name.strip().lower()
        keys = (f"account:{name}", f"origin:{origin}")
        if self._limited(keys):
            self.sink.record(
                Event.SIGN_IN_REFUSED, {"account": name, "role": "", "origin": origin},
                details={"reason": "too many attempts"},
            )  # fmt: skip
            raise Refused(429, "too many sign-in attempts; wait 15 minutes and try again")
        if not passwords.check_password(self.store.password_hash(name), password):
            self._fail(keys)
            self.sink.record(
                Event.SIGN_IN_REFUSED, {"account": name, "role": "", "origin": origin},
                details={"reason": "wrong name or password, or account disabled"},
            )  # fmt: skip
            raise Refused(401, "wrong name or password")
        account = self.store.account(name)
        assert account is not None
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        expires = (self.clock() + timedelta(hours=SESSION_HOURS)).isoformat(timespec="seconds")
        self.store.add_session(passwords.token_hash(session_id), name, csrf, expires)
        self.sink.record(Event.SIGN_IN, Who(name, account.role, origin).actor())
        return session_id, csrf

    def session(self, session_id: str | None, origin: str) -> tuple[Who, str] | None:
        """The account and CSRF token of a live session, or None."""
        if not session_id:
            return None
        now = self.clock().isoformat(timespec="seconds")
        found = self.store.session(passwords.token_hash(session_id), now)
        if found is None:
            return None
        account, csrf = found
        return Who(account.name, account.role, origin), csrf

    def sign_out(self, session_id: str, who: Who) -> None:
        """End the session."""
        self.store.end_session(passwords.token_hash(session_id))
        self.sink.record(Event.SIGN_OUT, who.actor())

    def bearer(self, header: str | None, origin: str) -> Who | None:
        """The account of a live API token in an ``Authorization: Bearer`` header, or None."""
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        account = self.store.token_account(passwords.token_hash(token.strip()))
        return None if account is None else Who(account.name, account.role, origin)

    def _limited(self, keys: tuple[str, ...]) -> bool:
        cutoff = (self.clock() - FAILURE_WINDOW).isoformat(timespec="microseconds")
        return self.store.failures_since(keys, cutoff) >= MAX_FAILURES

    def _fail(self, keys: tuple[str, ...]) -> None:
        self.store.add_failure(keys, self.clock().isoformat(timespec="microseconds"))


def same_token(a: str, b: str) -> bool:
    """Constant-time comparison of two CSRF tokens (empty never matches)."""
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())
