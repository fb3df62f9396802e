"""The API credential: one API key or one JWT, from the environment or from a file.

In: the environment (``PCX_API_KEY``, else ``PCX_JWT``) or the path of a credentials file a job
names. Out: a :class:`Credentials`, whose only way out of the process is as request headers
(:meth:`Credentials.headers`); a missing or malformed credential is a
:class:`~pcxbatch.errors.ConfigError` that names the variable or the file, never the value.

It lives apart from ``client`` (which sends it) because the CLI, the runner and the tests load
and describe credentials without sending anything. Standard library only.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pcxbatch.errors import ConfigError

__all__ = ["API_KEY_ENV", "JWT_ENV", "Credentials"]

API_KEY_ENV = "PCX_API_KEY"
JWT_ENV = "PCX_JWT"

_KEY_PREFIX = re.compile(r"^(pcx_[A-Za-z0-9-]{1,40}_)(.+)$")
_JWT_SHAPE = re.compile(r"^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$")
# Header values: visible ASCII only (no spaces inside, no CR/LF that could inject headers).
_TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Credentials:
    """One API credential: exactly one of ``api_key`` and ``jwt`` is set.

    ``repr()``/``str()`` never contain the secret; use :meth:`describe` to name it to a person.
    """

    api_key: str | None = field(default=None, repr=False)
    jwt: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.api_key is None) == (self.jwt is None):
            raise ValueError("Credentials need exactly one of api_key and jwt")
        value = self.api_key if self.api_key is not None else self.jwt
        assert value is not None
        if not _TOKEN_CHARS.match(value):
            # Do not echo the value: it is a secret even when malformed.
            raise ValueError("the credential is empty or holds spaces or non-ASCII characters")

    def describe(self) -> str:
        """A safe name for the credential: the key's non-secret prefix, or just ``JWT …``."""
        if self.api_key is not None:
            match = _KEY_PREFIX.match(self.api_key)
            if match:
                return f"API key {match.group(1)}…"
            return "API key (not in the pcx_<id>_<secret> form)"
        return "JWT …"

    def pacing_key(self) -> str | None:
        """What runs sharing this API key's limit call it: its non-secret prefix, never the
        secret (None for a JWT, or a key not in the ``pcx_<id>_<secret>`` form)."""
        match = _KEY_PREFIX.match(self.api_key or "")
        return f"api_key:{match.group(1)}" if match else None

    def __repr__(self) -> str:
        return f"Credentials({self.describe()})"

    def __str__(self) -> str:
        return self.describe()

    def headers(self) -> dict[str, str]:
        """Both auth headers, the unused one set to the literal ``NONE`` (pcxbatch/CONTRACT.md)."""
        if self.api_key is not None:
            return {"Authorization": "NONE", "X-Api-Key": self.api_key}
        return {"Authorization": f"Bearer {self.jwt}", "X-Api-Key": "NONE"}

    def redact(self, text: str) -> str:
        """``text`` with the secret, and each secret part of it, replaced by ``[redacted]``.

        A server that echoes the credential in its error text must not put it in a report.
        """
        secret = self.api_key if self.api_key is not None else self.jwt
        assert secret is not None
        parts = [secret]
        if self.api_key is not None and (match := _KEY_PREFIX.match(secret)):
            parts.append(match.group(2))  # the part after pcx_<id>_
        if self.jwt is not None:
            parts += self.jwt.split(".")[1:]  # payload and signature; the header is generic
        for part in parts:
            if len(part) >= 8 and part in text:
                text = text.replace(part, "[redacted]")
        return text

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Credentials | None:
        """``PCX_API_KEY``, else ``PCX_JWT``, else ``None``. Empty values count as unset.

        Raises :class:`ConfigError` (naming the variable, never its value) for a malformed one.
        """
        for name in (API_KEY_ENV, JWT_ENV):
            value = environ.get(name, "").strip()
            if value:
                return cls._build(name, value, source=f"environment variable {name}")
        return None

    @classmethod
    def from_file(cls, path: Path) -> Credentials:
        """Read a credential file: the API key (or a JWT) alone, or ``PCX_API_KEY=...`` /
        ``PCX_JWT=...`` lines (``export``, quotes, blank lines and ``#`` comments allowed;
        other variables are ignored; ``PCX_API_KEY`` wins over ``PCX_JWT``).

        Raises :class:`ConfigError` with a clear message that never quotes the file's contents.
        """
        source = str(path)
        found, bare = _parse_file(_read_file(path))
        for name in (API_KEY_ENV, JWT_ENV):
            if name in found:
                return cls._build(name, found[name], source=f"{source}: {name}")
        if len(bare) == 1:
            ((_, value),) = bare
            kind = JWT_ENV if _JWT_SHAPE.match(value) else API_KEY_ENV
            return cls._build(kind, value, source=source)
        if bare:
            lines = ", ".join(str(number) for number, _ in bare[:5])
            problem = (
                f"credentials file has {len(bare)} candidate lines ({lines}); expected one "
                f"key, or {API_KEY_ENV}=... / {JWT_ENV}=... lines"
            )
        else:
            problem = (
                f"credentials file holds no credential; expected the key, or a "
                f"{API_KEY_ENV}=... or {JWT_ENV}=... line"
            )
        raise ConfigError(source, [problem])

    @classmethod
    def _build(cls, kind: str, value: str, *, source: str) -> Credentials:
        if kind == JWT_ENV and value.lower().startswith("bearer "):
            value = value[len("bearer ") :].strip()  # pasted with its scheme
        try:
            return cls(api_key=value) if kind == API_KEY_ENV else cls(jwt=value)
        except ValueError as exc:
            raise ConfigError(source, [str(exc)]) from None


def _read_file(path: Path) -> str:
    """The file's text, refused when group or others may read or write it: a key is a secret of
    its owner's, and a shared key file is one nobody can say who used."""
    try:
        with path.open("rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if mode & 0o077:
                raise ConfigError(
                    str(path),
                    [
                        f"the credentials file may be read or changed by others (mode"
                        f" {stat.S_IMODE(mode):04o}); make it yours alone: chmod 600 {path}"
                    ],
                )
            return f.read().decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(str(path), ["credentials file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise ConfigError(str(path), [f"cannot read the credentials file: {reason}"]) from None


def _parse_file(text: str) -> tuple[dict[str, str], list[tuple[int, str]]]:
    """The credential variables a file sets (first one wins), and its other non-comment lines
    as (line number, text): candidates for a bare key."""
    found: dict[str, str] = {}
    bare: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not (sep and _VARIABLE.fullmatch(name)):
            bare.append((number, line))
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1].strip()
        if name in (API_KEY_ENV, JWT_ENV) and value:
            found.setdefault(name, value)
    return found, bare
