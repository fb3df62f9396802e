"""The command line: the only module that prints, prompts or exits.

In: ``sys.argv`` and the environment (``PCX_API_KEY``, ``PCX_JWT``, ``PCX_BASE_URL``). Out: what
the user reads on the terminal, report folders written by the run, and an exit code:
0 every row applied/unchanged/planned, 1 some rows failed/invalid/duplicate, 2 the job or input
cannot be used (nothing sent), 3 the run stopped early and can be resumed, 4 another run of the
same job holds its lock.

click parses the commands; rich draws progress and tables on a terminal and stays plain (no
colours, timestamped lines) when output goes to a file or a cron mail.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table as RichTable
from rich.text import Text

from pcxbatch import __version__
from pcxbatch.config import Job, job_from_dict, load_job
from pcxbatch.credentials import Credentials
from pcxbatch.errors import PcxbatchError, UnusableError
from pcxbatch.model import Outcome, RowResult
from pcxbatch.plan import load_plan
from pcxbatch.runner import (
    Plan,
    RunResult,
    RunUI,
    apply_plan,
    check_table,
    preview_job,
    read_input,
    resume_run,
    retry_failed,
    run_job,
    stored_job,
)

#: Outcomes in the order a person reads them.
OUTCOME_ORDER = [o.value for o in Outcome]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def main() -> None:
    """Console-script entry point: run the command group, turn known errors into exit codes."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        err.print("Aborted.")
        sys.exit(3)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except PcxbatchError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(3)
    sys.exit(0)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="pcxbatch")
@click.option(
    "--debug", is_flag=True, help="Log every retry and HTTP exchange to stderr (never credentials)."
)
def cli(debug: bool) -> None:
    """Apply bulk user status changes to the PCX Users API from a CSV or Excel file.

    \b
    Try it against the built-in sandbox (no credentials needed):
      pcxbatch run jobs/sanctions-deactivate.yaml --sandbox
    Check a file without sending anything:
      pcxbatch validate cases.xlsx --action set_status
    Preview against the API, then apply exactly what was reviewed:
      pcxbatch preview JOB.yaml --plan-out plan.json && pcxbatch apply plan.json
    """
    if debug:
        logging.basicConfig(
            level=logging.DEBUG,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )


