"""The PCX Users API over HTTP: the only module that knows httpx.

In: a base URL, a :class:`~pcxbatch.credentials.Credentials`, the run's shared
:class:`~pcxbatch.limiter.Limiter`, a :class:`~pcxbatch.retry.RetryPolicy`. Out: one
:class:`CallResult` per status change (never an exception for an answer the API gave, except
401/403, which raise :class:`~pcxbatch.errors.AuthError`), and :class:`UserState` pages from
``GET /users/list``.

What every call does (pcxbatch/CONTRACT.md):

- Checks the user ID with ``pcxbatch.rules.check_user_id`` (the job's pattern and the
  path-safety rule, the one ``validate`` applies) and percent-encodes it before it goes into the
  URL path. A refused ID raises ``ValueError``: ``validate`` should have turned it into an
  ``invalid`` row long before.
- Sends both ``Authorization`` and ``X-Api-Key`` (the unused one is the literal ``NONE``).
- Each attempt first takes a slot from the limiter; a 429 tells the limiter ``on_throttled``,
  any other answer ``on_success``.
- Retries 429, 502, 503, 504 and transport errors (timeouts, resets, dropped connections) up to
  :attr:`RetryPolicy.max_attempts` attempts in all, waiting ``Retry-After`` when the server sends
  one (capped at ``MAX_RETRY_AFTER``), else the policy's jittered exponential backoff. Never
  retries other statuses. When attempts run out, the last answer is returned, not raised.
- Reads each answer's body incrementally under a cap (``bodies``: 64 KB for a change, more for
  a list page by its ``limit``); a larger one is a failed attempt (retried), and a change it
  answered may have been made.
- Marks the result ``ambiguous`` when an earlier attempt may have been applied by the server
  although we never saw it succeed: a 5xx (the integration ran, or may have, before it failed
  or the gateway gave up), an answer too large to read, or a connection that failed after the
  request was sent. A connect error is not ambiguous: nothing was sent.

Secrets never leave ``Credentials`` except as request headers, and no message built here
contains a header or a response's user object (personal data).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from pcxbatch import __version__, bodies
from pcxbatch.credentials import Credentials
from pcxbatch.errors import AuthError, StoppedError
from pcxbatch.limiter import Limiter
from pcxbatch.model import SETTABLE_STATUSES
from pcxbatch.retry import (
    AMBIGUOUS_STATUSES,
    MAX_RETRY_AFTER,
    RETRY_STATUSES,
    RetryPolicy,
    parse_retry_after,
)
from pcxbatch.rules import DEFAULT_ID_PATTERN, check_base_url, check_user_id, compile_id_pattern

# RetryPolicy and parse_retry_after live in ``retry``; they stay importable from here, where
# callers meet them (``PcxClient(retry=RetryPolicy(...))``).
__all__ = [
    "CallResult",
    "ListUsersError",
    "PcxClient",
    "RetryPolicy",
    "UserPage",
    "UserState",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

#: The gateway gives up after ~29 s; our read timeout must be longer so that we see its 504
#: (and its request id) instead of guessing.
TIMEOUT = httpx.Timeout(connect=10.0, read=35.0, write=35.0, pool=None)
#: Connections per httpx pool (see PcxClient.__init__ for why there are several pools).
CONNECTIONS_PER_POOL = 4
USER_AGENT = f"pcxbatch/{__version__}"
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


@dataclass(frozen=True)
class UserState:
    """What pcxbatch needs to know about a user (no personal data)."""

    user_id: str
    status: str
    org_id: str | None


@dataclass(frozen=True)
class UserPage:
    """One page of ``GET /users/list``: its users, the next page's key (``None``: the last), and
    ``total``, how many users the filter matches in all (``None`` when the API did not say)."""

    users: list[UserState]
    key: str | None
    total: int | None


class ListUsersError(StoppedError):
    """``GET /users/list`` failed after every attempt; ``result`` says how."""

    def __init__(self, result: CallResult) -> None:
        self.result = result
        status = result.http_status if result.http_status is not None else "no answer"
        super().__init__(f"listing users failed ({status}): {result.message}")


@dataclass(frozen=True)
class _Try:
    """One attempt, boiled down to what we keep (no response object, no headers)."""

    status: int | None
    message: str
    request_id: str | None
    body: dict[str, Any] | None
    retry_after: float | None
    retryable: bool


@dataclass
class _Tally:
    attempts: int = 0
    throttled: int = 0
    ambiguous: bool = False
    request_id: str | None = None


# --- parsing answers (``bodies``: the cap, the message, the JSON object) ------------------------

_NOTHING_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
)
_RETRYABLE_ERRORS: tuple[type[httpx.TransportError], ...] = (
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


# --- the client ------------------------------------------------------------------------------


class PcxClient:
    """Calls the PCX Users API for one run. Use as ``async with PcxClient(...) as api:``.

    ``transport`` replaces the network (tests: ``httpx.MockTransport``/``ASGITransport``);
    ``sleep`` replaces ``asyncio.sleep`` between retries; ``id_pattern`` overrides
    ``rules.DEFAULT_ID_PATTERN``. ``max_connections`` should match the run's concurrency:
    one pooled, kept-alive connection per worker.

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
        limiter: Limiter,
        retry: RetryPolicy = _DEFAULT_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 32,
        id_pattern: str | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        allow_insecure_http: bool = False,
    ) -> None:
        if retry.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        self.base_url = check_base_url(
            base_url, allow_insecure_http=allow_insecure_http or transport is not None
        )
        self.credentials = credentials
        self._limiter = limiter
        self._retry = retry
        self._sleep = sleep
        self._id_pattern = compile_id_pattern(
            id_pattern if id_pattern is not None else DEFAULT_ID_PATTERN
        )
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._headers = httpx.Headers(
            {**credentials.headers(), "User-Agent": USER_AGENT, "Accept": "application/json"}
        )
        self._timeout = TIMEOUT.as_dict()
        # Requests go straight to httpx transports rather than through httpx.AsyncClient, whose
        # layers (URL merging, cookie jar, auth and redirect flows, hooks) cost a third of a
        # request's CPU and give pcxbatch nothing: redirects are never followed, no cookies.
        # httpcore's pool scans all its connections on every request (encode/httpx#3215): one
        # pool of 32 connections costs more CPU than the requests themselves and caps a run
        # at a few hundred calls/s. Several small pools, each request sent through the least
        # busy one, keep that scan short. An in-process transport has no pool: used as given.
        self._transports: list[httpx.AsyncBaseTransport]
        if transport is None:
            pools = math.ceil(max_connections / CONNECTIONS_PER_POOL)
            per_pool = math.ceil(max_connections / pools)
            limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
            verify = httpx.create_ssl_context(verify=True)  # certificates are always checked
            proxy = _environment_proxy(httpx.URL(self.base_url))
            self._transports = [
                httpx.AsyncHTTPTransport(verify=verify, limits=limits, proxy=proxy)
                for _ in range(pools)
            ]
        else:
            self._transports = [transport]
        self._busy = [0] * len(self._transports)

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
        """Close the connection pools."""
        await asyncio.gather(*(t.aclose() for t in self._transports))

    def __repr__(self) -> str:
        return f"PcxClient({self.base_url!r}, {self.credentials.describe()})"

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
    ) -> tuple[list[UserState], str | None]:
        """One page of ``GET /users/list``: the users and the key of the next page (None: last).

        Raises AuthError on 401/403 and :class:`ListUsersError` when the page cannot be had.
        """
        page = await self.list_page(
            status=status, org_id=org_id, limit=limit, last_evaluated_key=last_evaluated_key
        )
        return page.users, page.key

    async def list_page(
        self,
        *,
        status: str | None = None,
        org_id: str | None = None,
        limit: int = 100,
        last_evaluated_key: str | None = None,
    ) -> UserPage:
        """:meth:`list_users` with the listing's ``total`` (what a full read would cost)."""
        query = {"status": status, "org_id": org_id, "last_evaluated_key": last_evaluated_key}
        params: dict[str, str | int] = {"limit": limit}
        params.update({name: value for name, value in query.items() if value is not None})
        result = await self._call("GET", "users/list", params=params)
        if not result.ok or result.body is None or not isinstance(result.body.get("users"), list):
            if result.ok:
                result = dataclasses.replace(result, message=_NO_USERS_LIST)
            raise ListUsersError(result)
        users: list[UserState] = []
        for entry in result.body["users"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("user_id"), str | int):
                continue
            org = entry.get("org_id")
            users.append(
                UserState(
                    user_id=str(entry["user_id"]),
                    status=str(entry.get("status") or ""),
                    org_id=str(org) if org not in (None, "") else None,
                )
            )
        key, total = result.body.get("last_evaluated_key"), result.body.get("total")
        known = isinstance(total, int) and not isinstance(total, bool)
        return UserPage(
            users, str(key) if key not in (None, "") else None, total if known else None
        )

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
    ) -> CallResult:
        """One call under the retry policy: attempt; while the answer is retryable (see
        ``_attempt``) and attempts remain, wait (``RetryPolicy.wait``) and attempt again.

        A plain loop rather than a ``tenacity.AsyncRetrying`` per call: the policy reads in
        these lines, and costs nothing per request. A tenacity controller cannot be shared by
        concurrent calls (it keeps the iteration on itself), and building and driving one cost
        45-55 us of CPU per call on this machine, about 5 % of a request (bench/RESULTS.md).
        """
        tally = _Tally()
        policy = self._retry
        last = await self._attempt(tally, method, path, json, params)
        while last.retryable and tally.attempts < policy.max_attempts:
            wait = policy.wait(tally.attempts, last.retry_after)
            log.debug(
                "%s %s: attempt %d got %s; retrying in %.2f s",
                method,
                path,
                tally.attempts,
                last.status or last.message,
                wait,
            )
            await self._sleep(wait)
            last = await self._attempt(tally, method, path, json, params)
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

    async def _attempt(
        self,
        tally: _Tally,
        method: str,
        path: str,
        json: dict[str, Any] | None,
        params: dict[str, str | int] | None,
    ) -> _Try:
        await self._limiter.acquire()
        tally.attempts += 1
        request = httpx.Request(
            method,
            f"{self.base_url}/{path}",
            params=params,
            json=json,
            headers=self._headers,
            extensions={"timeout": self._timeout},
        )
        cap = bodies.answer_cap(int(params["limit"]) if params and "limit" in params else None)
        pool = self._busy.index(min(self._busy))
        self._busy[pool] += 1
        try:
            response = await self._transports[pool].handle_async_request(request)
            try:
                content = await _read_capped(response, cap)
            finally:
                await response.aclose()
        except httpx.RequestError as exc:
            if not isinstance(exc, _NOTHING_SENT):
                tally.ambiguous = True
            retryable = isinstance(exc, _RETRYABLE_ERRORS)
            return _Try(None, _describe_error(exc), None, None, None, retryable)
        finally:
            self._busy[pool] -= 1
        status = response.status_code
        request_id = response.headers.get("x-amzn-RequestId")
        if request_id:
            request_id = self.credentials.redact(request_id)
            tally.request_id = request_id
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is not None:
            # Capped once, here: both the wait and what the limiter is told use the cap.
            retry_after = min(retry_after, MAX_RETRY_AFTER)
        if status == 429:
            tally.throttled += 1
            self._limiter.on_throttled(retry_after)
        else:
            self._limiter.on_success()
        if status in AMBIGUOUS_STATUSES:
            tally.ambiguous = True
        if content.data is None:
            # Not read: whatever it said is unknown, so a change it answered may have been made.
            tally.ambiguous = tally.ambiguous or method == "PUT"
            return _Try(status, content.problem or "", request_id, None, retry_after, True)
        redact = self.credentials.redact
        charset = response.charset_encoding
        reason = response.reason_phrase
        message, body = bodies.read_answer(status, reason, content.data, charset, redact)
        return _Try(status, message, request_id, body, retry_after, status in RETRY_STATUSES)


async def _read_capped(response: httpx.Response, cap: int) -> bodies.Body:
    """The body under ``cap`` (``bodies.read_body``); one that an in-process transport already
    holds whole is only measured."""
    if response.is_stream_consumed:
        whole = bodies.one_chunk(response.content)
        return await bodies.read_body(whole, cap=cap, length=None, encoding=None)
    length, coding = (response.headers.get(h) for h in ("content-length", "content-encoding"))
    return await bodies.read_body(response.aiter_raw(), cap=cap, length=length, encoding=coding)


def _environment_proxy(url: httpx.URL) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``),
    as ``httpx.AsyncClient`` picks it by default; ``None`` for a direct connection."""
    proxies = urllib.request.getproxies()
    if not proxies or urllib.request.proxy_bypass(url.host):
        return None
    return proxies.get(url.scheme) or proxies.get("all")
