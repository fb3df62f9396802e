"""Passwords (argon2id, through argon2-cffi) and API tokens (random, kept only as a SHA-256).

In: a password or a token as typed or sent. Out: the hash the store keeps, and whether a
password or token matches one. Nothing here logs or returns a secret.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

#: argon2-cffi's defaults are argon2id with RFC 9106's low-memory profile.
_HASHER = PasswordHasher()

#: A hash to verify against when the account does not exist, so a wrong name costs as much
#: time as a wrong password (no telling which accounts exist from the answer's speed).
_DUMMY = _HASHER.hash(secrets.token_urlsafe(16))

MIN_PASSWORD = 12


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string) to store for ``password``."""
    return _HASHER.hash(password)


def check_password(stored: str | None, password: str) -> bool:
    """True when ``password`` matches ``stored`` (None: no such account, always False)."""
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    """A new API token: 32 random bytes, URL-safe."""
    return "pcxw_" + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the store keeps of a token (or a session id): its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def password_problem(password: str) -> str | None:
    """Why ``password`` may not be used, or None."""
    if len(password) < MIN_PASSWORD:
        return f"a password needs at least {MIN_PASSWORD} characters"
    return None
