"""The preflight read's answers, each mapped to a cause a person can act on (httpx.MockTransport,
virtual clock: the retries between its attempts take no real time)."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from vclock import run_virtual

from pcxbatch.client import PcxClient, RetryPolicy
from pcxbatch.credentials import Credentials
from pcxbatch.errors import ExitCode, StoppedError, UnusableError
from pcxbatch.limiter import Limiter
from pcxbatch.preflight import ApiNotAnswering, Preflight, preflight

KEY = "pcx_abc123_s3cr3tPart-XYZ"
USERS = {
    "users": [{"user_id": "u1", "status": "active"}],
    "count": 1,
    "total": 9,
    "last_evaluated_key": None,
}


def reply(status: int, body: Any = None, **headers: str) -> Callable[[httpx.Request], Any]:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status, json=body if body is not None else {"message": "no"}, headers=headers
        )

    return answer


def failing(exc: Exception) -> Callable[[httpx.Request], Any]:
    def answer(request: httpx.Request) -> httpx.Response:
        raise exc

    return answer


def check(
    handler: Callable[[httpx.Request], Any],
    base_url: str = "https://prod-api.pcxpay.com/v1",
    *,
    must_read: bool = False,
    tls: bool = False,
) -> tuple[Preflight, list[str], list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def recording(request: httpx.Request) -> Any:
        seen.append(request)
        return handler(request)

    client = PcxClient(
        base_url,
        Credentials(api_key=KEY),
        limiter=Limiter(1000),
        retry=RetryPolicy(jitter=False),
        transport=httpx.MockTransport(recording),
    )
    notices: list[str] = []

    async def sniff(host: str, port: int) -> bool:
        return tls

    result = run_virtual(
        preflight(client, notice=notices.append, must_read=must_read, sniff_tls=sniff)
    )
    return result, notices, seen


def test_a_user_list_means_go_and_the_read_is_one_cheap_page() -> None:
    result, notices, seen = check(reply(200, USERS))
    assert result == Preflight(can_read=True) and notices == []
    assert [(r.method, r.url.path, r.url.params["limit"]) for r in seen] == [
        ("GET", "/v1/users/list", "1")
    ]


@pytest.mark.parametrize(
    "handler",
    [
        failing(httpx.ConnectError("All connection attempts failed")),
        failing(httpx.ConnectTimeout("timed out")),
        failing(httpx.ReadTimeout("timed out")),
        reply(503, {"message": "Service Unavailable"}),
        reply(502, {"message": "Internal server error"}),
    ],
    ids=["refused", "connect timeout", "read timeout", "503", "502"],
)
def test_no_answer_timeouts_and_5xx_mean_the_api_is_not_answering(handler: Any) -> None:
    with pytest.raises(
        ApiNotAnswering, match=r"the API at prod-api\.pcxpay\.com is not answering"
    ) as e:
        check(handler)
    assert isinstance(e.value, StoppedError) and e.value.exit_code is ExitCode.STOPPED
    assert "run the same command again later" in str(e.value)


def test_the_preflight_tries_a_few_times_not_a_whole_retry_budget() -> None:
    seen: list[httpx.Request] = []

    def refusing(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ConnectError("All connection attempts failed")

    with pytest.raises(ApiNotAnswering):
        check(refusing)
    assert len(seen) == 3  # not the job's eight: a dead port is told in seconds
    answers = iter([503, 503, 200])

    def blip(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        return httpx.Response(status, json=USERS if status == 200 else {})

    assert check(blip)[0].can_read  # a blip of two 503s is ridden out


@pytest.mark.parametrize(
    ("handler", "base_url"),
    [
        (reply(403, {"message": "Missing Authentication Token"}), "https://prod-api.pcxpay.com"),
        (reply(404, {"message": "Not Found"}), "https://prod-api.pcxpay.com/"),
        (reply(200, {"hello": "a website"}), "https://prod-api.pcxpay.com"),
    ],
    ids=["API Gateway's missing path", "a plain server's 404", "a 2xx that is no user list"],
)
def test_a_base_url_without_the_api_is_unusable_and_hints_at_v1(
    handler: Any, base_url: str
) -> None:
    with pytest.raises(UnusableError, match="no PCX API at this base URL") as e:
        check(handler, base_url)
    assert e.value.exit_code is ExitCode.UNUSABLE
    assert str(e.value).endswith("did you mean https://prod-api.pcxpay.com/v1?")


def test_a_wrong_path_that_has_v1_gets_no_v1_hint() -> None:
    with pytest.raises(UnusableError) as e:
        check(
            reply(403, {"message": "Missing Authentication Token"}),
            "https://prod-api.pcxpay.com/prod/v1",
        )
    assert "did you mean" not in str(e.value)


def test_a_refused_credential_is_unusable_and_never_shown() -> None:
    with pytest.raises(UnusableError, match=r"refused the credential \(401: Unauthorized") as e:
        check(reply(401, {"message": f"Unauthorized: {KEY}"}))
    assert "s3cr3tPart" not in str(e.value)


def test_a_key_that_may_not_list_goes_on_without_reads_and_says_so_once() -> None:
    result, notices, _ = check(reply(403, {"message": "Forbidden"}))
    assert result == Preflight(can_read=False)
    assert len(notices) == 1 and "may not list users (403: Forbidden)" in notices[0]
    with pytest.raises(UnusableError, match="a preview must read them"):
        check(reply(403, {"message": "Forbidden"}), must_read=True)


def test_throttled_means_the_api_is_there() -> None:
    assert check(reply(429, {"message": "Too Many Requests"}))[0].can_read


def ssl_failure(cause: Exception) -> Callable[[httpx.Request], Any]:
    exc = httpx.ConnectError(str(cause))
    exc.__cause__ = cause
    return failing(exc)


def test_tls_to_a_plain_port_and_a_refused_certificate_are_named() -> None:
    wrong = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    with pytest.raises(UnusableError, match=r"does not speak TLS .*is it a plain http:// port"):
        check(ssl_failure(wrong))
    cert = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] self-signed")
    with pytest.raises(
        UnusableError, match=r"TLS certificate of prod-api\.pcxpay\.com was not accepted"
    ):
        check(ssl_failure(cert))


def test_plain_http_to_a_tls_port_is_named() -> None:
    dropped = failing(httpx.RemoteProtocolError("Server disconnected without sending a response."))
    with pytest.raises(UnusableError, match=r"127.0.0.1:8443 speaks TLS, not plain HTTP.*https://"):
        check(dropped, "http://127.0.0.1:8443/v1", tls=True)
    with pytest.raises(ApiNotAnswering):  # a port that drops plain http but is no TLS either
        check(dropped, "http://127.0.0.1:8443/v1", tls=False)