def _job_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by ``run`` and ``validate``: what a row means."""
    options = [
        click.option(
            "--input",
            "input_path",
            type=click.Path(path_type=Path),
            help="Input file (overrides the job's input).",
        ),
        click.option("--sheet", help="Worksheet name or 0-based number (XLSX input)."),
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
    for option in reversed(options):
        fn = option(fn)
    return fn


def _send_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by ``run`` and ``resume``: how and where requests go."""
    options = [
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
        click.option("--rate", type=float, help="Requests per second at most (the API's limit)."),
        click.option(
            "--burst", type=int, help="Requests that may go out back to back (default 1)."
        ),
        click.option("--concurrency", type=int, help="Requests in flight at most."),
        click.option(
            "--yes",
            "-y",
            is_flag=True,
            default=None,
            help="Do not ask for confirmation (needed for unattended runs).",
        ),
        click.option(
            "--allow-insecure-http",
            is_flag=True,
            default=None,
            help="Allow a plain http:// base URL that is not loopback (the credential travels "
            "unencrypted). Never for production.",
        ),
        click.option(
            "--log-format",
            type=click.Choice(["text", "json"]),
            default="text",
            show_default=True,
            help="json: one JSON object per event on stderr, for log collectors.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@cli.command()
@click.argument("target", type=click.Path(path_type=Path), required=False)
@_job_options
@_send_options
@click.option("--dry-run", is_flag=True, default=None, help="Check and plan only; send nothing.")
@click.option(
    "--sandbox",
    is_flag=True,
    default=False,
    help="Run against the built-in PCX sandbox on loopback (no credentials needed).",
)
@click.option("--max-rows", type=int, help="Refuse to send more than this many rows.")
@click.option(
    "--fresh", is_flag=True, help="Start a new run even if the job's last run stopped part-way."
)
@click.option(
    "--retry-failed",
    "retry_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Send again only the rows RUN_DIR reported failed or not_attempted "
    "(a new run, linked to it).",
)
def run(
    target: Path | None,
    sandbox: bool,
    fresh: bool,
    retry_dir: Path | None,
    log_format: str,
    **flags: Any,
) -> None:
    """Run a job file (JOB.yaml) or an ad-hoc file (FILE.csv / FILE.xlsx).

    Every row ends with one outcome: applied, unchanged, failed, invalid, duplicate,
    not_attempted or planned. The report folder (results.csv, results.xlsx, summary.json) is
    named on the last line. If the job's last run stopped part-way (crash, Ctrl-C), running it
    again on the same input resumes that run; --fresh starts over.

    Credentials come from PCX_API_KEY (API key) or PCX_JWT (a person's session token), or from
    the job's credentials_file; never from a flag.
    """
    overrides = _overrides(flags)
    if sandbox:
        overrides["sandbox"] = True
    if retry_dir is not None:
        if target is not None:
            raise click.UsageError("--retry-failed takes the run folder; give no TARGET with it")
        _send(
            lambda creds, ui: retry_failed(retry_dir, creds, ui, overrides),
            log_format,
            stored=stored_job(retry_dir, overrides),
        )
        return
    if target is None:
        raise click.UsageError("give a job file (JOB.yaml) or an input file (FILE.csv/.xlsx)")
    job = load_job(target, overrides)
    _send(lambda creds, ui: run_job(job, creds, ui, fresh=fresh), log_format, stored=job)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@_send_options
def resume(run_dir: Path, log_format: str, **flags: Any) -> None:
    """Finish a run that stopped part-way (crash, Ctrl-C, refused key, too many failures).

    Rows that already have an outcome are not sent again; rows sent without a recorded answer are
    sent again (the changes are idempotent). The input file must be unchanged.
    """
    overrides = _overrides(flags)
    _send(
        lambda creds, ui: resume_run(run_dir, creds, ui, overrides),
        log_format,
        stored=stored_job(run_dir, overrides),
    )


@cli.command()
@click.argument("target", type=click.Path(path_type=Path))
@_job_options
@click.option(
    "--sandbox",
    is_flag=True,
    default=False,
    help="Preview against the built-in PCX sandbox (no credentials needed).",
)
@click.option("--base-url", help="PCX API base URL.")
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path),
    help="Folder that receives the preview's folder.",
)
@click.option("--rate", type=float, help="Requests per second at most while listing users.")
@click.option("--org-id", help="Only list users of this organisation (faster on big tenants).")
@click.option(
    "--plan-out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the plan file (default: plan.json in the preview's folder).",
)
@click.option(
    "--allow-insecure-http",
    is_flag=True,
    default=None,
    help="Allow a plain http:// base URL that is not loopback.",
)
def preview(target: Path, sandbox: bool, plan_out: Path | None, **flags: Any) -> None:
    """Show what a job would change, from the users' current status; change nothing.

    Every row is classified: will_change (from -> to), unchanged (already in the wanted state),
    not_found, invalid or duplicate. Writes preview.csv/.xlsx (counts at the top) and a plan
    file that `pcxbatch apply PLAN` sends exactly.
    """
    overrides = _overrides(flags)
    if sandbox:
        overrides["sandbox"] = True
    job = load_job(target, overrides)
    # No credential: the runner refuses, as for a run (a preview reads from the API).
    credentials = None if job.sandbox is not None else _credentials(job)
    last = [time.monotonic()]

    def on_page(pages: int, listed: int, found: int) -> None:
        # Listing a big tenant takes a while: say how far it got, at most every 5 seconds.
        if time.monotonic() - last[0] >= 5:
            last[0] = time.monotonic()
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            err.print(
                f"{stamp} listed {listed} users in {pages} page(s); found {found} of the file's",
                markup=False,
            )

    result = preview_job(job, credentials, plan_out=plan_out, on_page=on_page)
    out.print(f"preview of {job.input} against {result.target}", markup=False)
    table = RichTable(show_header=True, header_style="bold", box=None)
    table.add_column("rows")
    table.add_column("count", justify="right")
    for kind, n in result.counts.items():
        table.add_row(kind, str(n))
    out.print(table)
    for before, after, n in result.transitions:
        out.print(f"  {n} user(s) go from {before} to {after}", markup=False)
    if result.problems:
        out.print()
        _problem_table(result.problems)
    out.print(
        f"plan: {result.plan_path}  (apply it with: pcxbatch apply {result.plan_path})",
        markup=False,
    )
    out.print(f"report: {result.run_dir}", markup=False)
    sys.exit(result.exit_code)


