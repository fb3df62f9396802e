"""The installation's Ed25519 key: made once, kept owner-only, used to sign checkpoints.

In: the key file's path (``REPORT_DIR/.audit-key``, or ``PCXBATCH_AUDIT_KEY``). Out: a
:class:`Signer` (sign, public key, fingerprint) and :func:`check_signature` for a verifier,
which needs only the public key. The only module that uses ``cryptography``.

Whoever can read the key file (the account pcxbatch runs as) can sign anything, including a
rewritten log: that is why the public key's fingerprint and the latest head should also be
kept outside the installation (``pcxbatch audit key`` / ``audit head``).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pcxbatch.errors import UnusableError

FINGERPRINT_PREFIX = "sha256:"


def fingerprint(public_raw: bytes) -> str:
    """``sha256:<hex>`` of the raw 32-byte public key: what people compare and keep outside."""
    return FINGERPRINT_PREFIX + hashlib.sha256(public_raw).hexdigest()


def same_fingerprint(a: str, b: str) -> bool:
    """Whether two fingerprints name the same key (the ``sha256:`` prefix and case optional)."""

    def norm(text: str) -> str:
        return text.strip().lower().removeprefix(FINGERPRINT_PREFIX)

    return norm(a) == norm(b)


@dataclass(frozen=True)
class Signer:
    """A loaded private key."""

    key: Ed25519PrivateKey

    @property
    def public_raw(self) -> bytes:
        """The 32 raw bytes of the public key."""
        return self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def public_b64(self) -> str:
        """The public key, base64: what checkpoints and evidence packs carry."""
        return base64.b64encode(self.public_raw).decode("ascii")

    @property
    def fingerprint(self) -> str:
        """The public key's fingerprint (:func:`fingerprint`)."""
        return fingerprint(self.public_raw)

    def sign(self, message: bytes) -> str:
        """The signature of ``message``, base64."""
        return base64.b64encode(self.key.sign(message)).decode("ascii")


def check_signature(public_b64: str, message: bytes, signature_b64: str) -> bool:
    """Whether ``signature_b64`` is the signature of ``message`` by the key ``public_b64``."""
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64, validate=True))
        public.verify(base64.b64decode(signature_b64, validate=True), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def public_pem(public_b64: str) -> bytes:
    """The public key as a PEM file (what ``openssl pkeyutl -verify -pubin`` reads)."""
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64, validate=True))
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_raw(public_b64: str) -> bytes:
    """The raw bytes of a base64 public key (:class:`ValueError` if it is not one)."""
    raw = base64.b64decode(public_b64, validate=True)
    Ed25519PublicKey.from_public_bytes(raw)
    return raw


def load_or_create(path: Path) -> Signer:
    """The key in ``path``, made (owner-only, never replacing a file) when there is none.

    :class:`UnusableError` when the file is not ours, is readable by group or others, or is not
    a key: a signature is only worth the secrecy of the key.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return _create(path)
    except OSError as exc:
        raise UnusableError(_refused(path, exc)) from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise UnusableError(f"{path}: the audit key is not a plain file of yours; remove it")
        if info.st_mode & 0o077:
            raise UnusableError(
                f"{path}: the audit signing key may be read by group or others, who could sign"
                f" a rewritten log with it; make it yours alone: chmod 600 {path}"
            )
        data = f.read()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError:
        raise UnusableError(f"{path}: not an audit signing key (not an Ed25519 PEM key)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UnusableError(f"{path}: not an Ed25519 key")
    return Signer(key)


def _create(path: Path) -> Signer:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return load_or_create(path)
    except OSError as exc:
        raise UnusableError(_refused(path, exc)) from None
    try:
        os.write(fd, pem)
        os.fsync(fd)
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return Signer(key)


def _refused(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return f"{path}: the audit key is a symbolic link; pcxbatch never follows one there"
    return f"{path}: cannot use the audit signing key: {exc.strerror or exc}"
