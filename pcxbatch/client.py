"""The PCX Users API over HTTP: what each call sends, and what each answer or failure means.

In: a base URL, a :class:`~pcxbatch.credentials.Credentials`, the run's shared
:class:`~pcxbatch.limiter.Pacer` (a ``Limiter``), a :class:`~pcxbatch.retry.RetryPolicy`. Out: one
:class:`CallResult` per status change (never an exception for an answer the API gave, except
401/403, which raise :class:`~pcxbatch.errors.AuthError`), :class:`UsersPage` pages from
``GET /users/list``, and the preflight's :meth:`PcxClient.probe`.

What every call does (pcxbatch/CONTRACT.md):

- Checks the user ID with ``pcxbatch.rules.check_user_id`` (the job's pattern and the
  path-safety rule, the one ``validate`` applies) and percent-encodes it into the URL path. A
  refused ID raises ``ValueError``: ``validate`` should have made it an ``invalid`` row.
- Sends both ``Authorization`` and ``X-Api-Key`` (the unused one is the literal ``NONE``).
- Each attempt takes a slot from the limiter (a 429 tells it ``on_throttled``, any other answer
  ``on_success``) and has a total deadline (``deadline``, the job's ``request_timeout``) around
  the whole exchange, the body read included: a trickling answer times out too.
- The attempts of a call run under ``retry.Retrier``: 429, 502, 503, 504 and transport errors
  are retried with backoff or ``Retry-After``, a ``Retry-After`` over the policy's ``max_wait``
  stops the run, a listener (:meth:`PcxClient.listen`) hears of every attempt, and after
  :meth:`PcxClient.halt` no new attempt starts. One DEBUG line per attempt: method, path,
  status, time; never a header or a credential.
- Reads each answer's body incrementally under a cap (``bodies``: 64 KB for a change, more for
  a list page by its ``limit``); a larger one is a failed attempt (retried), and a change it
  answered may have been made.
- Marks the result ``ambiguous`` when an earlier attempt may have been applied by the server
  although we never saw it succeed: a 5xx (the integration ran, or may have, before it failed
  or the gateway gave up), an answer too large to read, or a connection that failed after the
  request was sent (or outlived its deadline). A connect error is not ambiguous: nothing was
  sent.

The bytes go over a ``transport.Wire``: aiohttp in a run, any httpx transport when one is
injected (tests). Failures arrive as httpx's exception classes either way, and what each one
means (retried or not, sent or not) is decided here, once.

Secrets never leave ``Credentials`` except as request headers, and no message built here
contains a header or a response's user object (personal data).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json as jsonlib
import logging
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from pcxbatch import __version__, bodies
from pcxbatch.credentials import Credentials
from pcxbatch.errors import AuthError, StoppedError
from pcxbatch.limiter import Pacer
from pcxbatch.model import SETTABLE_STATUSES, UsersPage, UserState
from pcxbatch.retry import (
    AMBIGUOUS_STATUSES,
    DEADLINE,
    RETRY_STATUSES,
    Attempt,
    AttemptListener,
    Retrier,
    RetryPolicy,
    Tally,
    parse_retry_after,
)
from pcxbatch.rules import DEFAULT_ID_PATTERN, check_base_url, check_user_id, compile_id_pattern
from pcxbatch.transport import AiohttpWire, HttpxWire, Reply, Timeouts, Wire

# RetryPolicy and parse_retry_after live in ``retry``; they stay importable from here, where
# callers meet them (``PcxClient(retry=RetryPolicy(...))``).
__all__ = [
    "CallResult",
    "ListUsersError",
    "PcxClient",
    "RetryPolicy",
    "UserState",
    "UsersPage",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

#: The gateway gives up after ~29 s; our read timeout must be longer so that we see its 504
#: (and its request id) instead of guessing.
TIMEOUT = Timeouts(connect=10.0, read=35.0)
#: Attempts of the preflight read: enough to ride out a blip, few enough to fail fast.
PROBE_ATTEMPTS = 3
USER_AGENT = f"pcxbatch/{__version__}"
#: How httpx encoded ``json=``: compact, UTF-8, no NaN.
_JSON = jsonlib.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_DEFAULT_RETRY = RetryPolicy()
_NO_USERS_LIST = "the user list answer has no 'users' list"


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallResult:
    """What one status change came to, after every attempt.

    ``http_status`` is the final answer's status, ``None`` when the last attempt got no answer.
    ``request_id`` is the final (or last seen) ``x-amzn-RequestId``. ``ambiguous`` says an earlier
    attempt may have been applied although no success was seen. ``body`` is the final answer's
    JSON object (``None`` when it was not one, or was larger than the cap): it holds personal
    data, so never log it. ``user_status`` is the status of the user the final answer shows.
    """

    http_status: int | None
    attempts: int
    request_id: str | None
    message: str
    ambiguous: bool
    throttled: int
    body: dict[str, Any] | None = field(repr=False)
    user_status: str | None = None

    @property
    def ok(self) -> bool:
        """The API answered 2xx."""
        return self.http_status is not None and 200 <= self.http_status < 300


class ListUsersError(StoppedError):
    """``GET /users/list`` failed after every attempt; ``result`` says how."""

    def __init__(self, result: CallResult) -> None:
        self.result = result
        status = result.http_status if result.http_status is not None else "no answer"
        super().__init__(f"listing users failed ({status}): {result.message}")


# --- parsing answers (``bodies``: the cap, the message, the JSON object) ------------------------

_NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
_RETRYABLE_ERRORS = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)
_ERROR_TEXT: tuple[tuple[type[Exception], str], ...] = (
    (httpx.ConnectTimeout, "timed out connecting to the API"),
    (httpx.ConnectError, "could not connect to the API"),
    (httpx.PoolTimeout, "timed out waiting for a free connection"),
    (httpx.ReadTimeout, f"no answer within {TIMEOUT.read:g} s"),
    (httpx.WriteTimeout, "timed out sending the request"),
    (httpx.RemoteProtocolError, "the connection was closed without a complete answer"),
    (httpx.ReadError, "the connection failed while waiting for the answer"),
    (httpx.WriteError, "the connection failed while sending the request"),
    (httpx.ProxyError, "the proxy refused the request"),
    (httpx.DecodingError, "the answer could not be decoded"),
)


def _describe_error(exc: httpx.RequestError) -> str:
    what = next((text for kind, text in _ERROR_TEXT if isinstance(exc, kind)), type(exc).__name__)
    detail = bodies.clean(str(exc))
    if detail and len(detail) <= 120:
        what = f"{what} ({detail})"
    return what


def _failure_kind(exc: httpx.RequestError) -> str:
    """The kind of a failure with no answer (see :meth:`PcxClient.probe`)."""
    if isinstance(exc, httpx.ConnectError):
        cause: BaseException | None = exc
        while cause is not None:  # the ssl error sits under httpx's and httpcore's ConnectError
            if isinstance(cause, ssl.SSLError):
                return "certificate" if isinstance(cause, ssl.SSLCertVerificationError) else "tls"
            cause = cause.__cause__ or cause.__context__
        return "connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    return "dropped" if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError) else "other"


# --- the client ------------------------------------------------------------------------------


class PcxClient:
    """Calls the PCX Users API for one run. Use as ``async with PcxClient(...) as api:``.

    ``transport`` replaces the network (tests: ``httpx.MockTransport``/``ASGITransport``);
    ``sleep`` replaces ``asyncio.sleep`` between retries; ``id_pattern`` overrides
    ``rules.DEFAULT_ID_PATTERN``. ``max_connections`` should match the run's concurrency.
    ``deadline``: seconds one attempt may take in all (on the event loop's clock).

    ``base_url`` is checked by ``rules.check_base_url``, the rule job files are checked by:
    ``https://``; plain ``http://`` only for a loopback host (the local sandbox) or when the user
    asked for it by name (``allow_insecure_http``), and here also with an injected ``transport``
    (in-process, nothing on the wire). A refused URL raises ``ValueError``.
    TLS certificates are always verified.
    """

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        limiter: Pacer,
        retry: RetryPolicy = _DEFAULT_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 32,
        id_pattern: str | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        allow_insecure_http: bool = False,
        deadline: float = DEADLINE,
    ) -> None:
        if retry.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if not deadline > 0:
            raise ValueError("deadline must be positive")
        self.base_url = check_base_url(
            base_url, allow_insecure_http=allow_insecure_http or transport is not None
        )
        self.credentials = credentials
        self._limiter = limiter
        self._retry = retry
        self._retrier = Retrier(retry, sleep)
        self._id_pattern = compile_id_pattern(
            id_pattern if id_pattern is not None else DEFAULT_ID_PATTERN
        )
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        base = {**credentials.headers(), "User-Agent": USER_AGENT, "Accept": "application/json"}
        self._headers = {"GET": base, "PUT": {**base, "Content-Type": "application/json"}}
        # The wire's own timeouts (per connect, per read) stay under the attempt's deadline.
        timeouts = Timeouts(min(TIMEOUT.connect, deadline), min(TIMEOUT.read, deadline))
        self._deadline = deadline
        self._base_path = urllib.parse.urlsplit(self.base_url).path
        self._wire: Wire
        if transport is None:
            self._wire = AiohttpWire(
                max_connections=max_connections, timeouts=timeouts, base_url=self.base_url
            )
        else:
            self._wire = HttpxWire(transport, timeouts)

    async def __aenter__(self) -> PcxClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._wire.aclose()

    def __repr__(self) -> str:
        return f"PcxClient({self.base_url!r}, {self.credentials.describe()})"

    def listen(self, listener: AttemptListener) -> None:
        """Tell ``listener`` about every attempt and ``Retry-After`` wait from now on."""
        self._retrier.listener = listener

    def halt(self) -> None:
        """No new attempt: calls waiting for a slot or a retry raise ``retry.Halted`` at once."""
        self._retrier.brake.apply()

    # --- the calls ---------------------------------------------------------------------------

    async def deactivate(self, user_id: str, *, updated_by: str, reason: str | None) -> CallResult:
        """``PUT /users/{id}/deactivate``. Raises AuthError on 401/403, ValueError on a bad ID."""
        body: dict[str, Any] = {"updated_by": updated_by}
        if reason is not None:
            body["reason"] = reason
        return await self._put(f"users/{self._path_id(user_id)}/deactivate", body)

    async def set_status(self, user_id: str, *, status: str, reason: str | None) -> CallResult:
        """``PUT /users/{id}/activate`` ("admin status change") to one of SETTABLE_STATUSES."""
        if status not in SETTABLE_STATUSES:
            raise ValueError(f"/activate cannot set status {status!r}")
        body: dict[str, Any] = {"status": status}
        if reason is not None:
            body["reason"] = reason
        return await self._put(f"users/{self._path_id(user_id)}/activate", body)

    async def list_users(
        self,
        *,
        status: str | None = None,
        org_id: str | None = None,
        limit: int = 100,
        last_evaluated_key: str | None = None,
    ) -> UsersPage:
        """One page of ``GET /users/list``: the users and the key of the next page (None: last).

        Raises AuthError on 401/403 and :class:`ListUsersError` when the page cannot be had.
        """
        query = {"status": status, "org_id": org_id, "last_evaluated_key": last_evaluated_key}
        params: dict[str, str | int] = {"limit": limit}
        params.update({name: value for name, value in query.items() if value is not None})
        result = await self._call("GET", "users/list", params=params, limit=limit)
        if not result.ok or result.body is None or not isinstance(result.body.get("users"), list):
            if result.ok:
                result = dataclasses.replace(result, message=_NO_USERS_LIST)
            raise ListUsersError(result)
        users: list[UserState] = []
        for entry in result.body["users"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("user_id"), str | int):
                continue
            org = entry.get("org_id")
            org = str(org) if org not in (None, "") else None
            users.append(UserState(str(entry["user_id"]), str(entry.get("status") or ""), org))
        key, total = result.body.get("last_evaluated_key"), result.body.get("total")
        total = total if isinstance(total, int) and not isinstance(total, bool) else None
        return UsersPage(users, str(key) if key not in (None, "") else None, total)

    async def probe(self, attempts: int = PROBE_ATTEMPTS) -> Attempt:
        """The preflight's one cheap read, ``GET /users/list?limit=1``, with at most
        ``attempts`` attempts: the last attempt, whatever it got (401/403 included, no raise).
        Its ``failure`` says what kind of failure got no answer: ``connect``, ``tls`` (TLS
        refused: a plain port?), ``certificate``, ``timeout``, ``dropped`` or ``other``."""
        last, _ = await self._tries("GET", "users/list?limit=1", None, 1, attempts)
        return last

    # --- machinery ---------------------------------------------------------------------------

    def _path_id(self, user_id: str) -> str:
        # check_user_id applies the path-safety rule whatever the job's pattern allows.
        problem = check_user_id(user_id, self._id_pattern)
        if problem is not None:
            # A programming error: validate() turns such IDs into invalid rows before this.
            raise ValueError(f"refusing user ID {user_id!r}: it {problem}")
        return urllib.parse.quote(user_id, safe="")

    async def _put(self, path: str, body: dict[str, Any]) -> CallResult:
        return await self._call("PUT", path, json=body)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str | int] | None = None,
        limit: int | None = None,
    ) -> CallResult:
        """One call under the retry policy; 401/403 raise AuthError. ``limit``: the users a
        list page may hold (its answer's cap grows with it)."""
        # Encoded once per call, as httpx encoded ``json=`` and ``params=``: compact UTF-8 JSON.
        content = None if json is None else _JSON.encode(json).encode("utf-8")
        if params:
            path = f"{path}?{urllib.parse.urlencode(params)}"
        last, tally = await self._tries(method, path, content, limit, self._retry.max_attempts)
        if last.status in (401, 403):
            raise AuthError(
                last.status,
                last.message,
                last.request_id or tally.request_id,
                maybe_applied=tally.ambiguous,
            )
        return CallResult(
            http_status=last.status,
            attempts=tally.attempts,
            request_id=last.request_id or tally.request_id,
            message=last.message,
            ambiguous=tally.ambiguous,
            throttled=tally.throttled,
            body=last.body,
            user_status=bodies.user_status(last.body),
        )

    async def _tries(
        self, method: str, path: str, content: bytes | None, limit: int | None, attempts: int
    ) -> tuple[Attempt, Tally]:
        tally = Tally()
        url = f"{self.base_url}/{path}"
        cap = bodies.answer_cap(limit)
        attempt = functools.partial(self._attempt, tally, method, url, content, cap)
        name = f"{method} {self._base_path}/{path.partition('?')[0]}"  # the log: no query, host
        return await self._retrier.run(attempt, tally, attempts=attempts, name=name), tally

    async def _attempt(
        self, tally: Tally, method: str, url: str, content: bytes | None, cap: int
    ) -> Attempt:
        """One attempt: a send slot, the request, the whole answer within the deadline."""
        await self._retrier.brake.wait(self._limiter.acquire, ambiguous=tally.ambiguous)
        tally.attempts += 1
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._deadline):
                reply = await self._wire.exchange(method, url, self._headers[method], content, cap)
        except (httpx.RequestError, TimeoutError) as exc:
            attempt = self._failed(tally, exc)
        else:
            attempt = self._answered(tally, method, reply)
        return dataclasses.replace(attempt, seconds=time.perf_counter() - started)

    def _failed(self, tally: Tally, exc: httpx.RequestError | TimeoutError) -> Attempt:
        """An attempt that got no answer: a transport error, or the deadline passed."""
        if isinstance(exc, TimeoutError):  # the deadline: the request may well have arrived
            tally.ambiguous = True
            message = f"no complete answer within {self._deadline:g} s"
            return Attempt(None, message, None, None, None, True, "timeout")
        if not isinstance(exc, _NOTHING_SENT):
            tally.ambiguous = True
        retryable = isinstance(exc, _RETRYABLE_ERRORS)
        message = self.credentials.redact(_describe_error(exc))
        return Attempt(None, message, None, None, None, retryable, _failure_kind(exc))

    def _answered(self, tally: Tally, method: str, reply: Reply) -> Attempt:
        """An attempt the server answered: what it said, and what the limiter must know."""
        status, content = reply.status, reply.body
        request_id = reply.request_id
        if request_id:
            request_id = tally.request_id = self.credentials.redact(request_id)
        header = reply.retry_after
        retry_after = parse_retry_after(header)
        if status == 429:
            tally.throttled += 1
            # A wait longer than the run may take is not passed on: the call stops the run.
            long = retry_after is not None and retry_after > self._retry.max_wait
            self._limiter.on_throttled(None if long else retry_after)
        else:
            self._limiter.on_success()
        if status in AMBIGUOUS_STATUSES:
            tally.ambiguous = True
        header = bodies.clean(self.credentials.redact(header)) if header else None
        retry = status in RETRY_STATUSES
        if content.data is None:
            # Not read: whatever it said is unknown, so a change it answered may have been made.
            tally.ambiguous = tally.ambiguous or method == "PUT"
            problem = content.problem or ""
            return Attempt(status, problem, request_id, None, retry_after, True, None, header)
        redact = self.credentials.redact
        message, body = bodies.read_answer(
            status, reply.reason, content.data, reply.charset, redact
        )
        return Attempt(status, message, request_id, body, retry_after, retry, None, header)
