"""The sandbox itself: users, credentials, throttle, faults and the request log, without HTTP.

In: a ``SandboxConfig`` and, for tests, the clocks and the sleep to use. Each request arrives as
an ``Incoming`` (method, raw path, query, headers, body bytes) and leaves as an ``Answer``
(status, JSON body, headers), or ``None`` when the sandbox drops the connection. Every request is
kept as a ``RequestRecord``. The ASGI adapter in ``app`` is the only HTTP-aware part.

The order of checks follows API Gateway in front of a Lambda: route, authorizer (401, then 403 on
role), per-credential throttle (429), then the integration: latency, faults (``faults``: 502/503,
504 or 503 after applying, dropped connection, a 200 that changes nothing, a padded answer), and
finally the handler (400, 404, 409, 200; a refused deactivation is a 409 there).

Thread-safety: the state changes under one lock, and user objects are replaced, never changed in
place, so a test thread can read ``users``/``requests`` while uvicorn serves in another thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import random
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, unquote

from pcxbatch.model import DEACTIVATED_STATUS, SETTABLE_STATUSES

from . import faults
from .app import SandboxApp
from .config import SandboxConfig, generate_api_key, generate_jwt, key_prefix
from .messages import JSON, Answer, Incoming
from .throttle import TokenBucket
from .users import STATUSES, iso, load_users_file, seed_users

#: Where the API lives under the server root, as in ``https://prod-api.pcxpay.com/v1``.
PREFIX = "/v1"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the sandbox received and what it did about it.

    ``time`` is the arrival time (epoch seconds). ``path`` is the path as sent (percent-encoded),
    ``user_id`` the decoded ID from it (``None`` for ``/users/list`` and unknown routes). ``body``
    is the JSON object sent, or ``None``. ``status`` is the answer's status, ``None`` when the
    connection was dropped. ``applied`` says whether the user's state changed. ``fault`` is the
    injected fault, one of ``faults.FAULTS`` (``"fail"``, ``"ghost"``, ``"drop"``, ...).
    ``caller`` names the credential without its secret (``"api_key:pcx_sbx1a2b3c4d"``,
    ``"jwt"``), ``None`` when refused.
    """

    time: float
    method: str
    path: str
    user_id: str | None
    body: JSON | None
    status: int | None
    applied: bool
    query: str = ""
    caller: str | None = None
    request_id: str | None = None
    fault: str | None = None
    response: JSON | None = None


@dataclass(frozen=True, slots=True)
class _Caller:
    name: str  # what the request log shows: never the secret
    bucket_key: str  # throttle buckets are per credential
    may_change: bool  # admin role: may change statuses


@dataclass(slots=True)
class _Exchange:
    """One request on its way through the sandbox, and what the request log will say of it."""

    request: Incoming
    arrival: float
    request_id: str
    route: str
    user_id: str | None
    body: JSON | None
    caller: _Caller | None = None
    plan: faults.Plan = field(default_factory=faults.Plan)
    applied: bool = False


def _error(status: int, message: str) -> Answer:
    return Answer(status, {"status": "error", "message": message})


def encode_key(user_id: str) -> str:
    """The opaque ``last_evaluated_key`` for a page ending at ``user_id`` (DynamoDB-like)."""
    raw = json.dumps({"user_id": user_id}, separators=(",", ":")).encode()
    return base64.b64encode(raw).decode("ascii")


def _decode_key(key: str) -> str | None:
    try:
        data = json.loads(base64.b64decode(key.encode("ascii"), validate=True))
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return None
    uid = data.get("user_id") if isinstance(data, dict) else None
    return uid if isinstance(uid, str) else None