@cli.command()
@click.argument("plan_file", type=click.Path(path_type=Path, dir_okay=False))
@_send_options
@click.option(
    "--max-age",
    "max_plan_age_hours",
    type=float,
    help="Refuse a plan older than this many hours (default 24, or the job's).",
)
def apply(plan_file: Path, log_format: str, **flags: Any) -> None:
    """Send exactly the changes of a reviewed plan (from `pcxbatch preview --plan-out`).

    Only the plan's will_change rows are sent. The plan is refused if it was altered, if its
    input file changed, if it is too old, or (when the job requires a second person) if you
    previewed it yourself. Writes undo.csv beside the report: `pcxbatch run undo.csv` puts the
    changed users back.
    """
    overrides = _overrides(flags)
    body = load_plan(plan_file)
    stored = job_from_dict(body["job"], overrides)
    _send(
        lambda creds, ui: apply_plan(plan_file, creds, ui, overrides),
        log_format,
        stored=stored,
    )


def _send(
    start: Callable[[Credentials | None, RunUI], RunResult],
    log_format: str,
    *,
    stored: Job,
) -> None:
    """Shared by run/resume/apply: credentials, the confirmation rule, the UI, the summary."""
    job = stored
    # The built-in sandbox brings its own key; a real credential is never sent to it.
    credentials = None if job.sandbox is not None else _credentials(job)
    interactive = sys.stdin.isatty()
    if not (job.dry_run or job.yes or job.sandbox is not None or interactive):
        raise UnusableError(
            "not a terminal, so there is no one to confirm: pass --yes (or yes: true in the job)"
            " for unattended runs, or --dry-run to preview"
        )
    if job.allow_insecure_http and job.base_url.startswith("http://"):
        err.print(
            f"WARNING: plain http to {job.base_url}: the credential travels unencrypted",
            markup=False,
        )
    ask = interactive and not job.yes and job.sandbox is None
    ui: TerminalUI = JsonUI(ask=ask) if log_format == "json" else TerminalUI(ask=ask)
    try:
        result = start(credentials, ui)
    finally:
        ui.close()
    ui.finished(result)
    _print_result(result)
    sys.exit(result.exit_code)


