"""What API Gateway adds in front of PCX, as the sandbox plays it: throttle, latency, faults.

Every test runs in-process and through real loopback sockets. The throttle runs on a virtual
clock and latency on a recording sleep, so nothing here waits for real time.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable

import httpx
import pytest
from sandbox_harness import Harness

from pcxbatch.sandbox import SandboxConfig, start

Api = Callable[..., Harness]


def _outcome(h: Harness, uid: str) -> int | str:
    try:
        return h.deactivate(uid).status_code
    except httpx.TransportError as exc:
        return type(exc).__name__


# -- throttle ----------------------------------------------------------------------------------


def test_a_burst_beyond_the_bucket_gets_429_without_retry_after(api: Api) -> None:
    h = api(SandboxConfig(users=40, rate=2, burst=3))
    uids = [h.uid("active", i) for i in range(5)]
    responses = [h.deactivate(uid) for uid in uids]

    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
    assert responses[3].json() == {"message": "Too Many Requests"}
    assert "retry-after" not in responses[3].headers
    assert "x-amzn-RequestId" in responses[3].headers
    # A throttled request never reaches PCX: nothing changed for those users.
    assert [h.sandbox.status_of(uid) for uid in uids[3:]] == ["active", "active"]
    assert [r.applied for r in h.sandbox.requests] == [True, True, True, False, False]


def test_retry_after_is_sent_only_when_asked(api: Api) -> None:
    h = api(SandboxConfig(users=10, rate=0.25, burst=1, retry_after=True))
    assert h.call("GET", "/users/list").status_code == 200
    throttled = h.call("GET", "/users/list")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "4"  # one token at 0.25/s


def test_the_bucket_refills_at_the_rate(api: Api) -> None:
    h = api(SandboxConfig(users=10, rate=2, burst=1))
    assert h.call("GET", "/users/list").status_code == 200
    assert h.call("GET", "/users/list").status_code == 429
    h.clock.now += 0.5  # one token at 2/s
    assert h.call("GET", "/users/list").status_code == 200
    assert h.call("GET", "/users/list").status_code == 429


def test_throttling_is_per_credential(api: Api) -> None:
    h = api(SandboxConfig(users=10, rate=1, burst=2))
    bearer = {"Authorization": f"Bearer {h.sandbox.jwt}", "X-Api-Key": "NONE"}
    readonly = h.key_headers(h.sandbox.readonly_api_key)
    assert [h.call("GET", "/users/list").status_code for _ in range(3)] == [200, 200, 429]
    assert [h.call("GET", "/users/list", headers=bearer).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    assert h.call("GET", "/users/list", headers=readonly).status_code == 200


# -- latency -----------------------------------------------------------------------------------


def test_latency_is_applied_with_seeded_jitter(api: Api) -> None:
    config = SandboxConfig(users=10, latency_ms=50, latency_jitter_ms=10, seed=5)
    h = api(config)
    for _ in range(6):
        assert h.call("GET", "/users/list").status_code == 200
    assert len(h.sleep.delays) == 6
    assert all(0.040 <= d <= 0.060 for d in h.sleep.delays)
    assert len(set(h.sleep.delays)) > 1  # jittered

    again = api(config)
    for _ in range(6):
        again.call("GET", "/users/list")
    assert again.sleep.delays == h.sleep.delays  # same seed, same delays


# -- faults ------------------------------------------------------------------------------------


FAULTY = SandboxConfig(users=60, seed=11, fail_rate=0.25, ghost_rate=0.2, drop_rate=0.2)


def _fault_run(h: Harness) -> list[int | str]:
    return [_outcome(h, uid) for uid in [h.uid("active", i) for i in range(30)]]


def test_faults_are_reproducible_from_the_seed(api: Api) -> None:
    first = _fault_run(api(FAULTY))
    second = _fault_run(api(FAULTY))
    assert first == second
    assert {502, 503, 504, "RemoteProtocolError"} <= set(first)
    assert 200 in first
    other = _fault_run(api(dataclasses.replace(FAULTY, seed=12)))
    assert other != first


def test_the_fault_sequence_is_the_same_in_process_and_on_loopback(api: Api) -> None:
    # The sequence depends only on the seed and the order of requests, not on the transport:
    # this literal is the same for both parametrizations of the test.
    got = _fault_run(api(FAULTY))[:12]
    assert got == [
        "RemoteProtocolError",
        200,
        504,
        503,
        "RemoteProtocolError",
        503,
        200,
        "RemoteProtocolError",
        503,
        502,
        "RemoteProtocolError",
        503,
    ]


def test_fail_answers_502_or_503_and_applies_nothing(api: Api) -> None:
    h = api(SandboxConfig(users=30, fail_rate=1.0))
    uids = [h.uid("active", i) for i in range(8)]
    responses = [h.deactivate(uid) for uid in uids]
    assert {r.status_code for r in responses} == {502, 503}
    for r in responses:
        assert r.json()["message"] in ("Internal server error", "Service Unavailable")
    assert all(h.sandbox.status_of(uid) == "active" for uid in uids)
    assert all(r.fault == "fail" and not r.applied for r in h.sandbox.requests)


def test_ghost_applies_the_change_then_answers_504(api: Api) -> None:
    h = api(SandboxConfig(users=30, ghost_rate=1.0))
    uid = h.uid("active")
    response = h.deactivate(uid)
    assert response.status_code == 504
    assert response.json() == {"message": "Endpoint request timed out"}
    assert h.sandbox.status_of(uid) == "inactive"
    record = h.sandbox.requests[-1]
    assert (record.status, record.applied, record.fault) == (504, True, "ghost")
    # The retry a client makes then meets the change its own first attempt made.
    assert h.deactivate(uid).status_code == 504
    assert h.sandbox.requests[-1].applied is False


def test_drop_is_a_transport_error_and_half_the_drops_applied_the_change(api: Api) -> None:
    h = api(SandboxConfig(users=60, drop_rate=1.0, seed=2))
    uids = [h.uid("active", i) for i in range(20)]
    for uid in uids:
        with pytest.raises(httpx.RemoteProtocolError):
            h.deactivate(uid)
    records = h.sandbox.requests
    assert all(r.status is None and r.fault == "drop" and r.response is None for r in records)
    applied = [r.applied for r in records]
    assert 0 < sum(applied) < len(applied)
    for uid, record in zip(uids, records, strict=True):
        assert h.sandbox.status_of(uid) == ("inactive" if record.applied else "active")


def test_faults_spare_the_list_unless_asked(api: Api) -> None:
    h = api(SandboxConfig(users=10, fail_rate=1.0))
    assert h.call("GET", "/users/list").status_code == 200
    h = api(SandboxConfig(users=10, fail_rate=1.0, faults_on_list=True))
    assert h.call("GET", "/users/list").status_code in (502, 503)


def test_faults_come_after_authentication(api: Api) -> None:
    h = api(SandboxConfig(users=10, fail_rate=1.0))
    response = h.deactivate(h.uid(), headers={"X-Api-Key": "NONE", "Authorization": "NONE"})
    assert response.status_code == 401


def test_a_dropped_connection_gets_no_bytes_at_all() -> None:
    with start(SandboxConfig(users=5, drop_rate=1.0)) as running:
        uid = next(iter(running.sandbox.users))
        body = b'{"updated_by": "ops"}'
        request = (
            f"PUT /v1/users/{uid}/deactivate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"X-Api-Key: {running.api_key}\r\nAuthorization: NONE\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        with socket.create_connection((running.host, running.port), timeout=5) as sock:
            sock.sendall(request)
            received = b""
            while chunk := sock.recv(4096):
                received += chunk
        assert received == b""
        assert running.sandbox.requests[-1].status is None
