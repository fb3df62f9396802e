"""The ASGI face of a ``Sandbox``: HTTP in, ``Sandbox.handle`` in the middle, JSON out.

In: ASGI ``http`` scopes (from uvicorn over a socket, or from httpx's ``ASGITransport``
in-process). Out: a JSON response, or a dropped connection. A plain ASGI callable rather than a
framework: three routes do not need one, and the sandbox must never be the bottleneck.

Two misbehaviours live here, where the bytes are: ``trickle_ms`` sends an answer one byte at a
time, and ``echo_credential`` reflects the request's credential in a ``WWW-Authenticate``
header (what a careless server does, and what ``--debug`` must never print).

Dropping a connection with no answer at all: ASGI has no message for it, so under uvicorn the app
closes the connection's transport itself (reached through uvicorn's ``send``, whose owner holds
it) and waits for the disconnect, so that uvicorn writes nothing either. Where no transport can be
found (in-process), it raises ``ConnectionDropped`` before any response starts; the in-process
transport turns that into the error a client sees over a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from .messages import MAX_BODY_BYTES, Incoming

if TYPE_CHECKING:
    from .state import Sandbox

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ConnectionDropped(Exception):
    """Raised inside the app when it drops a connection it cannot close itself (in-process)."""


class SandboxApp:
    """ASGI 3 application serving one ``Sandbox``."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = bytearray()
        too_large = False
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            if len(body) + len(chunk) > MAX_BODY_BYTES:
                too_large = True
            elif not too_large:
                body += chunk
            more = message.get("more_body", False)
        raw_path = scope.get("raw_path") or scope["path"].encode()
        incoming = Incoming(
            method=scope["method"],
            raw_path=raw_path.split(b"?", 1)[0].decode("latin-1"),
            query=scope.get("query_string", b"").decode("latin-1"),
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            body=bytes(body),
            body_too_large=too_large,
        )
        answer = await self._sandbox.handle(incoming)
        if answer is None:
            await _drop(receive, send)
            return
        payload = answer.raw
        if payload is None:
            payload = json.dumps(answer.body, separators=(",", ":")).encode()
        headers = [
            (b"content-type", answer.content_type.encode("latin-1")),
            (b"content-length", str(len(payload)).encode()),
            *((k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers),
            *self._echo(incoming),
        ]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        config = self._sandbox.config
        if config.trickle_ms > 0 and (incoming.method == "PUT" or config.faults_on_list):
            await _trickle(payload, config.trickle_ms / 1000, receive, send)
            return
        await send({"type": "http.response.body", "body": payload})

    def _echo(self, incoming: Incoming) -> list[tuple[bytes, bytes]]:
        """The credential, reflected in a header, when the sandbox is told to be careless."""
        if not self._sandbox.config.echo_credential:
            return []
        key, auth = incoming.headers.get("x-api-key"), incoming.headers.get("authorization")
        shown = key if key not in (None, "NONE") else auth
        value = f'Bearer realm="pcx-sandbox", error="invalid_token", credential="{shown}"'
        return [(b"www-authenticate", value.encode("latin-1", "replace"))]


async def _trickle(payload: bytes, delay: float, receive: Receive, send: Send) -> None:
    """Send ``payload`` one byte every ``delay`` seconds, until done or the client has gone."""
    gone = asyncio.ensure_future(_disconnect(receive))
    try:
        for at in range(len(payload)):
            if (await asyncio.wait({gone}, timeout=delay))[0]:
                return
            more = at + 1 < len(payload)
            await send(
                {"type": "http.response.body", "body": payload[at : at + 1], "more_body": more}
            )
    finally:
        gone.cancel()


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _drop(receive: Receive, send: Send) -> None:
    # uvicorn's send is a bound method of its request/response cycle, which holds the transport.
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    close = getattr(transport, "close", None)
    if not callable(close):
        raise ConnectionDropped("the sandbox dropped the connection")
    close()
    # Once the server has seen the connection go, it neither answers 500 for a response we never
    # started nor logs an error; the timeout only guards against a server that never tells.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(2.0):
            while (await receive())["type"] != "http.disconnect":
                pass


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
