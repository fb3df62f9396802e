"""One HTTP exchange, request to capped body: the only module that knows aiohttp.

In: a method, a full URL (path already percent-encoded, query included), headers, the body's
bytes and the answer's cap. Out: a :class:`Reply` (status, reason, the headers pcxbatch reads,
charset, and the body as ``bodies.read_body`` kept it), or an ``httpx.RequestError`` saying how
the exchange failed. ``client`` decides what a reply or a failure means; a wire only moves
bytes.

Two wires, one contract (:class:`Wire`):

- :class:`AiohttpWire`, what a run sends through. aiohttp's client costs a fraction of the CPU
  of httpx's own stack (httpx, httpcore, anyio, h11: 65-70 % of a run's CPU on loopback;
  ``bench/client_cost.py``), and a key allowed thousands of requests a second must not be held
  back by pcxbatch. It keeps every promise the httpx path kept: no redirect followed, TLS
  certificates verified (httpx's context: certifi's roots), the proxy the environment names
  (:func:`environment_proxy`, the rule ``httpx.AsyncClient`` applies), no cookies, no netrc,
  no compression asked for, the connect and per-read timeouts, and its failures mapped onto
  httpx's exception classes (:data:`_AIOHTTP_ERRORS`) so that ``client`` keeps one table of
  what each failure means (sent or not, retryable or not).
- :class:`HttpxWire`, over any ``httpx.AsyncBaseTransport``: what tests inject
  (``MockTransport``, ``ASGITransport``, the in-process sandbox), so that httpx stays the
  client's interface for driving it.
"""

from __future__ import annotations

import os
import ssl
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx
from yarl import URL

from pcxbatch import bodies

__all__ = ["AiohttpWire", "HttpxWire", "Reply", "Timeouts", "Wire", "environment_proxy"]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to connect and to wait for each read."""

    connect: float
    read: float


@dataclass(frozen=True, slots=True)
class Reply:
    """What the server answered: ``status``, ``reason`` phrase, the ``x-amzn-RequestId`` and
    ``Retry-After`` headers as sent, the content type's ``charset``, and the capped ``body``."""

    status: int
    reason: str
    request_id: str | None
    retry_after: str | None
    charset: str | None
    body: bodies.Body


class Wire(Protocol):
    """Sends one request and reads its answer under a cap."""

    async def exchange(
        self, method: str, url: str, headers: Mapping[str, str], content: bytes | None, cap: int
    ) -> Reply:
        """One exchange; raises ``httpx.RequestError`` (a subclass saying how) on failure."""
        ...

    async def aclose(self) -> None:
        """Close the connections."""
        ...


# --- production: aiohttp ----------------------------------------------------------------------

#: aiohttp's failures as httpx's classes, most specific first (subclasses before their bases:
#: a certificate error is a connector error is an OS error). What each class means for a
#: retry and for "may have been applied" is decided once, in ``client``.
_AIOHTTP_ERRORS: tuple[tuple[type[BaseException], type[httpx.RequestError]], ...] = (
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # DNS, refused, TLS, certificate
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),  # before anything was sent
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),  # a body cut short or malformed
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # not a valid HTTP answer
    (aiohttp.ClientOSError, httpx.ReadError),  # reset after the request may have left
    (aiohttp.ClientError, httpx.ReadError),
)


def _as_httpx(exc: aiohttp.ClientError) -> httpx.RequestError:
    kind = next(k for base, k in _AIOHTTP_ERRORS if isinstance(exc, base))
    text = str(exc)
    if isinstance(exc, aiohttp.ClientConnectorError) and not isinstance(exc, ssl.SSLError):
        # "Cannot connect to host h:p ssl:default [why]": the host is in every message
        # already, and the why (refused, no such host) is what a person can act on.
        error = exc.os_error
        text = os.strerror(error.errno) if error.errno else (error.strerror or text)
    return kind(text or type(exc).__name__)


