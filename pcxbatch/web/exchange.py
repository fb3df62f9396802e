"""What a handler receives and answers, free of any web library (``app`` adapts Starlette).

In: nothing (types only). Out: :class:`Call` (the signed-in account, the path's parameters,
the form fields, the query, a streamed upload) and :class:`Reply` (a status with JSON, a page, a
file or a redirect). Handlers in ``views`` (pages) and ``api`` (JSON) speak only these, so the
routing library stays in one module and every handler is tested the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pcxbatch.web.events import Who
from pcxbatch.web.uploads import Upload

#: Roles a route may be opened to; a route names its roles, and none means nobody (default
#: deny). ``PUBLIC`` marks the few routes open before signing in.
ANALYST, APPROVER, ADMIN = "analyst", "approver", "admin"
EVERYONE = frozenset({ANALYST, APPROVER, ADMIN})
PUBLIC = frozenset({"public"})


@dataclass
class Call:
    """One request, as a handler sees it."""

    who: Who | None
    params: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)  # the URL's ?name=value pairs
    upload: Upload | None = None
    csrf: str = ""  # the session's CSRF token, for the forms a page shows
    session_id: str | None = None
    secure: bool = False  # served over https (cookies get Secure)

    @property
    def me(self) -> Who:
        """The signed-in account (the route's roles made sure there is one)."""
        assert self.who is not None
        return self.who


@dataclass
class Reply:
    """What to answer: JSON, a page, a file or a redirect, plus cookies to set or clear."""

    status: int = 200
    json: Any = None
    page: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    file: Path | None = None
    redirect: str | None = None
    set_cookies: dict[str, str] = field(default_factory=dict)
    clear_cookies: tuple[str, ...] = ()


Handler = Callable[[Call], Reply]


@dataclass(frozen=True)
class Route:
    """A path, its method, who may use it, and the handler. ``upload``: the body is a
    streamed multipart form. ``api``: bearer tokens (JSON); else a session (pages)."""

    method: str
    path: str
    handler: Handler
    roles: frozenset[str]
    api: bool = False
    upload: bool = False
