"""Every route, walked as anonymous, each role, a disabled account and a revoked token.

The routes are read from the app's own tables (``views.routes``, ``api.routes``), so a route
added later is walked too. A route names the roles that may use it; everyone else is refused
(401 without a valid token, a redirect to sign-in without a session, 403 for another role).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.testclient import TestClient
from web_harness import PASSWORD, csv_file, some_users, upload

from pcxbatch.sandbox.server import RunningSandbox
from pcxbatch.web import api as api_routes
from pcxbatch.web import views
from pcxbatch.web.exchange import Route
from pcxbatch.web.server import Service


@dataclass
class Persona:
    name: str
    role: str | None  # None: may use nothing
    token: str = ""
    session: str = ""
    csrf: str = ""


def _personas(service: Service, tokens: dict[str, str]) -> list[Persona]:
    people = [Persona("anonymous", None)]
    for account, role in (("ana", "analyst"), ("vera", "approver"), ("adam", "admin"),
                          ("bob", None), ("walt", None)):  # fmt: skip
        session, csrf = service.access.sign_in(account, PASSWORD, "testclient")
        people.append(Persona(account, role, tokens[account], session, csrf))
    service.store.disable_account("bob")  # an analyst who left: session and token dead
    service.store.revoke_tokens("walt")  # an approver whose token was revoked
    people[-1].session = ""  # walt's revoked token only (a revoked token is an API matter)
    return people


def _call(client: TestClient, route: Route, who: Persona, job_id: str) -> int:
    path = route.path.replace("{id}", job_id).replace("{name}", "preview.csv")
    headers = {"Authorization": f"Bearer {who.token}"} if route.api and who.token else {}
    client.cookies.clear()
    if not route.api and who.session:
        client.cookies.set("pcxbatch_session", who.session)
    data = {"csrf": who.csrf, "reason": "walk"}
    files = {"file": ("walk.csv", b"User ID\nu1\n")} if route.upload else None
    if route.method == "GET":
        got = client.get(path, headers=headers, follow_redirects=False)
    else:
        got = client.post(path, headers=headers, data=data, files=files, follow_redirects=False)
    to_sign_in = got.status_code == 303 and got.headers.get("location") == "/login"
    return 401 if to_sign_in else got.status_code


def test_every_route_is_open_only_to_its_roles(
    api: TestClient, service: Service, tokens: dict[str, str], pcx: RunningSandbox
) -> None:
    created = upload(api, tokens["ana"], csv_file([[u, ""] for u in some_users(pcx)]))
    job_id = created.json()["id"]
    people = _personas(service, tokens)
    table = [*views.routes(service.flow), *api_routes.routes(service.flow)]
    assert len(table) >= 20 and all(r.roles for r in table)  # none open by omission
    for route in table:
        for who in people:
            status = _call(api, route, who, job_id)
            where = f"{route.method} {route.path} as {who.name}: {status}"
            if who.role is None:
                assert status == 401, where
            elif who.role in route.roles:
                assert status not in (401, 403), where
            else:
                assert status == 403, where
    service.worker.wait_idle()