class AiohttpWire:
    """The production wire: one aiohttp session, at most ``max_connections`` connections.

    The session is made on first use: aiohttp binds it to the running event loop, and a
    client may be built (and closed unused) outside one.
    """

    def __init__(self, *, max_connections: int, timeouts: Timeouts, base_url: str) -> None:
        self._limit = max_connections
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.connect, sock_read=timeouts.read
        )
        self._session: aiohttp.ClientSession | None = None
        # A user and password in the proxy's URL become its Proxy-Authorization (aiohttp).
        self._proxy = environment_proxy(base_url)

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._limit,
            limit_per_host=0,
            ssl=httpx.create_ssl_context(verify=True),  # certificates are always checked
        )
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            cookie_jar=aiohttp.DummyCookieJar(),  # PCX sets none; a proxy's must not stick
            trust_env=False,  # the proxy is picked once, above; and no credentials from netrc
            auto_decompress=False,  # bodies.read_body inflates under the cap
            skip_auto_headers=("Accept-Encoding",),  # never ask for compression
            requote_redirect_url=False,
        )
        # aiohttp sends an idempotent request (PUT) again, unseen, when its connection drops
        # after the request left. That hidden attempt would bypass the limiter, and its answer
        # (a 409 for the change the first one made) would hide that the change may have been
        # applied. Every attempt is ``retry``'s to make. No public switch exists (aiohttp's
        # own test client sets this): tests/test_transport.py fails if it stops working.
        session._retry_connection = False
        return session

    async def exchange(
        self, method: str, url: str, headers: Mapping[str, str], content: bytes | None, cap: int
    ) -> Reply:
        """One exchange (see :class:`Wire`); the connection is dropped when the body is not
        read to its end (over the cap, a failure, the deadline)."""
        session = self._session
        if session is None:
            session = self._session = self._open()
        response: aiohttp.ClientResponse | None = None
        whole = False
        try:
            response = await session.request(
                method,
                URL(url, encoded=True),  # already percent-encoded: never encoded twice
                headers=headers,
                data=content,
                allow_redirects=False,
                proxy=self._proxy,
            )
            got = response.headers
            length, coding = got.get("Content-Length"), got.get("Content-Encoding")
            chunks: AsyncIterator[bytes] = response.content.iter_any()
            if coding is None and length is not None and length.isdigit() and int(length) <= cap:
                # A plain answer that says how long it is, within the cap (nearly every one):
                # aiohttp stops at the declared length, so reading it whole is reading under the
                # cap, at a fraction of the cost of chunk by chunk.
                chunks = bodies.one_chunk(await response.read())
            body = await bodies.read_body(chunks, cap=cap, length=length, encoding=coding)
            whole = body.data is not None
            return Reply(
                response.status,
                response.reason or "",
                got.get("x-amzn-RequestId"),
                got.get("Retry-After"),
                response.charset,
                body,
            )
        except aiohttp.ClientError as exc:
            raise _as_httpx(exc) from exc
        finally:
            if response is not None:
                if whole:
                    response.release()
                else:
                    response.close()

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``ALL_PROXY``,
    ``NO_PROXY``), as ``httpx.AsyncClient`` picks it by default; ``None`` for a direct
    connection."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    if not proxies or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and "://" not in proxy:
        proxy = f"http://{proxy}"  # HTTPS_PROXY=host:port, as httpx reads it
    return proxy


# --- injected: any httpx transport --------------------------------------------------------------


class HttpxWire:
    """An ``httpx.AsyncBaseTransport`` as a wire (tests: in-process transports)."""

    def __init__(self, transport: httpx.AsyncBaseTransport, timeouts: Timeouts) -> None:
        self._transport = transport
        self._timeout: dict[str, Any] = {
            "connect": timeouts.connect,
            "read": timeouts.read,
            "write": timeouts.read,
            "pool": None,
        }

    async def exchange(
        self, method: str, url: str, headers: Mapping[str, str], content: bytes | None, cap: int
    ) -> Reply:
        """One exchange (see :class:`Wire`) through the transport."""
        request = httpx.Request(
            method, url, content=content, headers=headers, extensions={"timeout": self._timeout}
        )
        response = await self._transport.handle_async_request(request)
        try:
            body = await _read_capped(response, cap)
        finally:
            await response.aclose()
        got = response.headers
        return Reply(
            response.status_code,
            response.reason_phrase,
            got.get("x-amzn-RequestId"),
            got.get("Retry-After"),
            response.charset_encoding,
            body,
        )

    async def aclose(self) -> None:
        """Close the transport."""
        await self._transport.aclose()


async def _read_capped(response: httpx.Response, cap: int) -> bodies.Body:
    """The body under ``cap`` (``bodies.read_body``); one that an in-process transport already
    holds whole is only measured."""
    if response.is_stream_consumed:
        whole = bodies.one_chunk(response.content)
        return await bodies.read_body(whole, cap=cap, length=None, encoding=None)
    length, coding = (response.headers.get(h) for h in ("content-length", "content-encoding"))
    return await bodies.read_body(response.aiter_raw(), cap=cap, length=length, encoding=coding)
