"""``pcxbatch serve``'s body: the service assembled from its parts, and served with uvicorn.

In: the data dir, the PCX target and credential (the server's own, as the CLI takes them), an
event sink, and for ``--sandbox`` nothing else: the built-in sandbox is started and its own key
used (any real credential in the environment is ignored), with demo accounts made. Out:
:class:`Service` (the app, its flow and worker, for tests too), and a blocking :func:`serve`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pcxbatch.rules import is_loopback
from pcxbatch.web import passwords, retention, steps
from pcxbatch.web.access import Access
from pcxbatch.web.events import EventSink
from pcxbatch.web.flow import Flow, ServerConfig
from pcxbatch.web.store import Store, database_url
from pcxbatch.web.worker import ThreadWorker, WorkQueue

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from pcxbatch.credentials import Credentials

DEMO_ROLES = (("analyst", "analyst"), ("approver", "approver"), ("approver2", "approver"),
              ("admin", "admin"))  # fmt: skip


@dataclass
class Service:
    """The assembled service."""

    app: Starlette
    flow: Flow
    worker: WorkQueue
    store: Store
    access: Access


def default_sink(data_dir: Path) -> EventSink:
    """The service's audit log (``pcxbatch.audit``) in ``DATA_DIR/reports``, the report folder
    of every job: the runner's own entries for runs and previews go there too, so one log and
    one key vouch for the whole service (``pcxbatch audit verify DATA_DIR/reports``)."""
    from pcxbatch.audit import AuditLog

    folder = data_dir / "reports"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = AuditLog(folder)
    log.check_key()  # a key that cannot be used stops the start, not the first approval
    return log


def build(
    config: ServerConfig, sink: EventSink, store: Store | None = None,
    queue: WorkQueue | None = None,
) -> Service:  # fmt: skip
    """The app over ``config``, its queue started; runs that were queued or running when the
    server last stopped are queued again (they resume from their journals)."""
    from pcxbatch.web.app import create_app

    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = store or Store(database_url(config.data_dir, config.database))
    queue = queue or make_queue(config)
    flow = Flow(config, store, queue, sink)
    access = Access(store, sink)
    queue.start(lambda kind, job_id: steps.perform(flow, kind, job_id))
    steps.recover(flow)
    return Service(create_app(flow, access), flow, queue, store, access)


def make_queue(config: ServerConfig) -> WorkQueue:
    """Threads in this process (the embedded default), or, with ``--database``, a queue in
    PostgreSQL that every service process on that database shares (``queue_pg``)."""
    if config.database is None:
        return ThreadWorker()
    from pcxbatch.web.queue_pg import PgQueue

    name = f"pcxbatch-serve {steps.process_name()}"
    return PgQueue(config.database, name=name, stalled_after=config.stalled_after)


def add_account(store: Store, name: str, role: str, password: str) -> None:
    """A new account with an argon2id-hashed password."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    store.add_account(name, role, passwords.hash_password(password), now)


@contextlib.contextmanager
def sandbox_target(data_dir: Path, say: Callable[[str], None]) -> Iterator[tuple[str, Credentials]]:
    """Start the built-in sandbox, make the demo accounts (printing their passwords), and
    yield its base URL and key."""
    from pcxbatch.credentials import Credentials
    from pcxbatch.sandbox import SandboxConfig, start

    with start(SandboxConfig(users=200)) as running:
        store = Store(database_url(data_dir))
        say(f"sandbox: the built-in PCX sandbox at {running.base_url} (real credentials ignored)")
        for name, role in DEMO_ROLES:
            if store.account(name) is None:
                password = secrets.token_urlsafe(12)
                add_account(store, name, role, password)
                say(f"demo account: {name:<10} role {role:<9} password {password}")
        store.close()
        yield running.base_url, Credentials(api_key=running.api_key)


def bind_warning(host: str, tls: bool) -> str | None:
    """The warning for serving on a non-loopback address without TLS, or None."""
    if tls or is_loopback(host):
        return None
    return (
        f"WARNING: serving on {host} without TLS: passwords, session cookies and API tokens"
        " cross the network unencrypted; use --certfile/--keyfile or a TLS proxy"
    )


def serve(
    host: str, port: int, config: ServerConfig, say: Callable[[str], None], tls: dict[str, Any]
) -> None:
    """Serve until interrupted (uvicorn)."""
    import uvicorn

    sink = default_sink(config.data_dir)
    warning = bind_warning(host, bool(tls))
    if warning:
        say(warning)
    service = build(config, sink)
    daily = retention.Daily(service.flow)
    daily.start()  # a sweep now, then one a day
    scheme = "https" if tls else "http"
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104
    say(f"pcxbatch web service on {scheme}://{shown}:{port}/ (data in {config.data_dir})")
    if config.database:
        say(f"state and queue in PostgreSQL ({where(config.database)}): shared with every"
            " service process on that database and data dir")  # fmt: skip
    uvicorn.run(
        service.app, host=host, port=port, log_level="warning", server_header=False,
        proxy_headers=False, **tls,
    )  # fmt: skip
    daily.stop()
    service.worker.stop()
    service.store.close()


def where(url: str) -> str:
    """``host:port/database`` of a database URL: never its user or password."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.hostname or 'local socket'}:{parts.port or 5432}{parts.path or '/'}"


def data_dir_default() -> Path:
    """``PCXBATCH_DATA_DIR``, or ``pcxbatch-data`` in the current directory."""
    return Path(os.environ.get("PCXBATCH_DATA_DIR") or "pcxbatch-data").absolute()
