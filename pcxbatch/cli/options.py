"""Flags shared by several commands, and what they become: job overrides and a credential.

In: click's parsed flag values and the environment. Out: decorators that add the shared flags
to a command, :func:`overrides` (flags under the job's key names), :func:`credentials` (from the
environment or the job's key file, never from a flag), and :func:`safe`, the one place text from
outside (file names, cells, server messages) is made harmless for a terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pcxbatch.errors import ConfigError
from pcxbatch.rules import HIDDEN_ROW_CHOICES

if TYPE_CHECKING:
    from pcxbatch.config import Job
    from pcxbatch.credentials import Credentials

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

#: C0 and C1 controls, DEL, and the bidirectional overrides/isolates that can make a terminal
#: line read other than it is (a file name or a server message could carry any of them).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def safe(text: str) -> str:
    """``text`` with every control or bidi-override character shown as its ``\\x..`` escape.

    Tabs and newlines are escaped too: one message stays one line.
    """
    return _UNSAFE.sub(lambda m: ascii(m.group())[1:-1], text)


def _enable_debug(_ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--debug``: DEBUG lines on stderr, each with every credential-shaped text redacted.

    httpx, httpcore and aiohttp stay at INFO: at DEBUG httpcore prints raw headers, and a server
    that reflects the key or JWT in one (``WWW-Authenticate``, say) would put it on stderr; the
    client logs each attempt (method, path, status, time) instead.
    """
    if not value:
        return
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.DEBUG,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    logging.getLogger().setLevel(logging.DEBUG)  # json mode installed its handler already
    for noisy in ("httpx", "httpcore", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.INFO)
    # The environment's secrets by value, and anything shaped like a PCX key or a JWT (a key
    # from a credentials file included): no line on stderr carries one.
    known = [v for n in ("PCX_API_KEY", "PCX_JWT") if len(v := os.environ.get(n, "").strip()) > 7]
    shapes = re.compile(r"(pcx_[A-Za-z0-9-]{1,40}_)[^\s'\"]+|eyJ[\w-]*\.[\w-]+\.[\w-]+")

    def redact(record: logging.LogRecord) -> bool:
        text = record.getMessage()
        for secret in known:
            text = text.replace(secret, "[redacted]")
        record.msg, record.args = shapes.sub(lambda m: (m[1] or "") + "[redacted]", text), None
        return True

    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)


#: ``--debug`` is accepted before and after the command name.
debug_option = click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_enable_debug,
    help="Log every request (method, path, status, time) and retry to stderr; never "
    "credentials. Shows the traceback of an internal error.",
)


def _apply(options: list[Decorator]) -> Decorator:
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


#: How fast and how unattended a send goes: shared by run, resume and apply.
_pacing: list[Decorator] = [
    click.option(
        "--rate",
        metavar="RATE|auto",
        help="Requests per second at most (the API's limit), or auto: find the limit from the"
        " API's 429 answers, starting slow (opt-in: probing a shared key's limit slows everyone"
        " on it for a moment).",
    ),
    click.option(
        "--max-rate",
        type=float,
        help="With --rate auto: never more requests per second than this.",
    ),
    click.option("--burst", type=int, help="Requests that may go out back to back (default 1)."),
    click.option("--concurrency", type=int, help="Requests in flight at most."),
    click.option(
        "--yes",
        "-y",
        is_flag=True,
        default=None,
        help="Do not ask for confirmation (needed for unattended runs).",
    ),
]


