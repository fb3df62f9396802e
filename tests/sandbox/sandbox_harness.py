"""Test helpers for the sandbox tests: a virtual clock and sleep, and a ``Harness`` that talks
to one sandbox either in-process (httpx ASGITransport) or through real loopback sockets.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from pcxbatch.sandbox import RunningSandbox, Sandbox, inprocess_transport

# Building an SSL context loads the CA bundle (tens of ms); the loopback clients never use TLS
# but httpx builds one per client, so they share this one (verification stays on).
_TLS = ssl.create_default_context()


class FakeSleep:
    """An injected ``sleep`` that records the delays asked for and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class FakeClock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    """One sandbox and a way to talk to it (``mode`` is ``inprocess`` or ``loopback``)."""

    mode: str
    sandbox: Sandbox
    base_url: str
    clock: FakeClock
    sleep: FakeSleep
    running: RunningSandbox | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def key_headers(self, key: str | None = None) -> dict[str, str]:
        """Headers for the API-key flow (the admin key unless told)."""
        return {"X-Api-Key": key or self.sandbox.api_key, "Authorization": "NONE"}

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """A client bound to the sandbox; each call gets a fresh one."""
        if self.mode == "inprocess":
            kwargs["transport"] = inprocess_transport(self.sandbox)
        else:
            kwargs["verify"] = _TLS
        return httpx.AsyncClient(base_url=self.base_url, timeout=10, **kwargs)

    def run(self, fn: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
        """Run ``fn(client)`` to completion in a fresh event loop."""

        async def main() -> Any:
            async with self.client() as client:
                return await fn(client)

        return asyncio.run(main())

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request with the admin key (unless ``headers`` says otherwise)."""
        sent = self.key_headers() if headers is None else headers

        async def go(client: httpx.AsyncClient) -> httpx.Response:
            return await client.request(
                method, path, json=json, content=content, params=params, headers=sent
            )

        result: httpx.Response = self.run(go)
        return result

    def deactivate(self, user_id: str, **kwargs: Any) -> httpx.Response:
        body = kwargs.pop("json", {"updated_by": "tests", "reason": "test"})
        return self.call("PUT", f"/users/{user_id}/deactivate", json=body, **kwargs)

    def activate(self, user_id: str, status: str, **kwargs: Any) -> httpx.Response:
        return self.call("PUT", f"/users/{user_id}/activate", json={"status": status}, **kwargs)

    def uid(self, status: str = "active", index: int = 0) -> str:
        """The ``index``-th user with ``status``."""
        return [u for u, v in self.sandbox.users.items() if v["status"] == status][index]
