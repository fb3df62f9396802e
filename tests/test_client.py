"""The PCX client over httpx.MockTransport: what goes on the wire, retries, and what comes back.

No network and no real sleeping: the transport is in-process and waits go to a recording fake.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from vclock import run_virtual

from pcxbatch.client import (
    CallResult,
    ListUsersError,
    PcxClient,
    RetryPolicy,
    UserState,
)
from pcxbatch.credentials import Credentials
from pcxbatch.errors import AuthError, ConfigError
from pcxbatch.limiter import Limiter
from pcxbatch.retry import MAX_RETRY_AFTER, Halted, WaitTooLong

BASE = "https://prod-api.pcxpay.com/v1"
SECRET = "s3cr3tPart-XYZ"
KEY = f"pcx_abc123_{SECRET}"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJlLXNlY3JldA"
NO_JITTER = RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=30.0, jitter=False)


class CountingLimiter(Limiter):
    """A limiter that never waits and remembers what the client told it."""

    def __init__(self) -> None:
        super().__init__(math.inf)
        self.acquired = 0
        self.successes = 0
        self.throttles: list[float | None] = []

    async def acquire(self) -> None:
        self.acquired += 1
        await super().acquire()

    def on_success(self) -> None:
        self.successes += 1

    def on_throttled(self, retry_after: float | None = None) -> None:
        self.throttles.append(retry_after)


Reply = httpx.Response | Exception


class Listener:
    """An AttemptListener that remembers what it heard."""

    def __init__(self) -> None:
        self.attempts: list[tuple[bool, str]] = []
        self.pauses: list[tuple[float, str]] = []

    def attempted(self, alive: bool, what: str) -> None:
        self.attempts.append((alive, what))

    def pausing(self, seconds: float, what: str) -> None:
        self.pauses.append((seconds, what))


class Server:
    """Answers requests from a script, one reply per request; the last reply repeats."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies) or [ok()]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            if isinstance(reply, httpx.RequestError):
                reply.request = request
            raise reply
        return reply


def answer(status: int, body: Any = None, *, headers: dict[str, str] | None = None) -> Reply:
    headers = {"x-amzn-RequestId": f"req-{status}", **(headers or {})}
    if isinstance(body, bytes | str):
        return httpx.Response(status, content=body, headers=headers)
    if body is None:
        body = {"status": "error", "message": f"status {status}"}
    return httpx.Response(status, json=body, headers=headers)


def ok(message: str = "User deactivated successfully") -> Reply:
    user = {"user_id": "u-1", "email": "jsmith@example.com", "status": "inactive"}
    return answer(200, {"message": message, "user": user, "reason": None})


class Harness:
    def __init__(
        self,
        server: Server,
        *,
        credentials: Credentials | None = None,
        retry: RetryPolicy = NO_JITTER,
        id_pattern: str | None = None,
    ) -> None:
        self.server = server
        self.limiter = CountingLimiter()
        self.waits: list[float] = []
        self.client = PcxClient(
            BASE,
            credentials or Credentials(api_key=KEY),
            limiter=self.limiter,
            retry=retry,
            transport=httpx.MockTransport(server),
            id_pattern=id_pattern,
            sleep=self.fake_sleep,
        )

    async def fake_sleep(self, seconds: float) -> None:
        self.waits.append(float(seconds))

    def run(self, call: Callable[[PcxClient], Any]) -> Any:
        async def go() -> Any:
            async with self.client:
                return await call(self.client)

        return asyncio.run(go())

    def deactivate(self, user_id: str = "u-1") -> CallResult:
        result: CallResult = self.run(
            lambda c: c.deactivate(user_id, updated_by="ops@example.com", reason="offboarded")
        )
        return result


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


# --- what goes on the wire ---------------------------------------------------------------------


