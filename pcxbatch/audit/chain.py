"""The audit log's entries and the rule that chains them; no files, no keys.

In: JSON values. Out: entries, their digests, and the checks a verifier makes. An entry is one
JSON line::

    {"seq": 7, "prev": "<digest of entry 6>", "body": {...}, "digest": "<sha256 hex>"}

where ``digest = sha256(canonical({"seq", "prev", "body_sha256": sha256(canonical(body))}))``.
Hashing the body separately lets an evidence pack show another run's entries by digest only
(``seq``, ``prev``, ``body_sha256``, ``digest``: a *sealed* entry) and still prove the whole
chain from the first entry to a signed checkpoint. The first entry's ``prev`` is 64 zeros.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The ``prev`` of the first entry.
GENESIS = "0" * 64
#: What a checkpoint's signature covers, so a signature of anything else cannot be passed off.
SIGNED_CONTEXT = "pcxbatch audit checkpoint v1"


def canonical(value: Any) -> bytes:
    """The one byte form of a JSON value that is hashed or signed: sorted keys, no spaces,
    UTF-8. Writers and verifiers must agree on it, so it is defined here only."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """SHA-256 of ``data`` as lowercase hex."""
    return hashlib.sha256(data).hexdigest()


def link_digest(seq: int, prev: str, body_sha256: str) -> str:
    """An entry's digest from its place in the chain and its body's hash."""
    return sha256_hex(canonical({"seq": seq, "prev": prev, "body_sha256": body_sha256}))


@dataclass(frozen=True)
class Entry:
    """One entry of the log. ``body`` is None for a sealed entry (shown by digest only)."""

    seq: int
    prev: str
    body_sha256: str
    digest: str
    body: Mapping[str, Any] | None = None

    @property
    def event(self) -> str:
        """The entry's event name, or ``"sealed"`` when only its digest is shown."""
        return str(self.body.get("event", "?")) if self.body is not None else "sealed"

    def to_json(self) -> dict[str, Any]:
        """The entry as written: whole, or sealed when it has no body."""
        if self.body is None:
            return {
                "seq": self.seq,
                "prev": self.prev,
                "body_sha256": self.body_sha256,
                "digest": self.digest,
            }
        return {"seq": self.seq, "prev": self.prev, "body": self.body, "digest": self.digest}

    def sealed(self) -> Entry:
        """The same entry shown by digest only."""
        return Entry(self.seq, self.prev, self.body_sha256, self.digest)


def make_entry(seq: int, prev: str, body: Mapping[str, Any]) -> Entry:
    """The entry number ``seq`` holding ``body``, chained after the entry whose digest is
    ``prev``."""
    body_sha = sha256_hex(canonical(body))
    return Entry(seq, prev, body_sha, link_digest(seq, prev, body_sha), body)


class BadEntry(ValueError):
    """A line that is not an entry, or an entry whose digest does not match its content."""


def parse_entry(line: str) -> Entry:
    """The entry on one line of the log (or of a pack). :class:`BadEntry` when the line is not
    one, or its digest does not match what it holds (so it was changed after it was written)."""
    try:
        raw = json.loads(line)
    except ValueError:
        raise BadEntry("not a JSON entry (torn, or edited by hand)") from None
    if not isinstance(raw, dict):
        raise BadEntry("not an audit entry")
    seq, prev, digest = raw.get("seq"), raw.get("prev"), raw.get("digest")
    if not (isinstance(seq, int) and isinstance(prev, str) and isinstance(digest, str)):
        raise BadEntry("not an audit entry (no seq, prev or digest)")
    body = raw.get("body")
    if isinstance(body, dict):
        body_sha = sha256_hex(canonical(body))
    elif body is None and isinstance(raw.get("body_sha256"), str):
        body_sha = raw["body_sha256"]
    else:
        raise BadEntry("not an audit entry (no body)")
    if link_digest(seq, prev, body_sha) != digest:
        raise BadEntry(
            "its digest does not match what it holds: it was changed after it was written"
        )
    return Entry(seq, prev, body_sha, digest, body)


def link_problem(entry: Entry, before: Entry | None) -> str | None:
    """What is wrong with ``entry`` following ``before`` (None: it is the first), or None."""
    want_seq = 1 if before is None else before.seq + 1
    want_prev = GENESIS if before is None else before.digest
    if entry.seq != want_seq:
        if entry.seq > want_seq:
            missing = (
                f"entry {want_seq}"
                if entry.seq == want_seq + 1
                else f"entries {want_seq}-{entry.seq - 1}"
            )
            return f"{missing} missing: removed, or the entries were reordered"
        return f"out of order: entry {entry.seq} where entry {want_seq} belongs (moved or repeated)"
    if entry.prev != want_prev:
        return "does not follow the entry before it (its prev digest differs): the log was spliced"
    return None


def checkpoint_message(count: int, head: str, time: str) -> bytes:
    """The bytes a checkpoint's signature covers: the entry count, the head digest, the time."""
    return canonical({"context": SIGNED_CONTEXT, "count": count, "head": head, "time": time})
