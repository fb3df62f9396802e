"""Answer bodies: never read more than a cap, then turn what was read into a message and JSON.

In: an answer's bytes as they arrive (any async iterator of chunks), its declared length and
``Content-Encoding``; then its status, reason phrase and charset. Out: a :class:`Body` (the
bytes, or why they were not kept), the API's message (short, one line, redacted) with its JSON
object, and the status of the user an answer shows (:func:`user_status`).

Why a cap: a PCX answer is a few KB (one user object; a list page is a page of them). A proxy's
error page, a misrouted download or a hostile server can answer with hundreds of MB; read whole,
eight such answers took a run to 1.3 GB and larger ones ended it with ``MemoryError``. A body is
read chunk by chunk and dropped as soon as it passes the cap; a compressed one (pcxbatch never
asks for compression, but a proxy may send it anyway) is inflated with the same bound, so a small
compressed answer cannot expand past it either. The caller treats a body over the cap as a failed
answer for that attempt (retried like a dropped connection; a change it answered may have been
made). Standard library only: ``client`` hands its httpx stream in as plain chunks.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

#: The most of one answer to a status change that is ever held in memory.
MAX_ANSWER_BYTES = 64 * 1024
#: What a listed user may add to a list page's cap (a PCX user object is about 1 KB).
LISTED_USER_BYTES = 8 * 1024
#: Messages are for a report cell, not for dumping a whole error page.
MAX_MESSAGE = 300

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_IDENTITY = frozenset({"", "identity"})
_ZLIB = frozenset({"gzip", "x-gzip", "deflate"})


def answer_cap(listing_limit: int | None = None) -> int:
    """The cap for one answer: :data:`MAX_ANSWER_BYTES`, plus room for ``listing_limit`` users
    on a list page."""
    return MAX_ANSWER_BYTES + max(0, listing_limit or 0) * LISTED_USER_BYTES


def size_text(cap: int) -> str:
    """``64 KB`` for a cap of 65,536 bytes."""
    return f"{cap // 1024} KB" if cap >= 1024 else f"{cap} bytes"


@dataclass(frozen=True)
class Body:
    """What was kept of an answer's body: ``data``, or ``problem`` saying why nothing was."""

    data: bytes | None
    problem: str | None = None


async def read_body(
    chunks: AsyncIterator[bytes], *, cap: int, length: str | None, encoding: str | None
) -> Body:
    """Read ``chunks`` while they fit in ``cap`` bytes (after decoding ``encoding``).

    ``length`` is the declared ``Content-Length``: larger than the cap, and nothing is read.
    Stops at the first chunk that passes the cap; the caller closes the stream (and with it the
    connection, which cannot be reused with a body left unread).
    """
    too_large = Body(None, f"the answer was larger than {size_text(cap)}; it was not read")
    if length and length.strip().isdigit() and int(length) > cap:
        return too_large
    coding = (encoding or "").strip().lower()
    if coding not in _IDENTITY | _ZLIB:
        return Body(None, f"the answer came in an encoding pcxbatch did not ask for ({coding})")
    inflate = zlib.decompressobj(wbits=47) if coding in _ZLIB else None  # 47: gzip or zlib
    kept = bytearray()
    try:
        async for chunk in chunks:
            if inflate is not None:
                chunk = inflate.decompress(chunk, cap + 1 - len(kept))
            kept += chunk
            if len(kept) > cap:
                return too_large
        if inflate is not None:
            kept += inflate.flush()
    except zlib.error:
        return Body(None, f"the answer could not be decoded ({coding})")
    if len(kept) > cap:
        return too_large
    return Body(bytes(kept))


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    """``data`` as a stream of one chunk, for :func:`read_body`."""
    yield data


def clean(text: str) -> str:
    """One line of at most :data:`MAX_MESSAGE` characters, control characters removed."""
    text = " ".join(_CONTROL.sub(" ", text).split())
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 1] + "…"
    return text


def read_answer(
    status: int,
    reason: str,
    content: bytes,
    charset: str | None,
    redact: Callable[[str], str],
) -> tuple[str, dict[str, Any] | None]:
    """The API's message and JSON object; a body that is not a JSON object gives its first
    words instead (or ``HTTP <status> <reason>`` when it has none)."""
    body: dict[str, Any] | None = None
    try:
        parsed = json.loads(content) if content else None
    except ValueError:  # not JSON (json.JSONDecodeError and UnicodeDecodeError are ValueErrors)
        parsed = None
    if isinstance(parsed, dict):
        body = parsed
        message = parsed.get("message")
        error = parsed.get("error")
        parts = (
            [redact(str(message))]
            if isinstance(message, str | int | float) and message != ""
            else []
        )
        if isinstance(error, str | int | float) and error != "" and str(error) != str(message):
            parts.append(f"({redact(str(error))})")
        if parts:
            return clean(" ".join(parts)), body
    text = clean(redact(_text(content, charset))) if content else ""
    if parsed is not None or not text:
        text = f"HTTP {status} {reason}".strip()
    return text, body


def _text(content: bytes, charset: str | None) -> str:
    try:
        return content.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return content.decode("utf-8", errors="replace")


def user_status(body: dict[str, Any] | None) -> str | None:
    """The status of the user an answer shows (``body["user"]["status"]``), if it shows one."""
    user = body.get("user") if body else None
    status = user.get("status") if isinstance(user, dict) else None
    return status if isinstance(status, str) and status else None
