"""What the web service keeps: accounts, sessions, API tokens, jobs, approvals and runs.

In: a database URL (SQLite in the data dir by default, ``DATA_DIR/pcxbatch.db``, or a
``postgresql://`` URL from ``serve --database``, for several service processes). Out:
:class:`Store`, whose methods speak plain values (:class:`Account`, :class:`JobRecord`) and
never SQL. SQLAlchemy Core lets PostgreSQL take the same tables: the service never writes a
dialect of its own. Sessions and tokens are kept only as SHA-256 hashes;
passwords only as argon2id hashes (``passwords``). A job's state moves with one conditional
``UPDATE ... WHERE state IN (...)``, so two requests racing (a second approval, an approval and
a cancel) cannot both win; a change that reads a job's data before writing it takes the row's
write lock first (:func:`_hold`), so two processes merging facts into one job lose neither.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection

ROLES = ("analyst", "approver", "admin")

_meta = MetaData()

accounts = Table(
    "accounts",
    _meta,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", String(40), nullable=False),
)

sessions = Table(
    "sessions",
    _meta,
    Column("id_hash", String(64), primary_key=True),
    Column("account", String(64), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("expires_at", String(40), nullable=False),
)

tokens = Table(
    "tokens",
    _meta,
    Column("token_hash", String(64), primary_key=True),
    Column("account", String(64), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)

#: One row per uploaded file and the plan made of it; ``data`` holds the JSON-shaped rest.
jobs = Table(
    "jobs",
    _meta,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(32), unique=True, nullable=False),
    Column("state", String(24), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
    Column("data", Text, nullable=False),
)

#: Failed sign-ins, per account and per address (``account:NAME``, ``origin:ADDR``): kept here,
#: not in memory, so the limit holds across the service's processes and its restarts.
sign_in_failures = Table(
    "sign_in_failures",
    _meta,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False, index=True),
    Column("at", String(40), nullable=False),
)

approvals = Table(
    "approvals",
    _meta,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(32), nullable=False),
    Column("account", String(64), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("plan_sha256", String(64), nullable=False),
    Column("at", String(40), nullable=False),
)

runs = Table(
    "runs",
    _meta,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(32), nullable=False),
    Column("started_by", String(64), nullable=False),
    Column("started_at", String(40), nullable=False),
    Column("ended_at", String(40)),
    Column("state", String(24), nullable=False),
    Column("run_dir", Text),
)


@dataclass(frozen=True)
class Account:
    """A person (or a robot) who signs in. The password hash never leaves the store."""

    name: str
    role: str
    disabled: bool
    created_at: str


@dataclass(frozen=True)
class JobRecord:
    """A job as stored: its id, state, who made it and when, and the rest (``data``)."""

    id: str
    state: str
    created_by: str
    created_at: str
    updated_at: str
    data: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """One of the job's facts (``counts``, ``plan_sha256``, ``submitted_by``...)."""
        return self.data.get(key, default)