class Sandbox:
    """A local PCX Users API: its state, its rules, and ``app``, the ASGI app serving it.

    ``clock`` (monotonic seconds) drives the throttle, ``wall_clock`` (epoch seconds) the request
    log and ``updated_at``, ``sleep`` the injected latency: tests pass virtual ones.
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.config = config = config or SandboxConfig()
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self.api_key: str = config.api_key or generate_api_key()
        self.jwt: str = config.jwt or generate_jwt()
        self.readonly_api_key: str = config.readonly_api_key or generate_api_key("sbxro")
        self._api_keys = {
            self.api_key: _Caller(f"api_key:{key_prefix(self.api_key)}", "k:" + self.api_key, True),
            self.readonly_api_key: _Caller(
                f"api_key:{key_prefix(self.readonly_api_key)}", "k:" + self.readonly_api_key, False
            ),
        }
        self._jwts = {self.jwt: _Caller("jwt", "j:" + self.jwt, True)}
        if config.users_file is not None:
            users = load_users_file(config.users_file)
        else:
            users = seed_users(config.users, config.seed)
        self._users: dict[str, JSON] = {u["user_id"]: u for u in users}
        self._position = {uid: i for i, uid in enumerate(self._users)}
        self._requests: list[RequestRecord] = []
        self._buckets: dict[str, TokenBucket] = {}
        # Separate streams, so that turning latency on does not change which requests fail.
        self._fault_rng = random.Random(f"pcx-sandbox-faults:{config.seed}")
        self._latency_rng = random.Random(f"pcx-sandbox-latency:{config.seed}")
        self._lock = threading.Lock()
        self.app = SandboxApp(self)

    # -- reading and arranging state (tests, the CLI) -------------------------------------------

    @property
    def users(self) -> dict[str, JSON]:
        """A snapshot of every user, ``user_id -> user object``, in the API's list order."""
        with self._lock:
            return {uid: {**u, "org_ids": list(u["org_ids"])} for uid, u in self._users.items()}

    @property
    def user_count(self) -> int:
        """How many users the sandbox holds (cheaper than ``len(users)``, which copies them)."""
        return len(self._users)

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the request log, oldest first."""
        with self._lock:
            return list(self._requests)

    def status_of(self, user_id: str) -> str | None:
        """The user's current status, ``None`` for an unknown user."""
        with self._lock:
            user = self._users.get(user_id)
            return None if user is None else str(user["status"])

    def set_status(self, user_id: str, status: str) -> None:
        """Arrange a user's status before a test (not logged as a request). KeyError if unknown."""
        if status not in STATUSES:
            raise ValueError(f"{status!r} is not a PCX status")
        with self._lock:
            self._users[user_id] = {**self._users[user_id], "status": status}

    def clear_requests(self) -> None:
        """Forget the request log (the users keep their state)."""
        with self._lock:
            self._requests.clear()

    # -- serving ---------------------------------------------------------------------------------

    async def handle(self, request: Incoming) -> Answer | None:
        """Answer one request, or return ``None`` to drop the connection without an answer."""
        arrival = self._wall_clock()
        request_id = str(uuid.uuid4())
        route, user_id = self._route(request)
        body = self._json_body(request) if route in ("deactivate", "activate") else None
        exchange = _Exchange(request, arrival, request_id, route, user_id, body)
        refusal = self._admit(exchange)
        answer = refusal if refusal is not None else await self._integrate(exchange)
        return self._done(exchange, answer)

    def _admit(self, exchange: _Exchange) -> Answer | None:
        """The gateway: route, authorizer (401, then 403 on role) and throttle (429). Returns the
        refusal, or ``None`` to let the request through."""
        if exchange.route == "not_found":
            if self.config.gateway_missing_path:  # API Gateway, before any authorizer runs
                return Answer(403, {"message": "Missing Authentication Token"})
            return _error(404, "Not Found")
        if exchange.route == "wrong_method":
            return _error(405, "Method Not Allowed")
        refusal, exchange.caller = self._authenticate(exchange.request.headers)
        if refusal is not None:
            return refusal
        assert exchange.caller is not None
        if exchange.route in ("deactivate", "activate") and not exchange.caller.may_change:
            return _error(403, "Forbidden: this credential may not change user statuses")
        return self._throttle(exchange.caller)

    async def _integrate(self, exchange: _Exchange) -> Answer | None:
        """The integration behind the gateway: latency, faults, then the handler."""
        changes = exchange.route in ("deactivate", "activate")
        plan = exchange.plan = self._plan(faulty=changes or self.config.faults_on_list)
        if plan.delay > 0:
            await self._sleep(plan.delay)
        if plan.fault == "fail":
            return faults.gateway(plan.fail_status)
        if plan.fault == "drop" and not plan.drop_after_apply:
            return None
        if plan.fault in ("wrong_status", "html") and changes:
            unchanged = self._not_applied(exchange, plan.fault)
            if unchanged is not None:
                return unchanged
        answer = self._handler(exchange)
        if plan.fault == "drop":
            return None
        if plan.fault in ("ghost", "applied_503"):
            return faults.gateway(504 if plan.fault == "ghost" else 503)
        return faults.padded(answer) if plan.fault == "huge" else answer

    def _not_applied(self, exchange: _Exchange, fault: str) -> Answer | None:
        """A 200 for a change that is not made: a proxy's page, or the user as it is (only for
        a user that exists and a body that would be accepted; ``None`` otherwise)."""
        if fault == "html":
            return faults.html_page()
        body = exchange.body
        if body is None or isinstance(_target(exchange.route, body), Answer):
            return None
        with self._lock:
            user = self._users.get(exchange.user_id or "")
        return None if user is None else faults.as_it_was(exchange.route, user, body.get("reason"))

    def _handler(self, exchange: _Exchange) -> Answer:
        """The Lambda: 413 for an oversized body, else list users or change one."""
        request = exchange.request
        if request.body_too_large:
            return _error(413, "Request body too large")
        if exchange.route == "list":
            return self._list(request.query)
        answer, exchange.applied = self._change(
            exchange.route, exchange.user_id or "", exchange.body
        )
        return answer

    def _done(self, exchange: _Exchange, answer: Answer | None) -> Answer | None:
        """Log the request; stamp the answer (``None``: drop the connection) with its ID."""
        request = exchange.request
        record = RequestRecord(
            time=exchange.arrival,
            method=request.method,
            path=request.raw_path,
            user_id=exchange.user_id,
            body=exchange.body,
            status=None if answer is None else answer.status,
            applied=exchange.applied,
            query=request.query,
            caller=exchange.caller.name if exchange.caller else None,
            request_id=exchange.request_id,
            fault=exchange.plan.fault,
            response=None if answer is None else answer.body,
        )
        with self._lock:
            self._requests.append(record)
        if answer is None:
            return None
        headers = (("x-amzn-RequestId", exchange.request_id), *answer.headers)
        return dataclasses.replace(answer, headers=headers)

    def _route(self, request: Incoming) -> tuple[str, str | None]:
        path = request.raw_path
        if not path.startswith(PREFIX + "/"):
            return "not_found", None
        parts = path[len(PREFIX) + 1 :].split("/")
        if parts == ["users", "list"]:
            return ("list" if request.method == "GET" else "wrong_method"), None
        if len(parts) == 3 and parts[0] == "users" and parts[2] in ("deactivate", "activate"):
            user_id = unquote(parts[1])
            if not user_id:
                return "not_found", None
            return (parts[2] if request.method == "PUT" else "wrong_method"), user_id
        return "not_found", None

    @staticmethod
    def _json_body(request: Incoming) -> JSON | None:
        if request.body_too_large or not request.body:
            return None
        try:
            data = json.loads(request.body)
        except (UnicodeDecodeError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _authenticate(self, headers: Mapping[str, str]) -> tuple[Answer | None, _Caller | None]:
        """Check both headers exactly as PCX documents them: the unused one carries ``NONE``."""
        authorization = headers.get("authorization")
        api_key = headers.get("x-api-key")
        if authorization is None or api_key is None:
            missing = "Authorization" if authorization is None else "X-Api-Key"
            return _error(401, f"Unauthorized: the {missing} header is missing"), None
        if authorization == "NONE" and api_key == "NONE":
            return _error(401, "Unauthorized: Authorization and X-Api-Key are both NONE"), None
        if authorization != "NONE" and api_key != "NONE":
            message = (
                "Unauthorized: send a Bearer token or an API key, and NONE in the other header"
            )
            return _error(401, message), None
        if api_key != "NONE":
            caller = self._api_keys.get(api_key)
            if caller is None:
                return _error(401, "Unauthorized: invalid or revoked API key"), None
            return None, caller
        scheme, _, token = authorization.partition(" ")
        caller = self._jwts.get(token) if scheme.lower() == "bearer" else None
        if caller is None:
            return _error(401, "Unauthorized: invalid or expired token"), None
        return None, caller

    def _throttle(self, caller: _Caller) -> Answer | None:
        rate = self.config.rate
        if rate is None:
            return None
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(caller.bucket_key)
            if bucket is None:
                bucket = TokenBucket(rate, self.config.effective_burst, now)
                self._buckets[caller.bucket_key] = bucket
            wait = bucket.take(now)
        if wait <= 0:
            return None
        headers: tuple[tuple[str, str], ...] = ()
        if self.config.retry_after_seconds is not None:
            headers = (("Retry-After", str(self.config.retry_after_seconds)),)
        elif self.config.retry_after:
            headers = (("Retry-After", str(max(1, int(-(-wait // 1))))),)
        return dataclasses.replace(faults.gateway(429), headers=headers)

    def _plan(self, *, faulty: bool) -> faults.Plan:
        config = self.config
        plan = faults.Plan()
        with self._lock:
            if config.latency_ms > 0:
                jitter = config.effective_jitter_ms
                ms = config.latency_ms + self._latency_rng.uniform(-jitter, jitter)
                plan.delay = max(0.0, ms) / 1000.0
            if faulty:
                faults.draw(config, self._fault_rng, plan)
        return plan

    # -- the handlers ----------------------------------------------------------------------------

    def _change(self, action: str, user_id: str, body: JSON | None) -> tuple[Answer, bool]:
        """Run ``/deactivate`` or ``/activate``; return the answer and whether state changed."""
        if body is None:
            return _error(400, "Invalid request body: expected a JSON object"), False
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            return _error(400, "reason must be a string"), False
        if reason and self.config.echo_reason:  # a server that repeats what it was sent
            return _error(400, f"Invalid reason: {reason}"), False
        target = _target(action, body)
        if isinstance(target, Answer):
            return target, False
        now = iso(datetime.fromtimestamp(self._wall_clock(), UTC))
        with self._lock:
            user = self._users.get(user_id)
            if user is None:
                return _error(404, "User not found"), False
            refused = action == "deactivate" and user["status"] != target
            if refused and faults.refuses(self.config, user_id):
                return _error(409, faults.PAYOUT_PENDING), False
            unchanged = user["status"] == target
            if not unchanged:
                user = {**user, "status": target, "updated_at": now}
                self._users[user_id] = user
        return self._changed(action, target, user, unchanged, reason)

    def _changed(
        self, action: str, target: str, user: JSON, unchanged: bool, reason: str | None
    ) -> tuple[Answer, bool]:
        """The answer to a change the user's state now reflects (409 for a no-op, if so set)."""
        if action == "deactivate":
            if unchanged and self.config.deactivate_inactive == 409:
                return _error(409, "User is already inactive"), False
            message = "User deactivated successfully"
            return Answer(200, {"message": message, "user": user, "reason": reason}), not unchanged
        if unchanged and self.config.same_status == 409:
            return _error(409, f"User already has status '{target}'"), False
        message = "User status updated successfully"
        return Answer(200, {"message": message, "user": user}), not unchanged

    def _list(self, query: str) -> Answer:
        params: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            params.setdefault(name, value)
        raw_limit = params.get("limit", "10")
        limit = int(raw_limit) if raw_limit.isdigit() else 0
        if limit < 1:
            return _error(400, "limit must be a positive integer")
        status = params.get("status")
        if status is not None and status not in STATUSES:
            return _error(400, f"status must be one of: {', '.join(STATUSES)}")
        after = self._after(params.get("last_evaluated_key", ""))
        if after is None:
            return _error(400, "Invalid last_evaluated_key")
        return self._page(params, limit, after)

    def _after(self, key: str) -> int | None:
        """The list position a ``last_evaluated_key`` ends at: -1 for none, ``None`` if invalid."""
        if not key or key == "null":
            return -1
        last = _decode_key(key)
        if last is None or last not in self._position:
            return None
        return self._position[last]

    def _page(self, params: Mapping[str, str], limit: int, after: int) -> Answer:
        """Up to ``limit`` users past position ``after`` that pass the filters in ``params``."""
        status, org_id = params.get("status"), params.get("org_id")
        role, kind = params.get("role"), params.get("type")
        page: list[JSON] = []
        total = 0
        more = False
        with self._lock:
            for uid, user in self._users.items():
                if not _matches(user, status, role, kind, org_id):
                    continue
                total += 1
                if self._position[uid] <= after:
                    continue
                if len(page) < limit:
                    page.append(user)
                else:
                    more = True
        last_key = encode_key(page[-1]["user_id"]) if more and page else None
        if self.config.repeat_page_key and page:  # a paging bug: the first key, for ever
            last_key = params.get("last_evaluated_key") or encode_key(page[-1]["user_id"])
        return Answer(
            200, {"users": page, "count": len(page), "total": total, "last_evaluated_key": last_key}
        )


def _target(action: str, body: JSON) -> str | Answer:
    """The status a change asks for, or the 400 that refuses its body."""
    if action == "deactivate":
        updated_by = body.get("updated_by")
        if not isinstance(updated_by, str) or not updated_by.strip():
            return _error(400, "updated_by is required")
        return DEACTIVATED_STATUS
    wanted = body.get("status")
    if wanted is None:
        return _error(400, "status is required")
    if wanted == DEACTIVATED_STATUS:
        return _error(
            400, "status 'inactive' cannot be set here: use PUT /users/{user_id}/deactivate"
        )
    if not isinstance(wanted, str) or wanted not in SETTABLE_STATUSES:
        return _error(400, f"status must be one of: {', '.join(SETTABLE_STATUSES)}")
    return wanted


def _matches(
    user: JSON, status: str | None, role: str | None, kind: str | None, org_id: str | None
) -> bool:
    """Whether ``user`` passes the list filters that were given."""
    if status is not None and user["status"] != status:
        return False
    if role is not None and user["role"] != role:
        return False
    if kind is not None and user["type"] != kind:
        return False
    return org_id is None or user["org_id"] == org_id or org_id in user["org_ids"]
