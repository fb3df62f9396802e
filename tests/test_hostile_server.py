"""A hostile or careless server: answers that echo the credential back (some gateways put the
key they refused into their error text) must not carry it into a row's message, the report or
the terminal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pcxbatch.client import CallResult, PcxClient, RetryPolicy
from pcxbatch.credentials import Credentials
from pcxbatch.errors import AuthError

KEY = "pcx_echotest_s3cr3tEchoedBack0123456789"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJlY2hvIn0.s1gnatureEchoedBack0123456789"
SECRETS = ("s3cr3tEchoedBack0123456789", "s1gnatureEchoedBack0123456789")


class FreeLimiter:
    """Lets every request go at once (pacing is not what is tested here)."""

    async def acquire(self) -> None:
        return None

    def on_success(self) -> None:
        return None

    def on_throttled(self, retry_after: float | None = None) -> None:
        return None


def echo(status: int, shape: str) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        seen = f"{request.headers.get('x-api-key')} / {request.headers.get('authorization')}"
        if shape == "json":
            return httpx.Response(status, json={"message": f"credential {seen} refused"})
        if shape == "error":
            return httpx.Response(status, json={"message": "no", "error": f"bad {seen}"})
        return httpx.Response(status, text=f"<html>credential {seen} refused</html>")

    return answer


def call(credentials: Credentials, server: Callable[[httpx.Request], httpx.Response]) -> Any:
    async def go() -> CallResult | AuthError:
        client = PcxClient(
            "https://api.example.test/v1",
            credentials,
            limiter=FreeLimiter(),
            retry=RetryPolicy(max_attempts=1, jitter=False),
            transport=httpx.MockTransport(server),
        )
        async with client:
            try:
                return await client.deactivate("u-1", updated_by="ops", reason=None)
            except AuthError as exc:
                return exc

    return asyncio.run(go())


@pytest.mark.parametrize("credentials", [Credentials(api_key=KEY), Credentials(jwt=JWT)])
@pytest.mark.parametrize("status", [400, 401, 502])
@pytest.mark.parametrize("shape", ["json", "error", "text"])
def test_an_echoed_credential_never_reaches_a_message(
    credentials: Credentials, status: int, shape: str
) -> None:
    outcome = call(credentials, echo(status, shape))
    shown = str(outcome) if isinstance(outcome, AuthError) else outcome.message
    assert "refused" in shown or "no" in shown  # the server's words do come through
    for secret in SECRETS:
        assert secret not in shown, shown


def test_the_credential_is_in_the_headers_the_server_sees() -> None:
    # The echo test above is only meaningful if the server really has the secret to echo.
    outcome = call(Credentials(api_key=KEY), echo(400, "json"))
    assert isinstance(outcome, CallResult)
    assert outcome.http_status == 400
