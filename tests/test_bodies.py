"""What the client keeps of an answer: never more than the cap, and what the answer shows.

Over ``httpx.MockTransport`` (the helpers of ``test_client``): bodies streamed in chunks, so a
test can see how much of a huge answer was ever pulled off the wire.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from test_client import Harness, Server, answer, ok

from pcxbatch.bodies import MAX_ANSWER_BYTES, Body, answer_cap, read_body
from pcxbatch.client import RetryPolicy
from pcxbatch.errors import AuthError

CHUNK = 16 * 1024


class Endless(httpx.AsyncByteStream):
    """A body of ``size`` bytes handed out in chunks, counting how many were pulled."""

    def __init__(self, size: int, prefix: bytes = b'{"message":"ok","padding":"') -> None:
        self.size = size
        self.prefix = prefix
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.prefix
        self.pulled += len(self.prefix)
        while self.pulled < self.size:
            self.pulled += CHUNK
            yield b"x" * CHUNK

    async def aclose(self) -> None:
        pass


def streamed(status: int, stream: httpx.AsyncByteStream, **headers: str) -> httpx.Response:
    return httpx.Response(status, stream=stream, headers={"x-amzn-RequestId": "req", **headers})


def test_a_huge_answer_is_never_read_past_the_cap_and_is_a_failed_attempt() -> None:
    bodies = [Endless(600 * 1024 * 1024), Endless(600 * 1024 * 1024)]
    h = Harness(Server(*(streamed(200, b) for b in bodies)), retry=RetryPolicy(max_attempts=2))
    result = h.deactivate()
    for body in bodies:  # a few chunks past the cap at most, never the 600 MB
        assert body.pulled <= MAX_ANSWER_BYTES + 2 * CHUNK
    assert result.attempts == 2  # retried like a dropped connection
    assert result.http_status == 200 and result.body is None and result.user_status is None
    assert "larger than 64 KB" in result.message
    assert result.ambiguous  # the change it answered may have been made


def test_a_huge_answer_then_a_clear_one_keeps_the_ambiguity() -> None:
    already = answer(409, {"status": "error", "message": "User is already inactive"})
    h = Harness(Server(streamed(200, Endless(10 * 1024 * 1024)), already))
    result = h.deactivate()
    assert result.http_status == 409 and result.attempts == 2
    assert result.ambiguous


def test_a_declared_length_past_the_cap_is_not_read_at_all() -> None:
    body = Endless(10 * 1024 * 1024)
    length = str(10 * 1024 * 1024)
    h = Harness(Server(streamed(200, body, **{"content-length": length})), retry=RetryPolicy(1))
    result = h.deactivate()
    assert body.pulled == 0 and "larger than" in result.message


def test_a_small_compressed_answer_may_not_inflate_past_the_cap() -> None:
    bomb = gzip.compress(b'{"message":"' + b"x" * (50 * 1024 * 1024) + b'"}')
    assert len(bomb) < MAX_ANSWER_BYTES
    reply = httpx.Response(200, stream=httpx.ByteStream(bomb), headers={"content-encoding": "gzip"})
    result = Harness(Server(reply), retry=RetryPolicy(max_attempts=1)).deactivate()
    assert result.body is None and "larger than 64 KB" in result.message


def test_a_compressed_answer_within_the_cap_is_read() -> None:
    user = {"user_id": "u-1", "status": "inactive"}
    packed = gzip.compress(json.dumps({"message": "done", "user": user}).encode())
    reply = httpx.Response(
        200, stream=httpx.ByteStream(packed), headers={"content-encoding": "gzip"}
    )
    result = Harness(Server(reply)).deactivate()
    assert result.message == "done" and result.user_status == "inactive"


def test_an_answer_at_the_cap_is_kept_and_a_list_page_may_be_larger() -> None:
    async def read(data: bytes, cap: int) -> Body:
        async def chunks() -> AsyncIterator[bytes]:
            yield data

        return await read_body(chunks(), cap=cap, length=None, encoding=None)

    assert asyncio.run(read(b"x" * MAX_ANSWER_BYTES, MAX_ANSWER_BYTES)).data is not None
    assert asyncio.run(read(b"x" * (MAX_ANSWER_BYTES + 1), MAX_ANSWER_BYTES)).data is None
    assert answer_cap(500) > 500 * 1024  # a page of 500 users of about 1 KB each fits


def test_the_status_the_answer_shows_is_kept() -> None:
    assert Harness(Server(ok())).deactivate().user_status == "inactive"
    shown_active = answer(200, {"message": "User deactivated", "user": {"status": "active"}})
    assert Harness(Server(shown_active)).deactivate().user_status == "active"
    html = answer(200, "<!DOCTYPE html><html><h1>Request blocked</h1></html>")
    result = Harness(Server(html)).deactivate()
    assert result.user_status is None and result.body is None
    assert "Request blocked" in result.message


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_every_5xx_may_have_been_applied(status: int) -> None:
    """An applied-then-503 is as possible as the gateway's 504: the change may have been made."""
    result = Harness(Server(answer(status), ok())).deactivate()
    assert result.ambiguous  # a 500 is final; the others are retried into the 200
    assert result.ok is (status != 500)


def test_a_401_after_a_504_says_the_first_attempt_may_have_been_applied() -> None:
    h = Harness(Server(answer(504), answer(401, {"message": "Unauthorized"})))
    with pytest.raises(AuthError) as caught:
        h.deactivate()
    assert caught.value.maybe_applied
    with pytest.raises(AuthError) as plain:
        Harness(Server(answer(401, {"message": "Unauthorized"}))).deactivate()
    assert not plain.value.maybe_applied


def test_a_list_page_says_how_many_users_the_filter_matches() -> None:
    page = {"users": [{"user_id": "u-1", "status": "inactive"}], "count": 1, "total": 1234}
    h = Harness(Server(answer(200, {**page, "last_evaluated_key": "k"})))
    got = h.run(lambda c: c.list_users(status="inactive", limit=1))
    assert got.total == 1234 and got.key == "k" and got.users[0].status == "inactive"
    (request,) = h.server.requests
    assert dict(request.url.params) == {"limit": "1", "status": "inactive"}