def test_api_key_flow_sends_both_headers_and_keeps_the_base_path() -> None:
    h = Harness(Server(ok()))
    result = h.deactivate("u-1")
    (request,) = h.server.requests
    assert request.method == "PUT"
    assert str(request.url) == f"{BASE}/users/u-1/deactivate"
    assert request.headers["X-Api-Key"] == KEY
    assert request.headers["Authorization"] == "NONE"
    assert request.headers["User-Agent"].startswith("pcxbatch/")
    assert request.headers["Content-Type"] == "application/json"
    assert body_of(request) == {"updated_by": "ops@example.com", "reason": "offboarded"}
    assert result.ok and result.http_status == 200 and result.attempts == 1
    assert result.message == "User deactivated successfully"
    assert result.request_id == "req-200"
    assert not result.ambiguous and result.throttled == 0


def test_jwt_flow_sends_bearer_and_none_key() -> None:
    h = Harness(Server(ok("Status changed")), credentials=Credentials(jwt=JWT))
    h.run(lambda c: c.set_status("u-2", status="active", reason=None))
    (request,) = h.server.requests
    assert str(request.url) == f"{BASE}/users/u-2/activate"
    assert request.headers["Authorization"] == f"Bearer {JWT}"
    assert request.headers["X-Api-Key"] == "NONE"
    assert body_of(request) == {"status": "active"}  # no reason: not sent at all


def test_set_status_refuses_statuses_activate_cannot_set() -> None:
    h = Harness(Server(ok()))
    with pytest.raises(ValueError, match="inactive"):
        h.run(lambda c: c.set_status("u-2", status="inactive", reason=None))
    assert h.server.requests == []


def test_user_id_is_percent_encoded_into_one_path_segment() -> None:
    h = Harness(Server(ok()), id_pattern=r"[A-Za-z0-9:@+]+")
    h.deactivate("a:b@c+d")
    (request,) = h.server.requests
    assert request.url.raw_path == b"/v1/users/a%3Ab%40c%2Bd/deactivate"


@pytest.mark.parametrize(
    "user_id", ["a/b", "..", "../admin", "%2F", "a%2Fb", "a b", " u-1", "a\tb", "a\nb", "a\\b", ""]
)
@pytest.mark.parametrize("pattern", [None, r".*"], ids=["default-pattern", "permissive-pattern"])
def test_unsafe_user_ids_are_refused_before_any_request(user_id: str, pattern: str | None) -> None:
    h = Harness(Server(ok()), id_pattern=pattern)
    with pytest.raises(ValueError, match="refusing user ID"):
        h.deactivate(user_id)
    assert h.server.requests == []
    assert h.limiter.acquired == 0


def test_plain_http_is_refused_for_remote_hosts() -> None:
    creds = Credentials(api_key=KEY)
    with pytest.raises(ValueError, match="unencrypted"):
        PcxClient("http://prod-api.pcxpay.com/v1", creds, limiter=Limiter(1))
    with pytest.raises(ValueError):
        PcxClient("ftp://prod-api.pcxpay.com/v1", creds, limiter=Limiter(1))

    async def loopback() -> str:
        async with PcxClient("http://127.0.0.1:8000/v1/", creds, limiter=Limiter(1)) as c:
            return c.base_url

    assert asyncio.run(loopback()) == "http://127.0.0.1:8000/v1"


# --- retries -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retryable_statuses_are_retried_with_backoff(status: int) -> None:
    h = Harness(Server(answer(status), answer(status), ok()))
    result = h.deactivate()
    assert result.http_status == 200
    assert result.attempts == 3
    assert h.waits == [0.5, 1.0]
    assert h.limiter.acquired == 3  # every attempt takes a slot
    assert result.throttled == (2 if status == 429 else 0)
    assert h.limiter.throttles == ([None, None] if status == 429 else [])
    assert h.limiter.successes == (1 if status == 429 else 3)


@pytest.mark.parametrize(
    ("error", "ambiguous"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), False),
        (httpx.ConnectTimeout("timed out"), False),
        (httpx.PoolTimeout("timed out"), False),
        (httpx.ReadTimeout("timed out"), True),
        (httpx.ReadError("connection reset by peer"), True),
        (httpx.WriteError("broken pipe"), True),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), True),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_transport_errors_are_retried_and_ambiguous_only_once_sent(
    error: Exception, ambiguous: bool
) -> None:
    h = Harness(Server(error, ok()))
    result = h.deactivate()
    assert result.http_status == 200
    assert result.attempts == 2
    assert result.ambiguous is ambiguous
    assert h.waits == [0.5]
    assert h.limiter.acquired == 2


