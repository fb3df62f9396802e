"""Helpers for the web service's tests: accounts, a recording event sink, upload files.

Tests import it by bare name (``tests/web`` is on pytest's and mypy's path, as
``sandbox_harness`` is for the sandbox's tests); the fixtures are in ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from pcxbatch.sandbox.server import RunningSandbox
from pcxbatch.web.server import Service

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
ACCOUNTS = {
    "ana": "analyst",
    "bob": "analyst",
    "vera": "approver",
    "walt": "approver",
    "adam": "admin",
}


@dataclass
class Audited:
    """A service writing the real audit log, its accounts' tokens, and a client of it."""

    service: Service
    tokens: dict[str, str]
    client: TestClient


class RecordingSink:
    """An event sink that keeps every event, for tests to read."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def record(
        self,
        event: str,
        actor: Mapping[str, str],
        *,
        objects: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.events.append(
            {"event": event, "actor": dict(actor), "objects": dict(objects or {}),
             "details": dict(details or {})}
        )  # fmt: skip

    def names(self) -> list[str]:
        """The events' names, in order."""
        return [e["event"] for e in self.events]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def csv_file(rows: list[list[str]], header: tuple[str, ...] = ("User ID", "Reason")) -> bytes:
    """A CSV upload with ``header`` and ``rows``."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def form_token(page: str) -> str:
    """The CSRF token of the first form of ``page``."""
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def sign_in(client: TestClient, name: str, password: str = PASSWORD) -> tuple[int, str]:
    """Sign in through the form; the answer's status and the next page's CSRF token."""
    token = form_token(client.get("/login").text)
    got = client.post("/login", data={"name": name, "password": password, "csrf": token})
    return got.status_code, (form_token(got.text) if got.status_code == 200 else "")


def some_users(pcx: RunningSandbox, status: str | None = None, n: int = 3) -> list[str]:
    """``n`` user IDs of the sandbox (with ``status``, when given)."""
    found = [u for u, user in pcx.sandbox.users.items() if status in (None, user["status"])]
    return found[:n]


def upload(
    client: TestClient, token: str, body: bytes, name: str = "cases.csv", **fields: str
) -> Any:
    """POST a file to /api/v1/jobs as ``token``'s account."""
    data = fields or {"action": "deactivate", "reason": "Sanctions match"}
    return client.post(
        "/api/v1/jobs", headers=bearer(token), files={"file": (name, body)}, data=data
    )


def through_approval(
    client: TestClient, service: Service, tokens: dict[str, str], body: bytes
) -> str:
    """Upload as ana, preview, submit: a job awaiting approval; its id."""
    created = upload(client, tokens["ana"], body)
    assert created.status_code == 201, created.text
    job_id: str = created.json()["id"]
    assert (
        client.post(f"/api/v1/jobs/{job_id}/preview", headers=bearer(tokens["ana"])).status_code
        == 202
    )
    assert service.worker.wait_idle()
    submitted = client.post(f"/api/v1/jobs/{job_id}/submit", headers=bearer(tokens["ana"]))
    assert submitted.status_code == 200, submitted.text
    return job_id


def xlsx_file(rows: list[list[str]], header: tuple[str, ...] = ("User ID", "Reason")) -> bytes:
    """An .xlsx upload (one sheet, ``Cases``) with ``header`` and ``rows``."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Cases"
    sheet.append(list(header))
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port, in a thread; yield its URL.

    The socket is bound and listening before the thread starts, so a client may connect at
    once (the connection waits in the backlog): nothing waits for the server to be ready.
    """
    import socket
    import threading

    import uvicorn

    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
