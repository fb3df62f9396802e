"""``pcxbatch users ...`` (accounts of the web service) and ``pcxbatch serve`` (the service).

In: flags, a password from a prompt or stdin, the environment's PCX credential. Out: accounts
in ``DATA_DIR/pcxbatch.db``, or in PostgreSQL with ``--database`` (passwords as argon2id,
tokens as SHA-256: a new token is printed once, as the last line of stdout, and never again),
and the web service. The web libraries are
imported inside the commands, so ``pcxbatch --help`` loads none of them.
"""

from __future__ import annotations

import getpass
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pcxbatch.errors import ExitCode, UnusableError

if TYPE_CHECKING:
    from pcxbatch.web.store import Store

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the service keeps its database, uploads and reports "
    "(default: PCXBATCH_DATA_DIR, or ./pcxbatch-data).",
)

database_option = click.option(
    "--database", envvar="PCXBATCH_DATABASE", metavar="postgresql://...",
    help="Keep the service's state and its queue of runs in this PostgreSQL database, so that"
    " several service processes serve one team (default: PCXBATCH_DATABASE, or SQLite in the"
    " data dir). Every process needs the same data dir.",
)  # fmt: skip


def register(cli: click.Group) -> None:
    """Add ``users`` and ``serve`` to the ``pcxbatch`` command group."""
    cli.add_command(users)
    cli.add_command(serve)


def _store(data_dir: Path | None, database: str | None) -> Store:
    from pcxbatch.web.server import data_dir_default
    from pcxbatch.web.store import database_url

    _check_database(database)
    folder = (data_dir or data_dir_default()).absolute()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return open_store(database_url(folder, database))


def open_store(url: str) -> Store:
    """The service's store at ``url``, or one line saying why it cannot be opened."""
    from sqlalchemy.exc import SQLAlchemyError

    from pcxbatch.web.store import Store, is_postgres

    try:
        return Store(url)
    except ModuleNotFoundError as exc:
        raise UnusableError(
            f"--database needs the PostgreSQL driver ({exc.name}): pip install 'pcxbatch[postgres]'"
        ) from None
    except SQLAlchemyError as exc:
        where = "the --database" if is_postgres(url) else "the data dir's"
        raise UnusableError(f"cannot open {where} database: {_first_line(exc)}") from None


def _check_database(database: str | None) -> None:
    from pcxbatch.web.store import is_postgres

    if database is not None and not is_postgres(database):
        raise UnusableError(
            "--database takes a postgresql:// URL (without it: SQLite in the data dir)"
        )


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _record(data_dir: Path | None, change: str, name: str, **details: Any) -> None:
    """The account change, in the service's audit log (the actor: the server's own user)."""
    from pcxbatch.audit import Event
    from pcxbatch.web.server import data_dir_default, default_sink

    log = default_sink((data_dir or data_dir_default()).absolute())
    actor = {"account": getpass.getuser(), "role": "server", "origin": "cli"}
    log.record(
        Event.ACCOUNT_CHANGE,
        actor,
        objects={"account": name},
        details={"change": change, **details},
    )


def _new_token(store: Store, name: str) -> str:
    from datetime import UTC, datetime

    from pcxbatch.web import passwords

    token = passwords.new_token()
    store.add_token(passwords.token_hash(token), name, datetime.now(UTC).isoformat())
    return token


@click.group()
def users() -> None:
    """Accounts of the web service (pcxbatch serve): add, list, disable, API tokens."""


@users.command("add")
@click.argument("name")
@click.option(
    "--role", type=click.Choice(["analyst", "approver", "admin"]), required=True,
    help="analyst: uploads, previews, submits; approver: approves plans others made;"
    " admin: manages accounts (cannot approve).",
)  # fmt: skip
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (one line).")
@click.option("--token", is_flag=True, help="Also make an API token (printed once, last line).")
@data_dir_option
@database_option
def add(
    name: str, role: str, password_stdin: bool, token: bool, data_dir: Path | None,
    database: str | None,
) -> ExitCode:  # fmt: skip
    """Add an account NAME (lower-case letters, digits, . _ -) with a password."""
    from pcxbatch.web import passwords
    from pcxbatch.web.server import add_account

    if not _NAME.match(name):
        raise UnusableError(f"{name!r}: an account name is lower-case letters, digits, . _ -")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    problem = passwords.password_problem(password)
    if problem:
        raise UnusableError(problem)
    store = _store(data_dir, database)
    try:
        add_account(store, name, role, password)
    except ValueError as exc:
        raise UnusableError(str(exc)) from None
    _record(data_dir, "add", name, role=role)
    click.echo(f"added {name} ({role})")
    if token:
        secret = _new_token(store, name)
        _record(data_dir, "token", name)
        click.echo(secret)
    return ExitCode.OK


@users.command("list")
@data_dir_option
@database_option
def list_(data_dir: Path | None, database: str | None) -> ExitCode:
    """List the accounts: name, role, state."""
    for account in _store(data_dir, database).accounts():
        state = "disabled" if account.disabled else "active"
        click.echo(f"{account.name}\t{account.role}\t{state}\t{account.created_at}")
    return ExitCode.OK