def test_retry_after_in_seconds_is_honoured_and_told_to_the_limiter() -> None:
    h = Harness(
        Server(answer(429, {"message": "Too Many Requests"}, headers={"Retry-After": "7"}), ok())
    )
    result = h.deactivate()
    assert result.http_status == 200 and result.throttled == 1
    assert h.waits == [7.0]
    assert h.limiter.throttles == [7.0]


def test_retry_after_as_an_http_date_is_honoured() -> None:
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    h = Harness(Server(answer(503, headers={"Retry-After": when}), ok()))
    h.deactivate()
    (wait,) = h.waits
    assert 18 <= wait <= 20.5


def test_a_retry_after_longer_than_the_job_allows_stops_instead_of_waiting() -> None:
    h = Harness(Server(answer(429, headers={"Retry-After": "86400"}), ok()))
    with pytest.raises(WaitTooLong) as stopped:
        h.deactivate()
    assert stopped.value.seconds == 86400 and not stopped.value.ambiguous
    assert "24 h" in str(stopped.value) and "Retry-After: 86400" in str(stopped.value)
    assert f"max_retry_wait of {MAX_RETRY_AFTER / 60:.0f} min" in str(stopped.value)
    assert h.waits == []  # no day-long sleep
    assert h.limiter.throttles == [None]  # nor a day-long pause for the other senders
    assert len(h.server.requests) == 1


def test_a_retry_after_within_the_job_limit_is_waited_for_and_announced() -> None:
    h = Harness(
        Server(answer(503, headers={"Retry-After": "120"}), ok()),
        retry=RetryPolicy(max_attempts=3, jitter=False, max_wait=120),
    )
    heard = Listener()
    h.client.listen(heard)
    assert h.deactivate().ok
    assert h.waits == [120.0]
    assert heard.pauses == [(120.0, "503 with Retry-After: 120")]
    assert heard.attempts == [(True, "HTTP 503"), (True, "HTTP 200")]  # throttling shows life


def test_retry_after_on_one_answer_does_not_change_the_backoff_of_the_next() -> None:
    h = Harness(Server(answer(503, headers={"Retry-After": "7"}), answer(503), answer(503), ok()))
    result = h.deactivate()
    assert result.ok and result.attempts == 4
    assert h.waits == [7.0, 1.0, 2.0]  # attempt 2's and 3's backoff, as if 7 s were not asked


def test_one_attempt_means_no_retry_and_no_wait() -> None:
    h = Harness(Server(answer(503), ok()), retry=RetryPolicy(max_attempts=1, jitter=False))
    result = h.deactivate()
    assert result.http_status == 503 and result.attempts == 1
    assert h.waits == [] and len(h.server.requests) == 1


def test_backoff_doubles_up_to_max_delay_and_jitter_stays_within_it() -> None:
    policy = RetryPolicy(max_attempts=6, base_delay=1.0, max_delay=5.0, jitter=False)
    h = Harness(Server(answer(503)), retry=policy)
    h.deactivate()
    assert h.waits == [1.0, 2.0, 4.0, 5.0, 5.0]
    jittered = Harness(Server(answer(503)), retry=RetryPolicy(max_attempts=6, max_delay=5.0))
    jittered.deactivate()
    for wait, nominal in zip(jittered.waits, [0.5, 1.0, 2.0, 4.0, 5.0], strict=True):
        assert nominal / 2 <= wait <= nominal