job_options = _apply(
    [
        click.option(
            "--input",
            "input_path",
            type=click.Path(path_type=Path),
            help="Input file (overrides the job's input).",
        ),
        click.option(
            "--sheet",
            help="Worksheet of an XLSX input: its name, or a 0-based number when no sheet has"
            " that name.",
        ),
        click.option(
            "--hidden-rows",
            type=click.Choice(HIDDEN_ROW_CHOICES),
            help="Rows hidden by hand or by a filter: refuse the file (default), skip them"
            " (never sent), or include them.",
        ),
        click.option(
            "--header-row",
            type=int,
            help="Row number of the header, as the spreadsheet shows it (default: the first of"
            " the first 20 filled rows that names a user ID column; titles above it are skipped).",
        ),
        click.option(
            "--column",
            "column",
            multiple=True,
            metavar='FIELD="HEADER"',
            help="The column that holds FIELD (user_id, status, action, reason, updated_by),"
            ' by its header, e.g. --column status="New Status". Repeatable.',
        ),
        click.option(
            "--action",
            type=click.Choice(["deactivate", "set_status"]),
            help="Action for rows that don't say (deactivate, or set_status via /activate).",
        ),
        click.option(
            "--status",
            help="Target status for set_status rows that don't say: "
            "active, pending_verification, rejected, not_verified.",
        ),
        click.option("--reason", help="Reason sent with rows that have no reason of their own."),
        click.option("--updated-by", help="Who is recorded as making deactivations (updated_by)."),
        click.option("--id-pattern", help="Regular expression a user ID must match."),
        click.option(
            "--max-bytes", type=int, help="Refuse input files larger than this (default 200 MB)."
        ),
    ]
)

insecure_option = click.option(
    "--allow-insecure-http",
    is_flag=True,
    default=None,
    help="Allow a plain http:// base URL that is not loopback (the credential travels "
    "unencrypted). Never for production.",
)

log_format_option = _apply(
    [
        click.option(
            "--log-format",
            type=click.Choice(["text", "json"]),
            default="text",
            show_default=True,
            help="json: every line on stderr is one JSON object (events, warnings, errors), "
            "for log collectors; nothing goes to stdout unless --summary.",
        ),
        click.option(
            "--summary",
            is_flag=True,
            help="With --log-format json: print the closing summary on stdout as well.",
        ),
    ]
)

#: Pacing a resume may change; where it sends may not (beyond PCX's two names for one API).
resume_options = _apply(
    [
        click.option(
            "--base-url",
            help="Only PCX's other documented name for the same API "
            "(prod-api.pcxpay.com <-> api.pcxpay.com); a resume never changes its target.",
        ),
        *_pacing,
        log_format_option,
        debug_option,
    ]
)

send_options = _apply(
    [
        click.option(
            "--base-url",
            help="PCX API base URL (default from the job, PCX_BASE_URL, "
            "or https://prod-api.pcxpay.com/v1).",
        ),
        click.option(
            "--report-dir",
            type=click.Path(path_type=Path),
            help="Folder that receives the run's report folder.",
        ),
        *_pacing,
        insecure_option,
        log_format_option,
        debug_option,
    ]
)


def overrides(flags: dict[str, Any]) -> dict[str, Any]:
    """Flags the user gave, under the job's key names (paths from the current directory)."""
    renamed = {"input_path": "input"}
    found: dict[str, Any] = {}
    for key, value in flags.items():
        if value is None:
            continue
        key = renamed.get(key, key)
        if key in ("input", "report_dir", "credentials_file"):
            value = Path(value).absolute()
        found[key] = value
    if "base_url" not in found and os.environ.get("PCX_BASE_URL"):
        found["base_url"] = os.environ["PCX_BASE_URL"]
    return found


@contextlib.contextmanager
def blaming_flags(found: Mapping[str, Any]) -> Iterator[None]:
    """A job problem that a flag caused names the flag (``--max-age``), not the job file."""
    try:
        yield
    except ConfigError as exc:
        names = _flag_names()
        problems = []
        for problem in exc.problems:
            key = problem.partition(":")[0]
            if key in found and key in names:
                problem = names[key] + problem[len(key) :]
            problems.append(problem)
        flags_only = all(p.startswith("--") for p in problems)
        raise ConfigError("command line" if flags_only else exc.source, problems) from None


def _flag_names() -> dict[str, str]:
    """The current command's flags by the job key they set (``max_plan_age_hours`` ->
    ``--max-age``)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return {}
    renamed = {"input_path": "input"}
    return {
        renamed.get(p.name, p.name): p.opts[0]
        for p in ctx.command.params
        if isinstance(p, click.Option) and p.name
    }


def credentials(job: Job) -> Credentials | None:
    """The job's credential: its key file when it names one, else the environment."""
    from pcxbatch.credentials import Credentials

    if job.credentials_file is not None:
        return Credentials.from_file(job.credentials_file)
    return Credentials.from_env(os.environ)
