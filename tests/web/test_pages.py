"""The pages through a TestClient: sign-in, its limit, cookies, CSRF, sign-out, what pages say."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient
from web_harness import PASSWORD, RecordingSink, csv_file, form_token, sign_in, some_users

from pcxbatch.sandbox.server import RunningSandbox
from pcxbatch.web.server import Service


def test_sign_in_sets_a_server_side_session_in_an_httponly_samesite_cookie(
    api: TestClient, events: RecordingSink
) -> None:
    page = api.get("/login")
    token = form_token(page.text)
    got = api.post(
        "/login", data={"name": "ana", "password": PASSWORD, "csrf": token}, follow_redirects=False
    )
    assert got.status_code == 303 and got.headers["location"] == "/jobs"
    cookie = next(c for c in got.headers.get_list("set-cookie") if "pcxbatch_session=" in c)
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    assert "Upload a file" in api.get("/jobs").text
    assert events.events[-1]["event"] == "sign_in"
    assert events.events[-1]["actor"]["account"] == "ana"


def test_over_https_the_cookie_is_secure(service: Service) -> None:
    with TestClient(service.app, base_url="https://pcx.example") as client:
        token = form_token(client.get("/login").text)
        got = client.post(
            "/login", data={"name": "ana", "password": PASSWORD, "csrf": token},
            follow_redirects=False,
        )  # fmt: skip
    cookie = next(c for c in got.headers.get_list("set-cookie") if "pcxbatch_session=" in c)
    assert "Secure" in cookie


def test_a_wrong_password_is_refused_and_attempts_are_limited(
    api: TestClient, events: RecordingSink
) -> None:
    for _ in range(5):
        status, _token = sign_in(api, "ana", "wrong password!")
        assert status == 401
    status, _token = sign_in(api, "ana")  # the right password, too late
    assert status == 429
    refused = [e for e in events.events if e["event"] == "sign_in.refused"]
    assert len(refused) == 6
    assert all(PASSWORD not in str(e) and "wrong password!" not in str(e) for e in events.events)


def test_the_sign_in_limit_is_shared_by_every_process_and_outlives_a_restart(
    service: Service, events: RecordingSink
) -> None:
    from pcxbatch.web.access import Access
    from pcxbatch.web.flow import Refused

    now = [datetime(2026, 12, 1, 9, 0, tzinfo=UTC)]
    one, two = (Access(service.store, events, clock=lambda: now[0]) for _ in range(2))
    for n in range(5):  # the attempts spread over two processes
        with pytest.raises(Refused) as wrong:
            (one if n % 2 else two).sign_in("ana", "wrong password!", "10.0.0.9")
        assert wrong.value.status == 401
    restarted = Access(service.store, events, clock=lambda: now[0])
    with pytest.raises(Refused) as limited:
        restarted.sign_in("ana", PASSWORD, "10.0.0.7")  # the right password, another address
    assert limited.value.status == 429
    now[0] += timedelta(minutes=16)  # the window has passed
    assert restarted.sign_in("ana", PASSWORD, "10.0.0.7")[0]


def test_a_form_without_its_csrf_token_is_refused(
    api: TestClient, service: Service, pcx: RunningSandbox
) -> None:
    sign_in(api, "ana")
    body = csv_file([[u, ""] for u in some_users(pcx)])
    files = {"file": ("cases.csv", body)}
    got = api.post("/jobs", files=files, data={"action": "deactivate"})
    assert got.status_code == 403 and "did not come from this site" in got.text
    forged = api.post("/jobs", files=files, data={"action": "deactivate", "csrf": "forged"})
    assert forged.status_code == 403
    assert service.store.jobs() == []
    assert not list((service.flow.config.data_dir / "uploads").iterdir())


def test_the_login_form_needs_its_own_token(api: TestClient) -> None:
    got = api.post("/login", data={"name": "ana", "password": PASSWORD, "csrf": "guess"})
    assert got.status_code == 403 and "sign in again" in got.text


def test_sign_out_ends_the_session(api: TestClient, events: RecordingSink) -> None:
    _status, token = sign_in(api, "ana")
    old = api.cookies.get("pcxbatch_session")
    got = api.post("/logout", data={"csrf": token}, follow_redirects=False)
    assert got.status_code == 303 and got.headers["location"] == "/login"
    assert "sign_out" in events.names()
    api.cookies.set("pcxbatch_session", str(old))  # the old cookie no longer signs anyone in
    again = api.get("/jobs", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/login"


def test_the_validation_page_lists_unusable_rows_by_spreadsheet_row(
    api: TestClient, pcx: RunningSandbox
) -> None:
    _status, token = sign_in(api, "ana")
    good = some_users(pcx)
    body = csv_file([[good[0], ""], ["<script>alert(1)</script>", ""], [good[0], ""]])
    got = api.post(
        "/jobs", files={"file": ("cases.csv", body)},
        data={"action": "deactivate", "reason": "Sanctions", "csrf": token},
    )  # fmt: skip
    assert got.status_code == 200
    page = got.text
    assert "Rows that cannot be used" in page
    assert re.search(r'<td class="num">3</td><td>invalid</td>', page)
    assert re.search(r'<td class="num">4</td><td>duplicate</td>', page)
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert "Preview against PCX" in page


def test_security_headers_are_on_every_page(api: TestClient) -> None:
    got = api.get("/login")
    assert "default-src 'self'" in got.headers["content-security-policy"]
    assert got.headers["x-content-type-options"] == "nosniff"