@pytest.mark.parametrize("status", [400, 404, 409, 500])
def test_other_answers_are_final_at_once(status: int) -> None:
    h = Harness(Server(answer(status, {"status": "error", "message": "nope"}), ok()))
    result = h.deactivate()
    assert result.http_status == status
    assert result.attempts == 1
    assert result.message == "nope"
    assert h.waits == []
    assert len(h.server.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_raise_at_once_without_showing_the_secret(status: int) -> None:
    h = Harness(Server(answer(status, {"message": "Unauthorized"}), ok()))
    with pytest.raises(AuthError) as caught:
        h.deactivate()
    assert caught.value.http_status == status
    assert caught.value.request_id == f"req-{status}"
    assert "Unauthorized" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert len(h.server.requests) == 1 and h.waits == []


def test_504_then_409_is_reported_as_ambiguous() -> None:
    already = answer(409, {"status": "error", "message": "User is already inactive"})
    h = Harness(Server(answer(504, {"message": "Endpoint request timed out"}), already))
    result = h.deactivate()
    assert result.http_status == 409
    assert result.attempts == 2
    assert result.ambiguous
    assert result.message == "User is already inactive"
    assert result.request_id == "req-409"


def test_502_marks_the_result_ambiguous_too() -> None:
    result = Harness(Server(answer(502), ok())).deactivate()
    assert result.ok and result.ambiguous


def test_throttled_until_attempts_run_out_returns_the_last_answer() -> None:
    h = Harness(Server(answer(429, {"message": "Too Many Requests"})))
    result = h.deactivate()
    assert result.http_status == 429
    assert result.attempts == NO_JITTER.max_attempts
    assert result.throttled == NO_JITTER.max_attempts
    assert result.message == "Too Many Requests"
    assert not result.ambiguous
    assert len(h.waits) == NO_JITTER.max_attempts - 1
    assert h.limiter.acquired == NO_JITTER.max_attempts


def test_no_answer_at_all_returns_a_result_with_no_status() -> None:
    h = Harness(Server(httpx.ConnectError("[Errno 111] Connection refused")))
    result = h.deactivate()
    assert result.http_status is None
    assert result.attempts == NO_JITTER.max_attempts
    assert "could not connect" in result.message and "Connection refused" in result.message
    assert not result.ambiguous  # nothing ever reached the server
    assert result.body is None


def test_last_seen_request_id_is_kept_when_the_final_attempt_got_no_answer() -> None:
    policy = RetryPolicy(max_attempts=2, jitter=False)
    h = Harness(Server(answer(504), httpx.ReadTimeout("timed out")), retry=policy)
    result = h.deactivate()
    assert result.http_status is None
    assert result.request_id == "req-504"
    assert result.ambiguous
    assert "no answer within 35 s" in result.message


# --- answers that are not what the docs promise -------------------------------------------------


def test_error_field_is_added_to_the_message() -> None:
    body = {"status": "error", "message": "Invalid status", "error": "ValidationError"}
    result = Harness(Server(answer(400, body))).deactivate()
    assert result.message == "Invalid status (ValidationError)"
    assert result.body == body


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("<html><body><h1>502 Bad Gateway</h1>\n\n</body></html>" + "x" * 5000, "<html><body>"),
        ("", "HTTP 502 Bad Gateway"),
        (b"\xff\xfe\x00garbage", "garbage"),
        ("[1, 2, 3]", "HTTP 502 Bad Gateway"),
    ],
    ids=["html", "empty", "binary", "json-list"],
)
def test_non_json_bodies_give_a_short_message(content: str | bytes, expected: str) -> None:
    h = Harness(Server(answer(502, content)), retry=RetryPolicy(max_attempts=1))
    result = h.deactivate()
    assert result.http_status == 502
    assert expected in result.message
    assert len(result.message) <= 300
    assert "\n" not in result.message
    assert result.body is None