@cli.command()
@click.argument("target", type=click.Path(path_type=Path))
@_job_options
@click.option(
    "--show", type=int, default=20, show_default=True, help="How many problem rows to list."
)
def validate(target: Path, show: int, **flags: Any) -> None:
    """Read and check a job's input (or a file) without touching the network.

    Exit code 0 when every row is usable, 1 when some rows are invalid or duplicate, 2 when the
    file cannot be used at all.
    """
    job = load_job(target, _overrides(flags))
    table = read_input(job)
    counts: Counter[str] = Counter()
    problems: list[tuple[int, str, str]] = []
    for item in check_table(table, job):
        if item.outcome is None:
            counts[f"ready: {item.action.value if item.action else '?'}"] += 1
        else:
            counts[item.outcome.value] += 1
            if len(problems) < show:
                problems.append((item.row, item.outcome.value, item.message))
    sheet = f", sheet {table.sheet!r}" if table.sheet else ""
    out.print(f"{job.input}{sheet}: {sum(counts.values())} data rows", markup=False)
    summary = RichTable(show_header=True, header_style="bold", box=None)
    summary.add_column("rows")
    summary.add_column("count", justify="right")
    for key, n in sorted(counts.items()):
        summary.add_row(key, str(n))
    out.print(summary)
    if problems:
        out.print()
        _problem_table(problems)
        hidden = counts["invalid"] + counts["duplicate"] - len(problems)
        if hidden > 0:
            out.print(f"... and {hidden} more (use --show N to list more)")
    sys.exit(1 if counts["invalid"] or counts["duplicate"] else 0)


@cli.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on (loopback unless you really mean otherwise).",
)
@click.option("--port", default=8400, show_default=True, type=int, help="0 picks a free port.")
@click.option("--users", default=200, show_default=True, type=int, help="Seeded users.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for users and faults.")
@click.option(
    "--users-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="JSON list of user objects to serve instead of seeded ones.",
)
@click.option("--api-key", help="The API key it accepts (default: a generated one, printed).")
@click.option("--rate", type=float, help="Throttle: requests/s per key (429 beyond it).")
@click.option("--burst", type=int, help="Throttle burst (default: the rate, rounded up).")
@click.option("--retry-after", is_flag=True, help="Send Retry-After with 429 answers.")
@click.option(
    "--latency-ms",
    type=float,
    default=0.0,
    show_default=True,
    help="Added latency per request (with jitter).",
)
@click.option(
    "--fail-rate",
    type=float,
    default=0.0,
    show_default=True,
    help="Share of requests answered 502/503.",
)
@click.option(
    "--ghost-rate",
    type=float,
    default=0.0,
    show_default=True,
    help="Share of changes applied and then answered 504.",
)
@click.option(
    "--drop-rate",
    type=float,
    default=0.0,
    show_default=True,
    help="Share of requests whose connection closes with no answer.",
)
@click.option(
    "--deactivate-inactive",
    type=click.Choice(["409", "200"]),
    default="409",
    show_default=True,
    help="Answer to deactivating an already inactive user.",
)
@click.option(
    "--same-status",
    type=click.Choice(["200", "409"]),
    default="200",
    show_default=True,
    help="Answer to setting the status a user already has.",
)
def sandbox(**flags: Any) -> None:
    """Serve the local PCX Users API stand-in, for demos and tests (Ctrl-C stops it)."""
    from pcxbatch.sandbox import SandboxConfig, serve

    flags["deactivate_inactive"] = int(flags["deactivate_inactive"])
    flags["same_status"] = int(flags["same_status"])
    config = SandboxConfig(**{k: v for k, v in flags.items() if v is not None})
    with contextlib.suppress(KeyboardInterrupt):
        serve(config, announce=lambda line: out.print(line, markup=False))


def _overrides(flags: dict[str, Any]) -> dict[str, Any]:
    """Flags the user gave, under the job's key names (paths from the current directory)."""
    renamed = {"input_path": "input"}
    overrides: dict[str, Any] = {}
    for key, value in flags.items():
        if value is None:
            continue
        key = renamed.get(key, key)
        if key in ("input", "report_dir"):
            value = Path(value).absolute()
        if key == "sheet" and isinstance(value, str) and value.isdigit():
            value = int(value)
        overrides[key] = value
    if "base_url" not in overrides and os.environ.get("PCX_BASE_URL"):
        overrides["base_url"] = os.environ["PCX_BASE_URL"]
    return overrides


def _credentials(job: Job) -> Credentials | None:
    if job.credentials_file is not None:
        return Credentials.from_file(job.credentials_file)
    return Credentials.from_env(os.environ)


