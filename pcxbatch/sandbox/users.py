"""The sandbox's user population: seeded fake users, or users read from a JSON file.

In: a count and a seed (``seed_users``), or a path to a JSON list of user objects
(``load_users_file``). Out: lists of user dicts shaped like the PCX user object (every field of
``USER_FIELDS``), in a stable order. Seeded users depend only on ``(n, seed)``: never on the clock,
the machine or the Python process.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pcxbatch.errors import ConfigError

#: Every field of the PCX user object, in the order the API pages list them.
USER_FIELDS: tuple[str, ...] = (
    "user_id",
    "email",
    "fname",
    "lname",
    "date_of_birth",
    "cognito_username",
    "bridge_customer_id",
    "kyc_submitted_at",
    "kyc_approved_at",
    "kyc_failure_reason",
    "role",
    "status",
    "type",
    "created_by",
    "org_id",
    "org_ids",
    "phone_number",
    "address",
    "country",
    "id_type",
    "id_number",
    "additional_id_type",
    "additional_id_number",
    "kyc_session_id",
    "kyc_status",
    "created_at",
    "updated_at",
)

#: The status enum of ``GET /users/list``.
STATUSES: tuple[str, ...] = (
    "active",
    "rejected",
    "not_verified",
    "pending_verification",
    "pending",
    "sandbox",
    "inactive",
)

# A realistic population is mostly active, with a tail of every other state: the weights are what
# a KYC-gated product's user table tends to look like, not a documented figure.
_STATUS_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("active", 70),
    ("pending_verification", 8),
    ("not_verified", 6),
    ("inactive", 6),
    ("rejected", 4),
    ("pending", 4),
    ("sandbox", 2),
)
_FIRST = (
    "Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Edsger",
    "Radia", "Donald", "Hedy", "Tim", "Katherine", "John", "Sophie", "Niklaus", "Joan", "Guido",
)  # fmt: skip
_LAST = (
    "Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie",
    "Allen", "Dijkstra", "Perlman", "Knuth", "Lamarr", "Berners-Lee", "Johnson", "McCarthy",
    "Wilson", "Wirth", "Clarke", "van Rossum",
)  # fmt: skip
_COUNTRIES = ("US", "GB", "DE", "FR", "NL", "CA", "MX", "BR", "NG", "SG")
_ID_TYPES = ("passport", "drivers_license", "national_id")
_STREETS = ("Main St", "High St", "Market St", "Elm Ave", "Park Rd", "Station Rd", "Mill Ln")
# The sandbox's notion of "now" for seeded timestamps: fixed, so that seeds reproduce exactly.
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def iso(moment: datetime) -> str:
    """Format a moment the way PCX timestamps look: ISO 8601, UTC, milliseconds, ``Z``."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def seed_users(n: int, seed: int) -> list[dict[str, Any]]:
    """Return ``n`` fake PCX users, the same ones for the same ``(n, seed)``.

    The first ``k`` users of ``seed_users(n, seed)`` are the users of ``seed_users(k, seed)``, so
    growing ``--users`` keeps the IDs a test or a demo file already uses. The mix: mostly
    ``active``, some of every other status, about one admin in twelve, a handful of organisations.
    Personal data is invented (names of computing pioneers, ``example.com`` e-mail addresses).
    """
    if n < 0:
        raise ValueError(f"cannot seed a negative number of users ({n})")
    rng = random.Random(f"pcx-sandbox-users:{seed}")
    orgs = [f"org_{rng.getrandbits(48):012x}" for _ in range(5)]
    statuses = [s for s, _ in _STATUS_WEIGHTS]
    weights = [w for _, w in _STATUS_WEIGHTS]
    users = []
    for i in range(n):
        users.append(_one_user(rng, i, orgs, rng.choices(statuses, weights)[0]))
    return users


