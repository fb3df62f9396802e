"""Fixtures of the web service's tests: a real sandbox on loopback, the service, its accounts.

``pcx`` (a fresh sandbox served on loopback), ``events`` (a recording event sink), ``service``
(the assembled service over a temporary data dir), ``tokens`` (an API token per account of
``web_harness.ACCOUNTS``), ``api`` (a ``TestClient`` of the app), ``audited`` (the service
over the real audit log).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from web_harness import ACCOUNTS, PASSWORD, REPO, Audited, RecordingSink

from pcxbatch.credentials import Credentials
from pcxbatch.sandbox import SandboxConfig, start
from pcxbatch.sandbox.server import RunningSandbox
from pcxbatch.web.flow import ServerConfig
from pcxbatch.web.server import Service, add_account, build
from pcxbatch.web.store import Store, database_url


@pytest.fixture
def pcx() -> Iterator[RunningSandbox]:
    with start(SandboxConfig(users=60, seed=7)) as running:
        yield running


@pytest.fixture
def events() -> RecordingSink:
    return RecordingSink()


#: Where the service keeps its state and queue: SQLite and threads (the default), and, when
#: the tests have a PostgreSQL server, PostgreSQL and procrastinate (``serve --database``).
BACKENDS = ["sqlite", "postgresql"] if os.environ.get("PCXBATCH_TEST_DATABASE") else ["sqlite"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The service's backend; a test of one backend only parametrizes ``backend`` itself."""
    return str(request.param)


@pytest.fixture
def service(
    tmp_path: Path, pcx: RunningSandbox, events: RecordingSink, backend: str,
    request: pytest.FixtureRequest,
) -> Iterator[Service]:  # fmt: skip
    data = tmp_path / "data"
    data.mkdir()
    database = request.getfixturevalue("pg_database") if backend == "postgresql" else None
    store = Store(database_url(data, database))
    for name, role in ACCOUNTS.items():
        add_account(store, name, role, PASSWORD)
    config = ServerConfig(
        data,
        pcx.base_url,
        Credentials(api_key=pcx.api_key),
        jobs_dir=REPO / "jobs",
        job_settings={"rate": 1000, "concurrency": 4},
        database=database,
        stalled_after=3,
    )
    service = build(config, events, store)
    yield service
    service.worker.wait_idle()
    service.worker.stop()
    store.close()


@pytest.fixture
def tokens(service: Service) -> dict[str, str]:
    from pcxbatch.web import passwords

    made = {}
    for name in ACCOUNTS:
        token = passwords.new_token()
        service.store.add_token(passwords.token_hash(token), name, "2026-01-01T00:00:00")
        made[name] = token
    return made


@pytest.fixture
def api(service: Service) -> Iterator[TestClient]:
    with TestClient(service.app, base_url="http://127.0.0.1") as client:
        yield client


@pytest.fixture
def audited(tmp_path: Path, pcx: RunningSandbox) -> Iterator[Audited]:
    """The service over the real audit log (``DATA_DIR/reports/audit.jsonl``), with a token
    per account and a client."""
    from pcxbatch.web import passwords
    from pcxbatch.web.server import default_sink

    data = tmp_path / "audited"
    data.mkdir()
    store = Store(database_url(data))
    made = {}
    for name, role in ACCOUNTS.items():
        add_account(store, name, role, PASSWORD)
        made[name] = passwords.new_token()
        store.add_token(passwords.token_hash(made[name]), name, "2026-01-01T00:00:00")
    config = ServerConfig(
        data, pcx.base_url, Credentials(api_key=pcx.api_key), job_settings={"rate": 1000}
    )
    service = build(config, default_sink(data), store)
    with TestClient(service.app, base_url="http://127.0.0.1") as client:
        yield Audited(service, made, client)
    service.worker.wait_idle()
    store.close()
