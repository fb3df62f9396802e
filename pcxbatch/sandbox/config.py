"""How a sandbox behaves: one frozen value, mapped 1:1 from the ``pcxbatch sandbox`` flags.

In: keyword arguments (every one defaulted). Out: a checked ``SandboxConfig``; a wrong value
raises ``ConfigError`` naming every problem at once. Also the generators for the credentials a
sandbox invents when none are given.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pcxbatch.errors import ConfigError


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Everything a sandbox can be told; the defaults are a well-behaved PCX.

    Network: ``host`` (loopback unless asked), ``port`` (0 picks a free one).
    Users: ``users`` seeded from ``seed``, or ``users_file`` (a JSON list of user objects).
    Credentials (``None`` = generate one): ``api_key`` and ``jwt`` may change statuses;
    ``readonly_api_key`` is valid but its role may not (403 on the PUTs).
    Throttle (per credential, API Gateway style token bucket): ``rate`` requests/s (``None`` = no
    throttle), ``burst`` (``None`` = ``ceil(rate)``, at least 1), ``retry_after`` (send a
    ``Retry-After`` header on 429; Gateway does not).
    Latency: ``latency_ms`` plus a uniform jitter of +/- ``latency_jitter_ms`` (``None`` = 20%).
    Faults, each a probability per status change, drawn from ``seed``: ``fail_rate`` (502/503,
    nothing applied), ``ghost_rate`` (applied, then 504), ``drop_rate`` (connection closed with
    no answer; half of them after applying). ``faults_on_list`` lets fail/drop also hit
    ``GET /users/list`` (off by default, so reading state back stays reliable).
    Undocumented behaviours: ``deactivate_inactive`` (what ``/deactivate`` answers for a user
    already inactive) and ``same_status`` (what ``/activate`` answers for the status a user has).
    """

    host: str = "127.0.0.1"
    port: int = 0
    users: int = 200
    seed: int = 0
    users_file: Path | None = None
    api_key: str | None = None
    jwt: str | None = None
    readonly_api_key: str | None = None
    rate: float | None = None
    burst: int | None = None
    retry_after: bool = False
    latency_ms: float = 0.0
    latency_jitter_ms: float | None = None
    fail_rate: float = 0.0
    ghost_rate: float = 0.0
    drop_rate: float = 0.0
    faults_on_list: bool = False
    deactivate_inactive: Literal[409, 200] = 409
    same_status: Literal[200, 409] = 200

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port: {self.port} is not a TCP port (0-65535)")
        if self.users < 0:
            problems.append(f"users: {self.users} must be 0 or more")
        if self.rate is not None and not (math.isfinite(self.rate) and self.rate > 0):
            problems.append(f"rate: {self.rate} must be a positive number of requests per second")
        if self.burst is not None and self.burst < 1:
            problems.append(f"burst: {self.burst} must be 1 or more")
        if not (math.isfinite(self.latency_ms) and self.latency_ms >= 0):
            problems.append(f"latency_ms: {self.latency_ms} must be 0 or more")
        jitter = self.latency_jitter_ms
        if jitter is not None and not (math.isfinite(jitter) and jitter >= 0):
            problems.append(f"latency_jitter_ms: {jitter} must be 0 or more")
        for name in ("fail_rate", "ghost_rate", "drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                problems.append(f"{name}: {value} must be a probability between 0 and 1")
        if self.fail_rate + self.ghost_rate + self.drop_rate > 1.0 + 1e-9:
            problems.append("fail_rate + ghost_rate + drop_rate must not exceed 1")
        if self.deactivate_inactive not in (409, 200):
            problems.append(f"deactivate_inactive: {self.deactivate_inactive} must be 409 or 200")
        if self.same_status not in (200, 409):
            problems.append(f"same_status: {self.same_status} must be 200 or 409")
        for name in ("api_key", "readonly_api_key", "jwt"):
            value = getattr(self, name)
            if value is not None and (not value or value == "NONE" or not value.isprintable()):
                problems.append(f"{name}: must be a non-empty printable string other than NONE")
            elif value is not None and any(c.isspace() for c in value):
                problems.append(f"{name}: must not contain spaces")
        if self.api_key is not None and self.api_key == self.readonly_api_key:
            problems.append("readonly_api_key: must differ from api_key")
        if problems:
            raise ConfigError("sandbox", problems)

    @property
    def effective_burst(self) -> int:
        """The bucket size: ``burst`` when given, else one second's worth of ``rate``."""
        if self.burst is not None:
            return self.burst
        return max(1, math.ceil(self.rate or 1))

    @property
    def effective_jitter_ms(self) -> float:
        """The jitter amplitude: ``latency_jitter_ms`` when given, else 20% of the latency."""
        if self.latency_jitter_ms is not None:
            return self.latency_jitter_ms
        return self.latency_ms * 0.2


def generate_api_key(prefix: str = "sbx") -> str:
    """A fresh key shaped like a PCX key, ``pcx_<prefix><hex>_<secret>``."""
    return f"pcx_{prefix}{secrets.token_hex(4)}_{secrets.token_hex(16)}"


def generate_jwt() -> str:
    """A fresh bearer token that looks like a JWT (``eyJ...``). Only this sandbox accepts it."""

    def part(obj: dict[str, str]) -> str:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = part({"alg": "HS256", "typ": "JWT", "kid": "pcx-sandbox"})
    payload = part({"sub": "sandbox-admin", "role": "admin", "jti": secrets.token_hex(8)})
    return f"{header}.{payload}.{secrets.token_urlsafe(32)}"


def key_prefix(api_key: str) -> str:
    """The non-secret part of a PCX key (before the second ``_``), safe to show or log."""
    parts = api_key.split("_", 2)
    return "_".join(parts[:2]) if len(parts) == 3 else "(unrecognised key)"
