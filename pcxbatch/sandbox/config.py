"""How a sandbox behaves: one frozen value, mapped 1:1 from the ``pcxbatch sandbox`` flags.

In: keyword arguments (every one defaulted). Out: a checked ``SandboxConfig``; a wrong value
raises ``ConfigError`` naming every problem at once. Also the generators for the credentials a
sandbox invents when none are given.

Which settings a person may set is defined here once, on the fields themselves
(``metadata``): ``help`` (the text ``pcxbatch sandbox --help`` shows), ``option`` (an option of
``pcxbatch sandbox``), ``job`` (a job may carry it under ``sandbox:``), and ``option_default``
where the command's default differs from the field's. :func:`sandbox_settings` lists them as
:class:`SandboxSetting` values; ``config`` checks a job's ``sandbox:`` keys from that list.
Standard library only (no server stack), so that ``config`` can import it cheaply.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import secrets
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pcxbatch.errors import ConfigError

__all__ = [
    "SandboxConfig",
    "SandboxSetting",
    "generate_api_key",
    "generate_jwt",
    "key_prefix",
    "sandbox_settings",
]


def _option(help: str, *, job: bool = True, **more: Any) -> dict[str, Any]:
    """The metadata of a field a person may set: an option of ``pcxbatch sandbox`` with this
    help text and, if ``job``, a key of a job's ``sandbox:``."""
    return {"help": help, "option": True, "job": job, **more}


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
    Answers that leave the truth open (``faults``): ``refuse_rate`` (a share of users whose
    deactivation is refused with 409, nothing changed), and per change ``wrong_status_rate`` (200
    showing the user as it was, nothing changed), ``html_rate`` (200 with a proxy's HTML page,
    nothing changed), ``applied_503_rate`` (applied, then 503), ``huge_rate`` (the answer padded
    far past any cap a client should hold).
    Misbehaviours: ``gateway_missing_path`` (403 "Missing Authentication Token" for unknown
    paths, as API Gateway answers), ``retry_after_seconds`` (the ``Retry-After`` of every 429;
    with a tiny ``rate``, a spent quota), ``trickle_ms`` (answers to changes sent one byte at a
    time; ``faults_on_list`` extends it to the list), ``repeat_page_key`` (paging that never
    ends), ``echo_credential`` (the credential reflected in a response header), ``echo_reason``
    (changes refused with a 400 whose message repeats the request's reason, control characters
    and all).
    """

    # Not in a job: a job's sandbox runs in-process or on a free loopback port.
    host: str = field(
        default="127.0.0.1",
        metadata=_option(
            "Interface to listen on (loopback unless you really mean otherwise).", job=False
        ),
    )
    # The command serves on a known port; in-process and in tests 0 picks a free one.
    port: int = field(
        default=0, metadata=_option("0 picks a free port.", job=False, option_default=8400)
    )
    users: int = field(default=200, metadata=_option("Seeded users."))
    seed: int = field(default=0, metadata=_option("Seed for users and faults."))
    users_file: Path | None = field(
        default=None,
        metadata=_option("JSON list of user objects to serve instead of seeded ones.", job=False),
    )
    # Never a secret in a job file.
    api_key: str | None = field(
        default=None,
        metadata=_option("The API key it accepts (default: a generated one, printed).", job=False),
    )
    jwt: str | None = None
    readonly_api_key: str | None = None
    rate: float | None = field(
        default=None, metadata=_option("Throttle: requests/s per key (429 beyond it).")
    )
    burst: int | None = field(
        default=None, metadata=_option("Throttle burst (default: the rate, rounded up).")
    )
    retry_after: bool = field(default=False, metadata=_option("Send Retry-After with 429 answers."))
    latency_ms: float = field(
        default=0.0, metadata=_option("Added latency per request (with jitter).")
    )
    latency_jitter_ms: float | None = None
    fail_rate: float = field(default=0.0, metadata=_option("Share of requests answered 502/503."))
    ghost_rate: float = field(
        default=0.0, metadata=_option("Share of changes applied and then answered 504.")
    )
    drop_rate: float = field(
        default=0.0, metadata=_option("Share of requests whose connection closes with no answer.")
    )
    # Gateway and server behaviours a client must survive (issue 11, 12).
    gateway_missing_path: bool = field(
        default=False,
        metadata=_option(
            "Answer unknown paths 403 Missing Authentication Token, as API Gateway does (else 404)."
        ),
    )
    retry_after_seconds: int | None = field(
        default=None,
        metadata=_option("Retry-After of every 429, in seconds (86400: a daily quota spent)."),
    )
    trickle_ms: float = field(
        default=0.0,
        metadata=_option("Send each status change's answer one byte at a time, this far apart."),
    )
    repeat_page_key: bool = field(
        default=False,
        metadata=_option("GET /users/list answers every page with the first page's key."),
    )
    echo_credential: bool = field(
        default=False,
        metadata=_option("Reflect the request's credential in a WWW-Authenticate header."),
    )
    echo_reason: bool = field(
        default=False,
        metadata=_option("Refuse changes with a 400 whose message repeats the request's reason."),
    )
    faults_on_list: bool = False
    deactivate_inactive: Literal[409, 200] = field(
        default=409, metadata=_option("Answer to deactivating an already inactive user.")
    )
    same_status: Literal[200, 409] = field(
        default=200, metadata=_option("Answer to setting the status a user already has.")
    )
    # -- answers that leave the truth open (sandbox/faults.py; README "What each answer means")
    refuse_rate: float = field(
        default=0.0,
        metadata=_option(
            "Share of users whose deactivation is refused with 409 (a payout is pending);"
            " nothing changes."
        ),
    )
    wrong_status_rate: float = field(
        default=0.0,
        metadata=_option("Share of changes answered 200 showing the user as it was; no change."),
    )
    html_rate: float = field(
        default=0.0,
        metadata=_option("Share of changes answered 200 with a proxy's HTML page; no change."),
    )
    applied_503_rate: float = field(
        default=0.0, metadata=_option("Share of changes applied and then answered 503.")
    )
    huge_rate: float = field(
        default=0.0,
        metadata=_option("Share of answers padded far past any sane size (4 MB); else normal."),
    )

    def __post_init__(self) -> None:
        problems = [
            *self._network_problems(),
            *self._pace_problems(),
            *self._fault_problems(),
            *self._credential_problems(),
        ]
        if problems:
            raise ConfigError("sandbox", problems)

    def _network_problems(self) -> list[str]:
        problems: list[str] = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port: {self.port} is not a TCP port (0-65535)")
        if self.users < 0:
            problems.append(f"users: {self.users} must be 0 or more")
        return problems

    def _pace_problems(self) -> list[str]:
        problems: list[str] = []
        if self.rate is not None and not (math.isfinite(self.rate) and self.rate > 0):
            problems.append(f"rate: {self.rate} must be a positive number of requests per second")
        if self.burst is not None and self.burst < 1:
            problems.append(f"burst: {self.burst} must be 1 or more")
        for name in ("latency_ms", "trickle_ms"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                problems.append(f"{name}: {value} must be 0 or more")
        if self.retry_after_seconds is not None and self.retry_after_seconds < 0:
            problems.append(f"retry_after_seconds: {self.retry_after_seconds} must be 0 or more")
        jitter = self.latency_jitter_ms
        if jitter is not None and not (math.isfinite(jitter) and jitter >= 0):
            problems.append(f"latency_jitter_ms: {jitter} must be 0 or more")
        return problems

    def _fault_problems(self) -> list[str]:
        problems: list[str] = []
        drawn = [f"{name}_rate" for name in _DRAWN_FAULTS]
        for name in (*drawn, "refuse_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                problems.append(f"{name}: {value} must be a probability between 0 and 1")
        if sum(getattr(self, name) for name in drawn) > 1.0 + 1e-9:
            problems.append(f"{' + '.join(drawn)} must not exceed 1")
        if self.deactivate_inactive not in (409, 200):
            problems.append(f"deactivate_inactive: {self.deactivate_inactive} must be 409 or 200")
        if self.same_status not in (200, 409):
            problems.append(f"same_status: {self.same_status} must be 200 or 409")
        return problems

    def _credential_problems(self) -> list[str]:
        problems: list[str] = []
        for name in ("api_key", "readonly_api_key", "jwt"):
            value = getattr(self, name)
            if value is not None and (not value or value == "NONE" or not value.isprintable()):
                problems.append(f"{name}: must be a non-empty printable string other than NONE")
            elif value is not None and any(c.isspace() for c in value):
                problems.append(f"{name}: must not contain spaces")
        if self.api_key is not None and self.api_key == self.readonly_api_key:
            problems.append("readonly_api_key: must differ from api_key")
        return problems

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


#: The faults drawn per request, in draw order (``faults.FAULTS``): their rates add up to 1 at most.
_DRAWN_FAULTS = ("fail", "ghost", "drop", "applied_503", "wrong_status", "html", "huge")


class SandboxSetting(NamedTuple):
    """One setting a person may give a sandbox (see the module docstring).

    ``type`` is the value's type (``int``, ``float``, ``bool``, ``str`` or ``Path``; a setting
    whose field may be ``None`` has ``default`` ``None`` and means "not set"). ``default`` is
    the ``pcxbatch sandbox`` option's default. ``choices`` lists the only values allowed, for a
    ``Literal`` field, else is empty. ``in_job``: a job may carry it under ``sandbox:``.
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] = ()
    in_job: bool = False


def sandbox_settings(*, job: bool = False) -> tuple[SandboxSetting, ...]:
    """The settable ``SandboxConfig`` fields, in field order: every ``pcxbatch sandbox`` option,
    or with ``job=True`` only those a job may carry under ``sandbox:``."""
    return tuple(s for s in _all_settings() if s.in_job or not job)


@functools.cache
def _all_settings() -> tuple[SandboxSetting, ...]:
    hints = typing.get_type_hints(SandboxConfig)
    found: list[SandboxSetting] = []
    for spec in fields(SandboxConfig):
        if not spec.metadata.get("option"):
            continue
        kind, choices = _value_type(hints[spec.name])
        default = spec.metadata.get("option_default", spec.default)
        help_text = spec.metadata["help"]
        found.append(
            SandboxSetting(spec.name, kind, default, help_text, choices, spec.metadata["job"])
        )
    return tuple(found)


def _value_type(hint: Any) -> tuple[type, tuple[Any, ...]]:
    """``int`` for ``int | None``, ``(int, (409, 200))`` for ``Literal[409, 200]``."""
    if isinstance(hint, types.UnionType):
        (hint,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        return type(choices[0]), choices
    assert isinstance(hint, type), hint
    return hint, ()


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
