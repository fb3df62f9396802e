"""The sandbox's answers that leave the truth open (sandbox/faults.py), in-process and on loopback:
a refusing 409, a 200 that changes nothing (the user as it was, or a proxy's HTML page), an
applied-then-503, and an answer padded far past any sane size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from sandbox_harness import Harness

from pcxbatch.errors import ConfigError
from pcxbatch.sandbox import SandboxConfig
from pcxbatch.sandbox.faults import HUGE_BYTES, PAYOUT_PENDING

Api = Callable[..., Harness]


def test_refused_deactivations_are_409s_that_change_nothing_for_the_same_users(api: Api) -> None:
    h = api(SandboxConfig(users=60, seed=3, refuse_rate=0.5))
    uids = [h.uid("active", i) for i in range(12)]
    first = [h.deactivate(uid).status_code for uid in uids]
    assert set(first) == {200, 409}
    for uid, status in zip(uids, first, strict=True):
        assert h.sandbox.status_of(uid) == ("inactive" if status == 200 else "active")
    refused = [uid for uid, status in zip(uids, first, strict=True) if status == 409]
    again = h.deactivate(refused[0])  # a pending payout does not go away on a retry
    assert again.status_code == 409 and again.json() == {
        "status": "error",
        "message": PAYOUT_PENDING,
    }
    assert h.activate(refused[0], "rejected").status_code == 200  # only deactivations


def test_an_already_inactive_user_gets_the_usual_answer_even_if_it_would_be_refused(
    api: Api,
) -> None:
    h = api(SandboxConfig(users=60, seed=3, refuse_rate=1.0))
    response = h.deactivate(h.uid("inactive"))
    assert response.status_code == 409 and response.json()["message"] == "User is already inactive"


def test_wrong_status_200_shows_the_user_as_it_was_and_changes_nothing(api: Api) -> None:
    h = api(SandboxConfig(users=30, wrong_status_rate=1.0))
    uid = h.uid("active")
    response = h.deactivate(uid)
    assert response.status_code == 200
    assert response.json()["message"] == "User deactivated successfully"
    assert response.json()["user"]["status"] == "active"
    assert h.sandbox.status_of(uid) == "active"
    status_change = h.activate(uid, "rejected")
    assert status_change.status_code == 200 and status_change.json()["user"]["status"] == "active"
    record = h.sandbox.requests[-1]
    assert (record.fault, record.applied) == ("wrong_status", False)
    assert h.deactivate("no-such-user").status_code == 404  # an unknown user is still unknown


def test_html_200_is_a_proxy_page_and_changes_nothing(api: Api) -> None:
    h = api(SandboxConfig(users=30, html_rate=1.0))
    uid = h.uid("active")
    response = h.deactivate(uid)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert b"Request blocked" in response.content
    assert h.sandbox.status_of(uid) == "active"


def test_applied_then_503_makes_the_change(api: Api) -> None:
    h = api(SandboxConfig(users=30, applied_503_rate=1.0))
    uid = h.uid("active")
    response = h.deactivate(uid)
    assert response.status_code == 503 and response.json() == {"message": "Service Unavailable"}
    assert h.sandbox.status_of(uid) == "inactive"
    record = h.sandbox.requests[-1]
    assert (record.fault, record.applied) == ("applied_503", True)


def test_a_huge_answer_is_the_normal_answer_padded(api: Api) -> None:
    h = api(SandboxConfig(users=30, huge_rate=1.0))
    uid = h.uid("active")
    response = h.deactivate(uid)
    assert response.status_code == 200 and len(response.content) >= HUGE_BYTES
    assert response.json()["user"]["status"] == "inactive"
    assert h.sandbox.status_of(uid) == "inactive"
    assert "padding" not in (h.sandbox.requests[-1].response or {})  # the log stays small


def test_the_new_faults_are_seeded(api: Api) -> None:
    # (The old faults are drawn exactly as before the new ones existed: the literal sequence
    # in test_sandbox_gateway still holds.)
    mixed = SandboxConfig(
        users=80, seed=5, fail_rate=0.1, wrong_status_rate=0.2, html_rate=0.2, huge_rate=0.2
    )

    def faults(config: SandboxConfig) -> list[str | None]:
        h = api(config)
        for i in range(30):
            h.deactivate(h.uid("active", i))
        return [r.fault for r in h.sandbox.requests]

    first = faults(mixed)
    assert first == faults(mixed)
    assert {"fail", "wrong_status", "html", "huge", None} <= set(first)
    assert faults(dataclasses.replace(mixed, seed=6)) != first


@pytest.mark.parametrize(
    "settings",
    [
        {"refuse_rate": 1.5},
        {"huge_rate": -0.1},
        {"fail_rate": 0.5, "html_rate": 0.3, "wrong_status_rate": 0.3},
    ],
)
def test_the_new_rates_are_checked(settings: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        SandboxConfig(**settings)  # type: ignore[arg-type]
    assert dataclasses.replace(SandboxConfig(), refuse_rate=1.0).refuse_rate == 1.0
