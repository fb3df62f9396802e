"""Reach a sandbox in-process with httpx: no sockets, same behaviour as over loopback.

In: a ``Sandbox``. Out: an ``httpx.AsyncBaseTransport`` for ``httpx.AsyncClient(transport=...)``.
A dropped connection surfaces as ``httpx.RemoteProtocolError``, the error httpx raises when a
server closes a connection without answering, so client code classifies both the same way.
"""

from __future__ import annotations

import httpx

from .app import ConnectionDropped
from .state import Sandbox

#: A base URL for in-process clients; the host part is never resolved.
INPROCESS_BASE_URL = "http://pcx-sandbox.invalid/v1"


class _InProcessTransport(httpx.AsyncBaseTransport):
    def __init__(self, sandbox: Sandbox) -> None:
        self._asgi = httpx.ASGITransport(app=sandbox.app, client=("127.0.0.1", 49152))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._asgi.handle_async_request(request)
        except ConnectionDropped:
            # Same class and wording as httpx over a socket whose peer closed without answering.
            message = "Server disconnected without sending a response."
            raise httpx.RemoteProtocolError(message, request=request) from None

    async def aclose(self) -> None:
        await self._asgi.aclose()


def inprocess_transport(sandbox: Sandbox) -> httpx.AsyncBaseTransport:
    """An httpx transport that runs ``sandbox.app`` in the caller's event loop."""
    return _InProcessTransport(sandbox)
