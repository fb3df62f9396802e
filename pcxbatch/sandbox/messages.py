"""The two values that cross between the ASGI adapter (``app``) and the sandbox (``state``).

In: nothing. Out: ``Incoming`` (a request as the sandbox sees it) and ``Answer`` (the response
it wants sent). Kept apart so that neither module imports the other at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

#: Bodies larger than this are refused (413) without being parsed.
MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Incoming:
    """One HTTP request: ``raw_path`` as sent (percent-encoded), header names in lower case."""

    method: str
    raw_path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    body_too_large: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    """The response to send: a status, a JSON object, extra headers. ``raw``, when set, is sent
    instead of the JSON of ``body`` (a fault's HTML page or padded answer), as ``content_type``;
    ``body`` is what the request log keeps."""

    status: int
    body: JSON
    headers: tuple[tuple[str, str], ...] = ()
    raw: bytes | None = None
    content_type: str = "application/json"