def _one_user(rng: random.Random, i: int, orgs: list[str], status: str) -> dict[str, Any]:
    fname, lname = rng.choice(_FIRST), rng.choice(_LAST)
    admin = rng.random() < 0.08
    org_id = orgs[0] if admin else rng.choice(orgs)
    org_ids = [org_id] + ([o for o in orgs if o != org_id][:1] if rng.random() < 0.1 else [])
    created = _EPOCH - timedelta(days=rng.randint(30, 900), seconds=rng.randint(0, 86399))
    submitted = created + timedelta(hours=rng.randint(1, 72))
    decided = submitted + timedelta(hours=rng.randint(1, 48))
    kyc_done = status in ("active", "inactive", "sandbox")
    kyc_status = {
        "rejected": "rejected",
        "pending_verification": "submitted",
        "pending": "in_review",
        "not_verified": "not_started",
    }.get(status, "approved")
    submitted_at = iso(submitted) if status != "not_verified" else None
    updated = decided if status != "not_verified" else created
    if status == "inactive":
        updated = decided + timedelta(days=rng.randint(1, 200))
    id_type = rng.choice(_ID_TYPES)
    born = f"{rng.randint(1950, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    return {
        "user_id": _uuid(rng),
        "email": f"{fname}.{lname}.{i}@example.com".lower().replace(" ", ""),
        "fname": fname,
        "lname": lname,
        "date_of_birth": born,
        "cognito_username": _uuid(rng),
        "bridge_customer_id": _uuid(rng) if kyc_done else None,
        "kyc_submitted_at": submitted_at,
        "kyc_approved_at": iso(decided) if kyc_done else None,
        "kyc_failure_reason": "document_unreadable" if status == "rejected" else None,
        "role": "admin" if admin else "user",
        "status": status,
        "type": "internal-admin" if admin else rng.choice(("individual", "individual", "business")),
        "created_by": "admin-console" if admin else "self-signup",
        "org_id": org_id,
        "org_ids": org_ids,
        "phone_number": f"+1555{rng.randint(0, 9_999_999):07d}",
        "address": f"{rng.randint(1, 999)} {rng.choice(_STREETS)}",
        "country": rng.choice(_COUNTRIES),
        "id_type": id_type,
        "id_number": f"{rng.randint(0, 999_999_999):09d}",
        "additional_id_type": rng.choice([t for t in _ID_TYPES if t != id_type]),
        "additional_id_number": f"{rng.randint(0, 999_999_999):09d}",
        "kyc_session_id": f"kyc_{rng.getrandbits(64):016x}" if submitted_at else None,
        "kyc_status": kyc_status,
        "created_at": iso(created),
        "updated_at": iso(updated),
    }


def load_users_file(path: Path) -> list[dict[str, Any]]:
    """Read a JSON list of user objects; fill the PCX fields a user leaves out with ``null``.

    Each user needs a non-empty string ``user_id`` (unique in the file) and, when given, a
    ``status`` from ``STATUSES`` (``active`` when left out). Extra fields are kept. Raises
    ``ConfigError`` naming every problem at once.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read the users file: {exc}"]) from exc
    if not isinstance(data, list):
        raise ConfigError(str(path), ["the users file must hold a JSON list of user objects"])
    problems: list[str] = []
    users: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, raw in enumerate(data):
        if not isinstance(raw, dict):
            problems.append(f"item {i}: not a JSON object")
            continue
        uid = raw.get("user_id")
        if not isinstance(uid, str) or not uid.strip():
            problems.append(f"item {i}: user_id must be a non-empty string")
            continue
        if uid in seen:
            problems.append(f"item {i}: user_id {uid!r} appears more than once")
            continue
        seen.add(uid)
        status = raw.get("status", "active")
        if status not in STATUSES:
            problems.append(f"item {i}: status {status!r} is not one of {', '.join(STATUSES)}")
            continue
        user: dict[str, Any] = dict.fromkeys(USER_FIELDS)
        user.update(raw)
        user["status"] = status
        if not isinstance(user.get("org_ids"), list):
            user["org_ids"] = [user["org_id"]] if user.get("org_id") else []
        users.append(user)
    if problems:
        raise ConfigError(str(path), problems)
    return users
