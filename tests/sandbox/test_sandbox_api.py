"""The PCX Users API as the sandbox plays it: shapes, authentication, listing, switches, the log.

Every test runs twice, in-process and through real loopback sockets (the ``api`` fixture).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sandbox_harness import Harness

from pcxbatch.sandbox import USER_FIELDS, SandboxConfig

Api = Callable[..., Harness]


def assert_pcx_error(response: Any, status: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error"
    assert isinstance(body["message"], str) and body["message"]


# -- the two PUTs ------------------------------------------------------------------------------


def test_deactivate_answers_the_documented_shape_and_makes_the_user_inactive(api: Api) -> None:
    h = api()
    uid = h.uid("active")
    before = h.sandbox.users[uid]

    response = h.deactivate(uid, json={"updated_by": "ops@example.com", "reason": "KYC expired"})

    assert response.status_code == 200
    body = response.json()
    assert body["message"] == "User deactivated successfully"
    assert body["reason"] == "KYC expired"
    assert set(body["user"]) == set(USER_FIELDS)
    assert body["user"]["user_id"] == uid
    assert body["user"]["status"] == "inactive"
    assert body["user"]["updated_at"] != before["updated_at"]
    assert uuid.UUID(response.headers["x-amzn-RequestId"])
    assert response.headers["content-type"] == "application/json"
    assert h.sandbox.status_of(uid) == "inactive"


def test_deactivate_without_reason_answers_null_reason(api: Api) -> None:
    h = api()
    response = h.deactivate(h.uid("active"), json={"updated_by": "ops"})
    assert response.status_code == 200
    assert response.json()["reason"] is None


def test_activate_sets_each_settable_status(api: Api) -> None:
    h = api()
    uid = h.uid("inactive")
    for status in ("pending_verification", "rejected", "not_verified", "active"):
        response = h.activate(uid, status)
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"message", "user"}
        assert body["user"]["status"] == status
        assert h.sandbox.status_of(uid) == status


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("activate", {"status": "inactive"}),  # only /deactivate may set inactive
        ("activate", {"status": "sandbox"}),  # not one of the four settable statuses
        ("activate", {}),
        ("activate", {"status": "active", "reason": 5}),
        ("deactivate", {}),
        ("deactivate", {"updated_by": ""}),
        ("deactivate", {"updated_by": 7}),
        ("deactivate", ["not", "an", "object"]),
    ],
)
def test_invalid_bodies_are_400_and_change_nothing(api: Api, endpoint: str, body: Any) -> None:
    h = api()
    uid = h.uid("active")
    response = h.call("PUT", f"/users/{uid}/{endpoint}", json=body)
    assert_pcx_error(response, 400)
    assert h.sandbox.status_of(uid) == "active"
    assert h.sandbox.requests[-1].applied is False


def test_a_body_that_is_not_json_is_400(api: Api) -> None:
    h = api()
    response = h.call("PUT", f"/users/{h.uid()}/deactivate", content=b"updated_by=ops")
    assert_pcx_error(response, 400)


def test_unknown_user_is_404(api: Api) -> None:
    h = api()
    assert_pcx_error(h.deactivate(str(uuid.UUID(int=1))), 404)
    assert_pcx_error(h.activate("no-such-user", "active"), 404)


def test_unknown_routes_and_methods_are_refused(api: Api) -> None:
    h = api()
    assert h.call("GET", "/users/nobody").status_code == 404
    assert h.call("PUT", "/v2/users/list").status_code == 404
    assert h.call("POST", f"/users/{h.uid()}/deactivate").status_code == 405
    assert h.call("PUT", "/users/list").status_code == 405


# -- authentication ----------------------------------------------------------------------------


def _auth_cases(h: Harness) -> dict[str, dict[str, str]]:
    key, jwt = h.sandbox.api_key, h.sandbox.jwt
    return {
        "no Authorization": {"X-Api-Key": key},
        "no X-Api-Key": {"Authorization": f"Bearer {jwt}"},
        "no headers": {},
        "both NONE": {"X-Api-Key": "NONE", "Authorization": "NONE"},
        "unknown key": {"X-Api-Key": "pcx_abc123_notakey", "Authorization": "NONE"},
        "bad token": {"X-Api-Key": "NONE", "Authorization": "Bearer eyJnot.a.token"},
        "token without Bearer": {"X-Api-Key": "NONE", "Authorization": jwt},
        "both credentials": {"X-Api-Key": key, "Authorization": f"Bearer {jwt}"},
    }


def test_every_401_case_of_the_contract_is_refused_and_changes_nothing(api: Api) -> None:
    h = api()
    uid = h.uid("active")
    for case, headers in _auth_cases(h).items():
        response = h.call(
            "PUT", f"/users/{uid}/deactivate", json={"updated_by": "x"}, headers=headers
        )
        assert response.status_code == 401, case
        assert response.json()["status"] == "error", case
        list_response = h.call("GET", "/users/list", headers=headers)
        assert list_response.status_code == 401, case
    assert h.sandbox.status_of(uid) == "active"
    assert all(r.status == 401 and not r.applied and r.caller is None for r in h.sandbox.requests)


def test_jwt_flow_is_accepted(api: Api) -> None:
    h = api()
    headers = {"Authorization": f"Bearer {h.sandbox.jwt}", "X-Api-Key": "NONE"}
    assert h.deactivate(h.uid(), headers=headers).status_code == 200
    assert h.sandbox.requests[-1].caller == "jwt"


def test_a_valid_key_without_the_role_gets_403_on_changes_but_may_list(api: Api) -> None:
    h = api()
    uid = h.uid("active")
    readonly = h.key_headers(h.sandbox.readonly_api_key)
    assert_pcx_error(h.deactivate(uid, headers=readonly), 403)
    assert_pcx_error(h.activate(uid, "rejected", headers=readonly), 403)
    assert h.call("GET", "/users/list", headers=readonly).status_code == 200
    assert h.sandbox.status_of(uid) == "active"


def test_configured_credentials_replace_generated_ones(api: Api) -> None:
    h = api(SandboxConfig(users=5, api_key="pcx_mine_s3cret", jwt="jwt-token-1"))
    assert h.call("GET", "/users/list", headers=h.key_headers("pcx_mine_s3cret")).status_code == 200
    bearer = {"Authorization": "Bearer jwt-token-1", "X-Api-Key": "NONE"}
    assert h.call("GET", "/users/list", headers=bearer).status_code == 200


# -- GET /users/list ---------------------------------------------------------------------------


def _all_pages(h: Harness, **params: Any) -> list[dict[str, Any]]:
    pages = []
    key = None
    while True:
        query = dict(params, **({"last_evaluated_key": key} if key else {}))
        response = h.call("GET", "/users/list", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        key = page["last_evaluated_key"]
        if key is None:
            return pages


def test_pagination_returns_every_user_exactly_once_in_a_stable_order(api: Api) -> None:
    h = api(SandboxConfig(users=53))
    pages = _all_pages(h, limit=7)

    ids = [u["user_id"] for page in pages for u in page["users"]]
    assert ids == list(h.sandbox.users)  # each once, in the sandbox's order
    assert len(pages) == 8
    assert all(p["total"] == 53 for p in pages)
    assert [p["count"] for p in pages] == [7] * 7 + [4]
    assert all(p["count"] == len(p["users"]) for p in pages)
    assert all(isinstance(p["last_evaluated_key"], str) for p in pages[:-1])
    base64.b64decode(pages[0]["last_evaluated_key"], validate=True)  # opaque base64
    assert [u["user_id"] for p in _all_pages(h, limit=7) for u in p["users"]] == ids


def test_list_defaults_to_ten_and_says_null_on_the_last_page(api: Api) -> None:
    h = api(SandboxConfig(users=10))
    body = h.call("GET", "/users/list").json()
    assert body["count"] == 10
    assert body["last_evaluated_key"] is None
    assert set(body["users"][0]) == set(USER_FIELDS)


@pytest.mark.parametrize("name", ["status", "org_id", "role", "type"])
def test_each_filter_returns_exactly_the_matching_users(api: Api, name: str) -> None:
    h = api(SandboxConfig(users=120, seed=3))
    users = h.sandbox.users
    value = next(u[name] for u in users.values() if u["role"] == "admin")
    pages = _all_pages(h, **{name: value}, limit=25)
    got = [u["user_id"] for p in pages for u in p["users"]]
    if name == "org_id":
        wanted = [k for k, u in users.items() if value in u["org_ids"]]
    else:
        wanted = [k for k, u in users.items() if u[name] == value]
    assert got == wanted
    assert 0 < pages[0]["total"] == len(wanted) < 120


def test_filters_combine(api: Api) -> None:
    h = api(SandboxConfig(users=120, seed=3))
    users = h.sandbox.users
    org = next(iter(users.values()))["org_id"]
    body = h.call(
        "GET", "/users/list", params={"status": "active", "org_id": org, "limit": 500}
    ).json()
    wanted = [k for k, u in users.items() if u["status"] == "active" and org in u["org_ids"]]
    assert [u["user_id"] for u in body["users"]] == wanted
    assert body["last_evaluated_key"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "ten"},
        {"status": "deleted"},
        {"last_evaluated_key": "not base64!"},
        {"last_evaluated_key": base64.b64encode(b'{"user_id": "nobody"}').decode()},
    ],
)
def test_bad_list_queries_are_400(api: Api, params: dict[str, str]) -> None:
    h = api()
    assert_pcx_error(h.call("GET", "/users/list", params=params), 400)


def test_final_state_is_readable_through_the_list(api: Api) -> None:
    h = api(SandboxConfig(users=30))
    changed = [h.uid("active", i) for i in range(3)]
    for uid in changed:
        assert h.deactivate(uid).status_code == 200
    inactive = {u["user_id"] for p in _all_pages(h, status="inactive") for u in p["users"]}
    assert set(changed) <= inactive
    assert inactive == {k for k, u in h.sandbox.users.items() if u["status"] == "inactive"}


# -- the behaviours the docs leave open --------------------------------------------------------


def test_deactivating_an_inactive_user_is_409_by_default(api: Api) -> None:
    h = api()
    uid = h.uid("inactive")
    response = h.deactivate(uid)
    assert_pcx_error(response, 409)
    assert "already inactive" in response.json()["message"]
    assert h.sandbox.requests[-1].applied is False


def test_deactivating_an_inactive_user_can_answer_200(api: Api) -> None:
    h = api(SandboxConfig(users=40, deactivate_inactive=200))
    uid = h.uid("inactive")
    before = h.sandbox.users[uid]
    response = h.deactivate(uid)
    assert response.status_code == 200
    assert response.json()["user"]["status"] == "inactive"
    assert h.sandbox.users[uid] == before
    assert h.sandbox.requests[-1].applied is False


def test_setting_the_status_a_user_has_is_200_by_default(api: Api) -> None:
    h = api()
    uid = h.uid("active")
    response = h.activate(uid, "active")
    assert response.status_code == 200
    assert response.json()["user"]["status"] == "active"
    assert h.sandbox.requests[-1].applied is False


def test_setting_the_status_a_user_has_can_answer_409(api: Api) -> None:
    h = api(SandboxConfig(users=40, same_status=409))
    uid = h.uid("active")
    h.sandbox.set_status(uid, "rejected")
    assert_pcx_error(h.activate(uid, "rejected"), 409)
    assert h.activate(uid, "active").status_code == 200


# -- the request log ---------------------------------------------------------------------------


def test_every_request_is_recorded_with_its_answer(api: Api) -> None:
    h = api()
    uid = h.uid("active")
    h.deactivate(uid, json={"updated_by": "ops", "reason": "r1"})
    h.call("GET", "/users/list", params={"status": "inactive", "limit": 2})
    h.deactivate(uid, headers={"X-Api-Key": "NONE", "Authorization": "NONE"})

    put, listing, refused = h.sandbox.requests
    assert (put.method, put.path, put.user_id) == ("PUT", f"/v1/users/{uid}/deactivate", uid)
    assert put.body == {"updated_by": "ops", "reason": "r1"}
    assert (put.status, put.applied, put.fault) == (200, True, None)
    assert put.response is not None and put.response["message"] == "User deactivated successfully"
    assert put.caller is not None and put.caller.startswith("api_key:pcx_sbx")
    assert put.time > 0 and put.request_id
    assert (listing.method, listing.path, listing.user_id, listing.body) == (
        "GET",
        "/v1/users/list",
        None,
        None,
    )
    assert listing.query == "status=inactive&limit=2"
    assert (refused.status, refused.applied, refused.caller) == (401, False, None)
    # The log names credentials by their prefix only: no secret ends up in it.
    log = repr(h.sandbox.requests)
    for secret in (h.sandbox.api_key, h.sandbox.jwt, h.sandbox.readonly_api_key):
        assert secret not in log


def test_percent_encoded_user_ids_are_decoded(api: Api, tmp_path: Any) -> None:
    users = tmp_path / "users.json"
    users.write_text('[{"user_id": "a b+c", "status": "active"}]')
    h = api(SandboxConfig(users_file=users))
    response = h.call("PUT", "/users/a%20b%2Bc/deactivate", json={"updated_by": "ops"})
    assert response.status_code == 200
    assert h.sandbox.status_of("a b+c") == "inactive"
    assert h.sandbox.requests[-1].path == "/v1/users/a%20b%2Bc/deactivate"
