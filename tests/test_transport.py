"""The production wire (aiohttp) over real loopback sockets: what reaches the server, and that
every promise the httpx path kept still holds (no redirect followed, certificates verified, the
environment's proxy, the capped body, failures that say whether anything was sent).

The server is a few lines of asyncio that answers from a script and records each request's
raw head and body. Nothing here waits on a timer: every exchange ends when the bytes do.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from pcxbatch.client import CallResult, PcxClient, RetryPolicy
from pcxbatch.credentials import Credentials
from pcxbatch.limiter import Limiter
from pcxbatch.transport import _AIOHTTP_ERRORS, _as_httpx

KEY = "pcx_wire01_s3cr3tWirePart"
OK = b'{"message":"User deactivated","user":{"user_id":"u-1","status":"inactive"}}'


def reply(status: int = 200, body: bytes = OK, *headers: str) -> bytes:
    """A whole HTTP/1.1 answer."""
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class Seen:
    """One request as the server got it."""

    line: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Script:
    """Answers in order (the last one repeats); ``None`` closes the connection unanswered."""

    answers: list[bytes | None]
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *rest = head.decode("latin-1").split("\r\n")
                headers = {
                    k.lower(): v.strip() for k, _, v in (h.partition(":") for h in rest if h)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.seen.append(Seen(line, headers, body))
                answer = self.answers[min(len(self.seen), len(self.answers)) - 1]
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def served(
    script: Script,
    go: Callable[[str], Awaitable[Any]],
    tls: ssl.SSLContext | None = None,
) -> Any:
    server = await asyncio.start_server(script.handle, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        return await go(f"{'https' if tls else 'http'}://127.0.0.1:{port}/v1")
    finally:
        server.close()


def deactivate(
    script: Script,
    user_id: str = "u-1",
    *,
    attempts: int = 1,
    base: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> CallResult:
    async def go(url: str) -> CallResult:
        client = PcxClient(
            base or url,
            Credentials(api_key=KEY),
            limiter=Limiter(1_000_000),
            retry=RetryPolicy(max_attempts=attempts, base_delay=0.001, jitter=False),
            id_pattern=r"(?s).*",
            allow_insecure_http=base is not None,
        )
        async with client:
            return await client.deactivate(user_id, updated_by="ops", reason="Sanctions match")

    result: CallResult = asyncio.run(served(script, go, tls))
    return result


def test_what_reaches_the_server_is_what_the_httpx_path_sent() -> None:
    script = Script([reply()])
    result = deactivate(script, "ü:1")
    assert result.ok and result.user_status == "inactive"
    (seen,) = script.seen
    assert seen.line == "PUT /v1/users/%C3%BC%3A1/deactivate HTTP/1.1"  # encoded once, not twice
    assert seen.headers["x-api-key"] == KEY and seen.headers["authorization"] == "NONE"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["user-agent"].startswith("pcxbatch/")
    assert "accept-encoding" not in seen.headers  # compression is never asked for
    assert "cookie" not in seen.headers
    assert json.loads(seen.body) == {"updated_by": "ops", "reason": "Sanctions match"}
    assert seen.body == b'{"updated_by":"ops","reason":"Sanctions match"}'  # compact, as httpx


def test_a_redirect_is_never_followed() -> None:
    script = Script([reply(302, b"{}", "Location: https://elsewhere.example/v1/steal")])
    result = deactivate(script)
    assert result.http_status == 302 and len(script.seen) == 1


def test_an_answer_over_the_cap_is_not_read_and_its_connection_is_dropped() -> None:
    script = Script([reply(200, b"x" * (70 * 1024)), reply()])
    result = deactivate(script, attempts=2)
    assert result.ok and result.attempts == 2
    assert result.ambiguous  # the unread answer may have been to an applied change


def test_a_compressed_answer_is_inflated_under_the_cap() -> None:
    script = Script([reply(200, gzip.compress(OK), "Content-Encoding: gzip")])
    result = deactivate(script)
    assert result.ok and result.user_status == "inactive"


def test_a_connection_closed_after_the_request_is_ambiguous_and_retried_by_us_only() -> None:
    script = Script([None, reply()])
    result = deactivate(script, attempts=2)
    assert result.ok and result.attempts == 2 and result.ambiguous
    assert len(script.seen) == 2  # aiohttp's own silent resend is off: each attempt is ours
    one = deactivate(Script([None, reply()]), attempts=1)
    assert one.http_status is None and one.ambiguous


def test_a_refused_connection_sent_nothing() -> None:
    # A port nothing listens on: bind one, close it, then call it.
    async def closed_port() -> int:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port: int = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        return port

    port = asyncio.run(closed_port())
    script = Script([reply()])
    result = deactivate(script, base=f"http://127.0.0.1:{port}/v1")
    assert result.http_status is None and not result.ambiguous
    assert result.message == "could not connect to the API (Connection refused)"


def test_the_environment_proxy_is_used_with_its_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = Script([reply()])

    async def go(proxy: str) -> CallResult:
        monkeypatch.setenv("http_proxy", proxy.replace("http://", "http://ops:pa%3Ass@"))
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        client = PcxClient(
            "http://api.example.test/v1",
            Credentials(api_key=KEY),
            limiter=Limiter(1000),
            retry=RetryPolicy(max_attempts=1),
            allow_insecure_http=True,
        )
        async with client:
            return await client.deactivate("u-1", updated_by="ops", reason=None)

    result = asyncio.run(served(script, lambda url: go(url.removesuffix("/v1"))))
    assert result.ok
    (seen,) = script.seen
    assert seen.line == "PUT http://api.example.test/v1/users/u-1/deactivate HTTP/1.1"
    token = base64.b64encode(b"ops:pa:ss").decode()
    assert seen.headers["proxy-authorization"] == f"Basic {token}"


def test_a_certificate_nobody_vouches_for_is_refused(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    script = Script([reply()])

    async def go(url: str) -> str | None:
        client = PcxClient(url, Credentials(api_key=KEY), limiter=Limiter(1000))
        async with client:
            return (await client.probe(attempts=1)).failure

    assert asyncio.run(served(script, go, tls)) == "certificate"
    assert script.seen == []  # not one byte of the request left


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (aiohttp.ConnectionTimeoutError("connect"), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError("read"), httpx.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("cut"), httpx.RemoteProtocolError),
        (aiohttp.ClientOSError(104, "reset"), httpx.ReadError),
    ],
)
def test_aiohttp_failures_keep_httpx_meanings(error: aiohttp.ClientError, kind: type) -> None:
    # A read timeout is an asyncio.TimeoutError in aiohttp: unmapped, it would pass for the
    # attempt's deadline. Each must arrive as the httpx class the client's table knows.
    assert type(_as_httpx(error)) is kind
    assert all(issubclass(k, httpx.RequestError) for _, k in _AIOHTTP_ERRORS)