@users.command("disable")
@click.argument("name")
@data_dir_option
@database_option
def disable(name: str, data_dir: Path | None, database: str | None) -> ExitCode:
    """Disable account NAME: its sessions end and its API tokens stop working."""
    if not _store(data_dir, database).disable_account(name):
        raise UnusableError(f"no account named {name!r}")
    _record(data_dir, "disable", name)
    click.echo(f"disabled {name}")
    return ExitCode.OK


@users.command("token")
@click.argument("name")
@click.option("--revoke", is_flag=True, help="Revoke NAME's tokens instead of making one.")
@data_dir_option
@database_option
def token_(name: str, revoke: bool, data_dir: Path | None, database: str | None) -> ExitCode:
    """Make a new API token for NAME (printed once, as the last line), or revoke its tokens."""
    store = _store(data_dir, database)
    account = store.account(name)
    if account is None or account.disabled:
        raise UnusableError(f"no active account named {name!r}")
    if revoke:
        count = store.revoke_tokens(name)
        _record(data_dir, "token_revoke", name, tokens=count)
        click.echo(f"revoked {count} token(s) of {name}")
        return ExitCode.OK
    secret = _new_token(store, name)
    _record(data_dir, "token", name)
    click.echo(f"API token for {name} (shown once; keep it secret):")
    click.echo(secret)
    return ExitCode.OK


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=8080, show_default=True)
@data_dir_option
@click.option("--base-url", help="PCX API base URL (default: PCX_BASE_URL, or production).")
@click.option(
    "--sandbox", is_flag=True, help="Serve against the built-in PCX sandbox, with demo accounts."
)
@click.option(
    "--jobs-dir", type=click.Path(path_type=Path, file_okay=False),
    help="Job templates offered in the upload form (default: ./jobs).",
)  # fmt: skip
@click.option(
    "--credentials-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The server's PCX key file (else PCX_API_KEY or PCX_JWT); never set by a form.",
)  # fmt: skip
@click.option("--certfile", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--keyfile", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--keep-days", type=click.IntRange(min=1), default=90, show_default=True,
    help="Days uploads and report files are kept (audit entries always stay).",
)  # fmt: skip
@database_option
@click.option(
    "--stalled-after", type=click.FloatRange(min=1), default=30.0, show_default=True,
    metavar="SECONDS",
    help="With --database: how long a service process may miss its heartbeat before another"
    " takes its runs over (they resume from their journals).",
)  # fmt: skip
def serve(
    host: str, port: int, data_dir: Path | None, base_url: str | None, sandbox: bool,
    jobs_dir: Path | None, credentials_file: Path | None, certfile: Path | None,
    keyfile: Path | None, keep_days: int, database: str | None, stalled_after: float,
) -> ExitCode:  # fmt: skip
    """Serve the web service: upload, check, preview, approve by a second person, run, download.

    The PCX credential is the server's own (PCX_API_KEY or PCX_JWT); --sandbox ignores it and
    starts the built-in sandbox, printing demo accounts. With --database, start as many service
    processes as you like on the same database and data dir: they share the queue, and a run
    whose process dies is taken over by another.
    """
    import contextlib
    import os
    import tempfile

    from pcxbatch.credentials import Credentials
    from pcxbatch.rules import DEFAULT_BASE_URL
    from pcxbatch.web.flow import ServerConfig
    from pcxbatch.web.server import data_dir_default, sandbox_target
    from pcxbatch.web.server import serve as run_server

    _check_shared(sandbox, database)
    if sandbox and data_dir is None:  # a fresh demo each time
        data_dir = Path(tempfile.mkdtemp(prefix="pcxbatch-demo-"))
    _store(data_dir, database).close()  # one line, not a traceback, when it cannot be opened
    folder = (data_dir or data_dir_default()).absolute()
    tls = (
        {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)} if certfile and keyfile else {}
    )
    creds: Credentials | None
    with contextlib.ExitStack() as stack:
        if sandbox:
            url, creds = stack.enter_context(sandbox_target(folder, click.echo))
            label = f"the built-in sandbox at {url}"
        else:
            url = base_url or os.environ.get("PCX_BASE_URL") or DEFAULT_BASE_URL
            if credentials_file is not None:
                creds = Credentials.from_file(credentials_file)
            else:
                creds = Credentials.from_env(os.environ)
            if creds is None:
                raise UnusableError(
                    "no API credential: set PCX_API_KEY (or PCX_JWT) for the server, or give"
                    " --credentials-file"
                )
            label = url
        config = ServerConfig(
            folder, url, creds, jobs_dir=(jobs_dir or Path("jobs")).absolute(),
            target_label=label, keep_days=keep_days, database=database,
            stalled_after=stalled_after,
        )  # fmt: skip
        with contextlib.suppress(KeyboardInterrupt):
            run_server(host, port, config, click.echo, tls)
    return ExitCode.OK


def _check_shared(sandbox: bool, database: str | None) -> None:
    """Refuse, in one line, what several service processes on one database cannot do."""
    import importlib.util

    if sandbox and database:
        raise UnusableError(
            "--sandbox starts a sandbox of each process's own, and processes sharing a --database"
            " must share one PCX target: start `pcxbatch sandbox` once and give every process"
            " its URL with --base-url (and its key in PCX_API_KEY)"
        )
    if database and importlib.util.find_spec("procrastinate") is None:
        raise UnusableError("--database needs procrastinate: pip install 'pcxbatch[postgres]'")