def database_url(data_dir: Path, database: str | None = None) -> str:
    """``database`` (a ``postgresql://`` URL) when given, else the embedded default: SQLite in
    ``DATA_DIR/pcxbatch.db``."""
    return database or f"sqlite:///{data_dir / 'pcxbatch.db'}"


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database."""
    return url.startswith(("postgresql:", "postgres:", "postgresql+"))


_TABLES_LOCK = 0x70637861  # "pcxa": one process at a time creates the tables


class Store:
    """The service's tables, behind methods that take and return plain values."""

    def __init__(self, url: str) -> None:
        if is_postgres(url):  # psycopg 3, the driver procrastinate and the pacing use too
            url = "postgresql+psycopg:" + url.split(":", 1)[1]
        self.engine: Engine = create_engine(url, connect_args=_connect_args(url))
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        with self.engine.begin() as db:
            if self.engine.dialect.name == "postgresql":  # two processes starting at once
                db.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _TABLES_LOCK})
            _meta.create_all(db)

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()

    # --- accounts -------------------------------------------------------------------------

    def add_account(self, name: str, role: str, password_hash: str, now: str) -> None:
        """A new account; ValueError when the name is taken."""
        with self.engine.begin() as db:
            if db.execute(select(accounts.c.name).where(accounts.c.name == name)).first():
                raise ValueError(f"an account named {name!r} exists already")
            db.execute(
                insert(accounts).values(
                    name=name, role=role, password_hash=password_hash, disabled=False,
                    created_at=now,
                )
            )  # fmt: skip

    def account(self, name: str) -> Account | None:
        """The account named ``name``, or None."""
        with self.engine.connect() as db:
            row = db.execute(select(accounts).where(accounts.c.name == name)).first()
        return None if row is None else Account(row.name, row.role, row.disabled, row.created_at)

    def password_hash(self, name: str) -> str | None:
        """The stored hash of an enabled account's password (None: no such enabled account)."""
        with self.engine.connect() as db:
            row = db.execute(
                select(accounts.c.password_hash).where(
                    accounts.c.name == name, accounts.c.disabled.is_(False)
                )
            ).first()
        return None if row is None else str(row.password_hash)

    def accounts(self) -> list[Account]:
        """Every account, by name."""
        with self.engine.connect() as db:
            rows = db.execute(select(accounts).order_by(accounts.c.name)).all()
        return [Account(r.name, r.role, r.disabled, r.created_at) for r in rows]

    def disable_account(self, name: str) -> bool:
        """Disable ``name``, end its sessions and revoke its tokens; False when unknown."""
        with self.engine.begin() as db:
            done = db.execute(
                update(accounts).where(accounts.c.name == name).values(disabled=True)
            ).rowcount
            db.execute(sessions.delete().where(sessions.c.account == name))
            db.execute(update(tokens).where(tokens.c.account == name).values(revoked=True))
        return bool(done)

    # --- sessions and tokens ------------------------------------------------------------------

    def add_session(self, id_hash: str, account: str, csrf: str, expires_at: str) -> None:
        """Keep a new session (by the hash of its id)."""
        with self.engine.begin() as db:
            db.execute(
                insert(sessions).values(
                    id_hash=id_hash, account=account, csrf=csrf, expires_at=expires_at
                )
            )

    def session(self, id_hash: str, now: str) -> tuple[Account, str] | None:
        """The enabled account and CSRF token of a live session, or None."""
        with self.engine.connect() as db:
            row = db.execute(select(sessions).where(sessions.c.id_hash == id_hash)).first()
        if row is None or row.expires_at <= now:
            return None
        account = self.account(row.account)
        if account is None or account.disabled:
            return None
        return account, str(row.csrf)

    def end_session(self, id_hash: str) -> None:
        """Forget a session (sign-out)."""
        with self.engine.begin() as db:
            db.execute(sessions.delete().where(sessions.c.id_hash == id_hash))

    def add_token(self, token_hash: str, account: str, now: str) -> None:
        """Keep a new API token (by its hash)."""
        with self.engine.begin() as db:
            db.execute(
                insert(tokens).values(
                    token_hash=token_hash, account=account, created_at=now, revoked=False
                )
            )

    def revoke_tokens(self, account: str) -> int:
        """Revoke every token of ``account``; how many there were."""
        with self.engine.begin() as db:
            return int(
                db.execute(
                    update(tokens)
                    .where(tokens.c.account == account, tokens.c.revoked.is_(False))
                    .values(revoked=True)
                ).rowcount
            )

    def token_account(self, token_hash: str) -> Account | None:
        """The enabled account a live token belongs to, or None."""
        with self.engine.connect() as db:
            row = db.execute(
                select(tokens.c.account).where(
                    tokens.c.token_hash == token_hash, tokens.c.revoked.is_(False)
                )
            ).first()
        account = None if row is None else self.account(row.account)
        return None if account is None or account.disabled else account

    def add_failure(self, keys: Iterable[str], at: str) -> None:
        """Keep one failed sign-in under each of ``keys``."""
        with self.engine.begin() as db:
            db.execute(insert(sign_in_failures), [{"key": k, "at": at} for k in keys])

    def failures_since(self, keys: Iterable[str], cutoff: str) -> int:
        """The most failed sign-ins under any one of ``keys`` since ``cutoff`` (older ones are
        forgotten on the way)."""
        wanted = list(keys)
        with self.engine.begin() as db:
            db.execute(sign_in_failures.delete().where(sign_in_failures.c.at < cutoff))
            rows = db.execute(
                select(sign_in_failures.c.key, func.count())
                .where(sign_in_failures.c.key.in_(wanted))
                .group_by(sign_in_failures.c.key)
            ).all()
        return max((int(n) for _, n in rows), default=0)

    # --- jobs ---------------------------------------------------------------------------------

    def add_job(
        self, job_id: str, state: str, created_by: str, now: str, data: Mapping[str, Any]
    ) -> None:
        """Keep a new job."""
        with self.engine.begin() as db:
            db.execute(
                insert(jobs).values(
                    id=job_id, state=state, created_by=created_by, created_at=now,
                    updated_at=now, data=json.dumps(dict(data)),
                )
            )  # fmt: skip

    def job(self, job_id: str) -> JobRecord | None:
        """The job with ``job_id``, or None."""
        with self.engine.connect() as db:
            row = db.execute(select(jobs).where(jobs.c.id == job_id)).first()
        return None if row is None else _job(row)

    def jobs(self, states: Iterable[str] | None = None) -> list[JobRecord]:
        """Every job (in ``states``, when given), newest first."""
        query = select(jobs).order_by(jobs.c.seq.desc())
        if states is not None:
            query = query.where(jobs.c.state.in_(list(states)))
        with self.engine.connect() as db:
            return [_job(row) for row in db.execute(query).all()]

    def move(
        self, job_id: str, from_states: Iterable[str], to_state: str, now: str, **facts: Any
    ) -> JobRecord | None:
        """Move the job to ``to_state`` (merging ``facts`` into its data) only when it is in
        one of ``from_states``; the job as it is now, or None when it was not in one of them."""
        wanted = list(from_states)
        with self.engine.begin() as db:
            _hold(db, job_id)
            row = db.execute(
                select(jobs).where(jobs.c.id == job_id, jobs.c.state.in_(wanted))
            ).first()
            if row is None:
                return None
            data = {**json.loads(row.data), **facts}
            done = db.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.state == row.state)
                .values(state=to_state, updated_at=now, data=json.dumps(data))
            ).rowcount
        return self.job(job_id) if done else None

    def note(self, job_id: str, now: str, **facts: Any) -> JobRecord | None:
        """Merge ``facts`` into the job's data without moving its state (progress); the job as
        it is now, or None when there is no such job."""
        with self.engine.begin() as db:
            _hold(db, job_id)
            row = db.execute(select(jobs).where(jobs.c.id == job_id)).first()
            if row is None:
                return None
            data = {**json.loads(row.data), **facts}
            db.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(updated_at=now, data=json.dumps(data))
            )
        # The row as written (no second reading: a run's progress is noted every second).
        return JobRecord(row.id, row.state, row.created_by, row.created_at, now, data)

    def add_approval(
        self, job_id: str, account: str, decision: str, reason: str, plan: str, now: str
    ) -> None:
        """Keep an approver's decision on a plan."""
        with self.engine.begin() as db:
            db.execute(
                insert(approvals).values(
                    job_id=job_id, account=account, decision=decision, reason=reason,
                    plan_sha256=plan, at=now,
                )
            )  # fmt: skip

    def start_run(self, job_id: str, account: str, now: str) -> int:
        """Keep the start of a run (or a resume) of a job's plan; its number."""
        with self.engine.begin() as db:
            result = db.execute(
                insert(runs).values(
                    job_id=job_id, started_by=account, started_at=now, state="running"
                )
            )
            key = result.inserted_primary_key
            return int(key[0]) if key else 0

    def end_open_runs(self, job_id: str, state: str, now: str) -> None:
        """Mark the job's runs still ``running`` (their process died) as ended in ``state``."""
        with self.engine.begin() as db:
            db.execute(
                update(runs)
                .where(runs.c.job_id == job_id, runs.c.state == "running")
                .values(state=state, ended_at=now)
            )

    def end_run(self, seq: int, state: str, run_dir: str | None, now: str) -> None:
        """Keep how a run ended."""
        with self.engine.begin() as db:
            db.execute(
                update(runs)
                .where(runs.c.seq == seq)
                .values(state=state, run_dir=run_dir, ended_at=now)
            )


def _hold(db: Connection, job_id: str) -> None:
    """Take the job row's write lock before reading it: an UPDATE that changes nothing (on
    PostgreSQL the row's lock, on SQLite the database's), so no other writer can change the row
    between this transaction's read and its write."""
    db.execute(update(jobs).where(jobs.c.id == job_id).values(seq=jobs.c.seq))


def _job(row: Any) -> JobRecord:
    return JobRecord(
        row.id, row.state, row.created_by, row.created_at, row.updated_at, json.loads(row.data)
    )


def _connect_args(url: str) -> dict[str, Any]:
    # Requests and the worker use the store from several threads; each connection is used by
    # one thread at a time (the pool hands them out), which SQLite allows when told so.
    return {"check_same_thread": False, "timeout": 30} if url.startswith("sqlite") else {}


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # WAL: readers never wait for the worker's writes; foreign keys stay SQLite's default.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