def test_secrets_never_reach_logs_or_results(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    h = Harness(Server(answer(503), ok()))
    result = h.deactivate()
    assert SECRET not in caplog.text
    assert SECRET not in repr(result) and SECRET not in repr(h.client)
    assert "jsmith@example.com" not in repr(result)  # the user object stays out of reprs


def test_every_attempt_is_one_debug_line_without_headers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pcxbatch")
    h = Harness(Server(answer(503, headers={"WWW-Authenticate": f"key={KEY}"}), ok()))
    h.deactivate()
    lines = [r.getMessage() for r in caplog.records if r.name == "pcxbatch.client"]
    attempts = [line for line in lines if " -> " in line]
    assert len(attempts) == 2
    assert attempts[0].startswith("PUT /v1/users/u-1/deactivate -> HTTP 503 in ")
    assert attempts[0].endswith("ms (attempt 1)") and attempts[1].endswith("(attempt 2)")
    assert all("WWW-Authenticate" not in line and SECRET not in line for line in lines)


def test_an_answer_that_trickles_past_the_deadline_times_out_like_silence() -> None:
    """A read timeout is per read; the deadline is for the whole attempt, body included."""

    async def trickling(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(3600)  # virtual: one byte every 2 s for a long body
        return httpx.Response(200, json={"message": "late"})

    heard = Listener()

    async def go() -> tuple[CallResult, float]:
        client = PcxClient(
            BASE,
            Credentials(api_key=KEY),
            limiter=Limiter(1000),
            retry=RetryPolicy(max_attempts=2, jitter=False),
            transport=httpx.MockTransport(trickling),
            deadline=45,
        )
        client.listen(heard)
        result = await client.deactivate("u-1", updated_by="ops", reason=None)
        return result, asyncio.get_running_loop().time()

    result, elapsed = run_virtual(go())
    assert result.http_status is None and result.attempts == 2
    assert result.message == "no complete answer within 45 s"
    assert result.ambiguous  # the request may well have arrived
    assert elapsed == pytest.approx(45 + 0.5 + 45)  # two deadlines and one backoff
    assert heard.attempts == [(False, "no complete answer within 45 s")] * 2


def test_halting_cuts_a_wait_short_and_starts_no_new_attempt() -> None:
    server = Server(answer(503))

    async def go() -> tuple[float, int]:
        client = PcxClient(
            BASE,
            Credentials(api_key=KEY),
            limiter=Limiter(1000),
            retry=RetryPolicy(max_attempts=8, jitter=False),
            transport=httpx.MockTransport(server),
        )
        asyncio.get_running_loop().call_later(2.0, client.halt)
        with pytest.raises(Halted) as halted:
            await client.deactivate("u-1", updated_by="ops", reason=None)
        assert halted.value.ambiguous  # a 503 may come after the change was made
        return asyncio.get_running_loop().time(), len(server.requests)

    assert run_virtual(go()) == (2.0, 3)  # attempts at 0, 0.5 and 1.5; then the brake


# --- listing -----------------------------------------------------------------------------------


def test_list_users_pages_with_filters() -> None:
    page = {
        "users": [
            {"user_id": "u-1", "status": "active", "org_id": "org-9", "email": "a@example.com"},
            {"user_id": "u-2", "status": "inactive", "org_id": None, "fname": "Ann"},
        ],
        "count": 2,
        "total": 3,
        "last_evaluated_key": "eyJrIjoidS0yIn0=",
    }
    h = Harness(Server(answer(200, page)))
    users, key = h.run(
        lambda c: c.list_users(status="active", org_id="org-9", last_evaluated_key="abc")
    )
    assert users == [UserState("u-1", "active", "org-9"), UserState("u-2", "inactive", None)]
    assert key == "eyJrIjoidS0yIn0="
    (request,) = h.server.requests
    assert request.method == "GET"
    assert request.url.path == "/v1/users/list"
    assert dict(request.url.params) == {
        "limit": "100",
        "status": "active",
        "org_id": "org-9",
        "last_evaluated_key": "abc",
    }


def test_list_users_last_page_has_no_key_and_failures_raise() -> None:
    h = Harness(Server(answer(200, {"users": [], "count": 0, "last_evaluated_key": None})))
    assert h.run(lambda c: c.list_users()) == ([], None)
    with pytest.raises(ListUsersError, match="500"):
        Harness(Server(answer(500))).run(lambda c: c.list_users())
    with pytest.raises(ListUsersError, match="no 'users' list"):
        Harness(Server(answer(200, {"message": "ok"}))).run(lambda c: c.list_users())
    with pytest.raises(AuthError):
        Harness(Server(answer(403))).run(lambda c: c.list_users())


# --- credentials -------------------------------------------------------------------------------


def shown(creds: Credentials) -> Iterable[str]:
    return (repr(creds), str(creds), creds.describe(), f"{creds}", f"{[creds]}")


def test_credentials_never_show_the_secret() -> None:
    key = Credentials(api_key=KEY)
    assert key.describe() == "API key pcx_abc123_…"
    jwt = Credentials(jwt=JWT)
    assert jwt.describe() == "JWT …"
    for text in (*shown(key), *shown(jwt)):
        assert SECRET not in text and JWT not in text and KEY not in text
    odd = Credentials(api_key="no-prefix-at-all")
    assert "no-prefix" not in odd.describe()


def test_credentials_need_exactly_one_well_formed_value() -> None:
    with pytest.raises(ValueError):
        Credentials()
    with pytest.raises(ValueError):
        Credentials(api_key=KEY, jwt=JWT)
    with pytest.raises(ValueError) as caught:
        Credentials(api_key=f"{KEY}\r\nX-Injected: 1")
    assert SECRET not in str(caught.value)


def test_from_env_prefers_the_api_key_and_ignores_empty_values() -> None:
    assert Credentials.from_env({}) is None
    assert Credentials.from_env({"PCX_API_KEY": "  ", "PCX_JWT": ""}) is None
    assert Credentials.from_env({"PCX_API_KEY": KEY, "PCX_JWT": JWT}) == Credentials(api_key=KEY)
    assert Credentials.from_env({"PCX_JWT": f"Bearer {JWT}"}) == Credentials(jwt=JWT)
    with pytest.raises(ConfigError, match="PCX_API_KEY") as caught:
        Credentials.from_env({"PCX_API_KEY": f"pcx_abc123_ {SECRET}"})
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (f"{KEY}\n", Credentials(api_key=KEY)),
        (f"\ufeff  {KEY}  \r\n\r\n", Credentials(api_key=KEY)),
        (JWT, Credentials(jwt=JWT)),
        (f"# pcx\nexport PCX_API_KEY='{KEY}'\nOTHER=1\n", Credentials(api_key=KEY)),
        (f'PCX_JWT="{JWT}"\n', Credentials(jwt=JWT)),
        (f"PCX_JWT={JWT}\nPCX_API_KEY={KEY}\n", Credentials(api_key=KEY)),
    ],
    ids=["bare-key", "bom-and-spaces", "bare-jwt", "env-style", "jwt-line", "both"],
)
def test_from_file_reads_the_usual_shapes(
    tmp_path: Path, content: str, expected: Credentials
) -> None:
    path = tmp_path / "pcx.cred"
    path.write_text(content, encoding="utf-8")
    path.chmod(0o600)
    assert Credentials.from_file(path) == expected


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "holds no credential"),
        ("# only a comment\nOTHER=1\n", "holds no credential"),
        (f"{KEY}\n{SECRET}-second\n", "2 candidate lines"),
        (f"PCX_API_KEY={SECRET} tail\n", "spaces"),
    ],
    ids=["empty", "nothing-useful", "two-values", "malformed"],
)
def test_from_file_problems_are_clear_and_never_quote_the_file(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "pcx.cred"
    path.write_text(content, encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=problem) as caught:
        Credentials.from_file(path)
    assert str(path) in str(caught.value)
    assert SECRET not in str(caught.value)


def test_from_file_missing_or_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        Credentials.from_file(tmp_path / "absent")
    with pytest.raises(ConfigError, match="cannot read"):
        Credentials.from_file(tmp_path)  # a directory
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\xfa" + SECRET.encode())
    binary.chmod(0o600)
    with pytest.raises(ConfigError, match="cannot read") as caught:
        Credentials.from_file(binary)
    assert SECRET not in str(caught.value)