class TerminalUI:
    """Draws a run on the terminal: the plan, live progress, stop notices."""

    def __init__(self, *, ask: bool) -> None:
        self._ask = ask
        self._fancy = err.is_terminal
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._counts: Counter[str] = Counter()
        self._retries = 0
        self._throttled = 0
        self._total = 0
        self._started = time.monotonic()
        self._last_line = 0.0

    def planned(self, plan: Plan) -> bool:
        """Print what will be sent where; ask for a yes on an interactive real run."""
        job = plan.job
        out.print(f"job {job.name}: {job.input}", markup=False)
        counts = {k: v for k, v in plan.counts.items() if v}
        decided = ", ".join(f"{n} {k}" for k, n in counts.items() if k != "not_attempted")
        sending = ", ".join(f"{n} {action}" for action, n in plan.to_send.items()) or "nothing"
        if plan.dry_run:
            out.print(f"dry run: would send {sending}; {decided or 'no other rows'}", markup=False)
            return True
        out.print(f"to send: {sending} -> {plan.target}", markup=False)
        if decided:
            out.print(f"not sent: {decided}", markup=False)
        out.print(f"credential: {plan.credential}", markup=False)
        if not self._ask or not plan.to_send:
            return True
        total = sum(plan.to_send.values())
        return click.confirm(f"Send {total} change(s) to {plan.target}?", default=False)

    def started(self, total: int) -> None:
        """Sending begins."""
        self._total = total
        self._started = time.monotonic()
        if self._fancy:
            self._progress = Progress(
                TextColumn("[bold]sending"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[detail]}"),
                console=err,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("send", total=total, rate="", detail="")
        else:
            self._line(force=True)

    def result(self, result: RowResult) -> None:
        """One row done: update the counts and the progress display."""
        self._counts[result.outcome.value] += 1
        self._retries += max(result.attempts - 1, 0)
        self._throttled += result.throttled
        if self._progress is not None and self._task is not None:
            done = sum(self._counts.values())
            self._progress.update(
                self._task, completed=done, rate=f"{self._rate():.1f}/s", detail=self._detail()
            )
        else:
            self._line()

    def stopping(self, reason: str) -> None:
        """The run stops early; say why right away."""
        (self._progress.console if self._progress else err).print(
            f"stopping: {reason}", markup=False
        )

    def resuming(self, run_dir: Path, remaining: int) -> None:
        """Say that an unfinished run is being finished rather than a new one started."""
        out.print(
            f"resuming the unfinished run {run_dir}: {remaining} row(s) left"
            " (--fresh starts a new run instead)",
            markup=False,
        )

    def finished(self, result: RunResult) -> None:
        """The report is written (the summary table follows on stdout)."""

    def close(self) -> None:
        """Take the live display down (before the summary is printed)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        elif self._total:
            self._line(force=True)

    def _rate(self) -> float:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        return sum(self._counts.values()) / elapsed

    def _detail(self) -> str:
        parts = [f"{k} {n}" for k, n in sorted(self._counts.items())]
        parts.append(f"retries {self._retries}")
        if self._throttled:
            parts.append(f"throttled {self._throttled}")
        return ", ".join(parts)

    def _line(self, *, force: bool = False) -> None:
        """A plain timestamped progress line, at most every 5 seconds (logs, cron mail)."""
        now = time.monotonic()
        if not force and now - self._last_line < 5:
            return
        self._last_line = now
        done = sum(self._counts.values())
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        err.print(
            f"{stamp} {done}/{self._total} rows, {self._rate():.1f}/s, {self._detail()}",
            markup=False,
        )


class JsonUI(TerminalUI):
    """One JSON object per event on stderr (``--log-format json``), for log collectors.

    Events: ``run_planned``, ``run_resumed``, ``run_started``, ``row_retried``, ``row_failed``,
    ``run_stopping``, ``progress`` (at most every 5 s) and ``run_finished``. Credentials appear
    only as their safe description; row events carry the row number, not the row's cells.
    """

    def __init__(self, *, ask: bool) -> None:
        super().__init__(ask=ask)
        self._fancy = False

    def planned(self, plan: Plan) -> bool:
        self._emit(
            "run_planned",
            job=plan.job.name,
            run_dir=str(plan.run_dir),
            target=plan.target,
            credential=plan.credential,
            dry_run=plan.dry_run,
            to_send=plan.to_send,
            counts={k: v for k, v in plan.counts.items() if v},
        )
        return super().planned(plan) if self._ask else True

    def resuming(self, run_dir: Path, remaining: int) -> None:
        self._emit("run_resumed", run_dir=str(run_dir), remaining=remaining)

    def started(self, total: int) -> None:
        self._total = total
        self._started = time.monotonic()
        self._emit("run_started", rows=total)

    def result(self, result: RowResult) -> None:
        self._counts[result.outcome.value] += 1
        self._retries += max(result.attempts - 1, 0)
        self._throttled += result.throttled
        if result.attempts > 1:
            self._emit(
                "row_retried",
                row=result.row,
                attempts=result.attempts,
                throttled=result.throttled,
                outcome=result.outcome.value,
            )
        if result.outcome is Outcome.FAILED:
            self._emit(
                "row_failed",
                row=result.row,
                http_status=result.http_status,
                message=result.message,
                request_id=result.request_id,
            )
        now = time.monotonic()
        if now - self._last_line >= 5:
            self._last_line = now
            self._emit(
                "progress",
                done=sum(self._counts.values()),
                rows=self._total,
                rate=round(self._rate(), 2),
                retries=self._retries,
                throttled=self._throttled,
            )

    def stopping(self, reason: str) -> None:
        self._emit("run_stopping", reason=reason)

    def finished(self, result: RunResult) -> None:
        self._emit(
            "run_finished",
            run_dir=str(result.run_dir),
            exit_code=result.exit_code,
            counts={k: v for k, v in result.counts.items() if v},
            stopped=result.stopped,
            retries=self._retries,
            throttled=self._throttled,
        )

    def close(self) -> None:
        pass

    @staticmethod
    def _emit(event: str, **fields: Any) -> None:
        record = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event}
        record.update(fields)
        sys.stderr.write(json.dumps(record, ensure_ascii=False) + "\n")
        sys.stderr.flush()


def _print_result(result: RunResult) -> None:
    table = RichTable(title=None, show_header=True, header_style="bold", box=None)
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    for outcome in OUTCOME_ORDER:
        if result.counts.get(outcome):
            table.add_row(outcome, str(result.counts[outcome]))
    out.print(table)
    if result.problems:
        out.print()
        _problem_table([(p.row, p.outcome.value, p.message) for p in result.problems])
        hidden = sum(result.counts.get(o, 0) for o in ("failed", "invalid", "duplicate"))
        if hidden > len(result.problems):
            out.print(f"... {hidden - len(result.problems)} more in the report", markup=False)
    if result.stopped:
        out.print(f"stopped: {result.stopped}", markup=False)
    if result.counts.get(Outcome.NOT_ATTEMPTED.value):
        out.print(f"to finish this run: pcxbatch resume {result.run_dir}", markup=False)
    out.print(f"exit code {result.exit_code}", markup=False)
    out.print(f"report: {result.run_dir}", markup=False)


def _problem_table(problems: list[tuple[int, str, str]]) -> None:
    table = RichTable(show_header=True, header_style="bold", box=None)
    table.add_column("row", justify="right")
    table.add_column("outcome")
    table.add_column("why")
    for row, outcome, message in problems:
        # Text(): a cell from the file must never be read as rich markup.
        table.add_row(str(row), outcome, Text(message))
    out.print(table)
