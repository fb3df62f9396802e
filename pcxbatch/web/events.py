"""Where the web service's events go: the audit log, behind one small interface.

In: an event name (``upload``, ``approve``, ``sign_in_refused``...), the actor (account, role,
origin) and the objects and details of the event. Out: nothing; the sink writes it. The real
sink is the audit module's ``AuditLog`` (issue 14); tests pass a recording fake. Never a
password, token, session id or PCX credential in an event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class EventSink(Protocol):
    """Records one event. ``actor``: ``{"account", "role", "origin"}``; ``objects``: ids of what
    the event is about (``job``, ``run_dir``...); ``details``: anything else worth keeping.
    What it returns (``AuditLog`` returns the entry) is not used."""

    def record(
        self,
        event: str,
        actor: Mapping[str, str],
        *,
        objects: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> object: ...


class DiscardingSink:
    """A sink that keeps nothing (used only when no audit log is available)."""

    def record(
        self,
        event: str,
        actor: Mapping[str, str],
        *,
        objects: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Drop the event."""


def actor(account: str, role: str, origin: str) -> dict[str, str]:
    """The actor mapping an event carries."""
    return {"account": account, "role": role, "origin": origin}


class Who:
    """The signed-in account making a request, and where it comes from."""

    __slots__ = ("account", "origin", "role")

    def __init__(self, account: str, role: str, origin: str) -> None:
        self.account, self.role, self.origin = account, role, origin

    def actor(self) -> dict[str, str]:
        """The actor mapping of this request's events."""
        return actor(self.account, self.role, self.origin)
