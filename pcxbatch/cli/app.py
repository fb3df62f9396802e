"""The ``pcxbatch`` commands: each turns its flags into a job and a context, calls one runner
operation, renders the result, and returns an exit code (:func:`pcxbatch.cli.main` exits).

In: parsed flags. Out: a :class:`~pcxbatch.errors.ExitCode`. Nothing here decides what a row
means or how a run goes: that is the runner's. The runner, the readers and the client are
imported inside the commands, so ``--help`` loads none of them.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pcxbatch import __version__
from pcxbatch.cli.audit_cmds import audit
from pcxbatch.cli.options import (
    blaming_flags,
    credentials,
    debug_option,
    insecure_option,
    job_options,
    log_format_option,
    overrides,
    resume_options,
    safe,
    send_options,
)
from pcxbatch.cli.web_cmds import register as register_web_commands
from pcxbatch.config import Job, load_job
from pcxbatch.errors import ExitCode, UnusableError

if TYPE_CHECKING:
    from pcxbatch.context import RunContext, RunResult


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="pcxbatch")
@debug_option
def cli() -> None:
    """Apply bulk user status changes to the PCX Users API from a CSV or Excel file.

    \b
    Try it against the built-in sandbox (no credentials needed):
      pcxbatch run jobs/sanctions-deactivate.yaml --sandbox
    Check a file without sending anything:
      pcxbatch validate cases.xlsx --action set_status
    Preview against the API, then apply exactly what was reviewed:
      pcxbatch preview JOB.yaml --plan-out plan.json; pcxbatch apply plan.json

    \b
    Exit codes (every command): 0 all done; 1 only the file's own problems (invalid,
    duplicate, not found rows); 5 some rows failed at the API; 2 the job, input or
    environment cannot be used (nothing sent); 3 stopped, or an older run of the job is
    still unfinished (resume or abandon it); 4 another run of the job holds its lock;
    6 declined at the prompt; 7 audit verify found a change; 70 internal error. Every
    code but 0 needs a person.
    """


@cli.command()
@click.argument("target", type=click.Path(path_type=Path), required=False)
@job_options
@send_options
@click.option("--dry-run", is_flag=True, default=None, help="Check and plan only; send nothing.")
@click.option(
    "--sandbox",
    is_flag=True,
    default=False,
    help="Run against the built-in PCX sandbox on loopback (no credentials needed).",
)
@click.option("--max-rows", type=int, help="Refuse to send more than this many rows.")
@click.option(
    "--fresh",
    is_flag=True,
    help="Start a new run even if an unfinished run of this input could be resumed "
    "(that run is left as it is, and named).",
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
    summary: bool,
    **flags: Any,
) -> ExitCode:
    """Run a job file (JOB.yaml) or an ad-hoc file (FILE.csv / FILE.xlsx).

    Every row ends with one outcome: applied, unchanged, failed, invalid, duplicate,
    not_attempted or planned. The report folder (results.csv, results.xlsx, summary.json) is
    named on the last line. If a run of the job stopped part-way (crash, Ctrl-C), running it
    again on the same input resumes that run; a new input (or --fresh) starts a new run, names
    the older one as left unfinished and exits 3 while it is (pcxbatch resume / abandon it).

    Credentials come from PCX_API_KEY (API key) or PCX_JWT (a person's session token), or from
    the job's credentials_file; never from a flag.
    """
    from pcxbatch.runfolder import stored_job
    from pcxbatch.runner import retry_failed, run_job

    found = overrides(flags)
    if sandbox:
        found["sandbox"] = True
    if retry_dir is not None:
        if target is not None:
            raise click.UsageError("--retry-failed takes the run folder; give no TARGET with it")
        return _send(
            lambda ctx: retry_failed(retry_dir, ctx, found),
            log_format,
            stored_job(retry_dir, found),
        )
    if target is None:
        raise click.UsageError("give a job file (JOB.yaml) or an input file (FILE.csv/.xlsx)")
    with blaming_flags(found):
        job = load_job(target, found)
    return _send(lambda ctx: run_job(job, ctx, fresh=fresh), log_format, job)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@resume_options
def resume(run_dir: Path, log_format: str, summary: bool, **flags: Any) -> ExitCode:
    """Finish a run that stopped part-way (crash, Ctrl-C, refused key, too many failures).

    Rows that already have an outcome are not sent again; rows sent without a recorded answer are
    sent again (the changes are idempotent). What is sent is what the run's journal recorded when
    it began, even if its input file has changed since. Only the pacing may change (--rate,
    --burst, --concurrency); never where it sends.
    """
    from pcxbatch.runfolder import stored_job
    from pcxbatch.runner import resume_run

    found = overrides(flags)
    return _send(
        lambda ctx: resume_run(run_dir, ctx, found), log_format, stored_job(run_dir, found)
    )


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@log_format_option
@debug_option
def abandon(run_dir: Path, log_format: str, summary: bool) -> ExitCode:
    """Close an unfinished run without sending the rest of it.

    Its rows without an outcome stay not_attempted in its report, and later runs of the job stop
    naming it as unfinished (and stop exiting 3 because of it). Nothing is sent.
    """
    from pcxbatch.cli.summaries import print_result
    from pcxbatch.cli.ui import JsonUI, TerminalUI
    from pcxbatch.context import RunContext
    from pcxbatch.runner import abandon_run

    ui: TerminalUI = JsonUI(ask=False) if log_format == "json" else TerminalUI(ask=False)
    result = abandon_run(run_dir, RunContext(ui=ui))
    ui.finished(result)
    print_result(result)
    return result.exit_code


@cli.command()
@click.argument("target", type=click.Path(path_type=Path))
@job_options
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
@click.option("--max-rows", type=int, help="Refuse a file that would change more rows.")
@insecure_option
@log_format_option
@debug_option
def preview(
    target: Path,
    sandbox: bool,
    plan_out: Path | None,
    log_format: str,
    summary: bool,
    **flags: Any,
) -> ExitCode:
    """Show what a job would change, from the users' current status; change nothing.

    Every row is classified: will_change (from -> to), unchanged (already in the wanted state),
    not_found, invalid or duplicate. Writes preview.csv/.xlsx (counts at the top) and a plan
    file that `pcxbatch apply PLAN` sends exactly, once; its sha256 is printed. Exit code 0, or
    1 when some rows are invalid, duplicate or not found (the plan is written either way).
    """
    from pcxbatch.cli.summaries import print_preview
    from pcxbatch.cli.ui import PreviewUI
    from pcxbatch.context import RunContext
    from pcxbatch.runner import preview_job

    found = overrides(flags)
    if sandbox:
        found["sandbox"] = True
    with blaming_flags(found):
        job = load_job(target, found)
    # No credential: the runner refuses, as for a run (a preview reads from the API).
    creds = None if job.sandbox is not None else credentials(job)
    result = preview_job(job, RunContext(ui=PreviewUI(), credentials=creds), plan_out=plan_out)
    print_preview(job, result)
    return result.exit_code


@cli.command()
@click.argument("plan_file", type=click.Path(path_type=Path, dir_okay=False, readable=False))
@send_options
@click.option(
    "--max-age",
    "max_plan_age_hours",
    type=float,
    help="Refuse a plan older than this many hours (default 24, or the job's).",
)
def apply(plan_file: Path, log_format: str, summary: bool, **flags: Any) -> ExitCode:
    """Send exactly the changes of a reviewed plan (from `pcxbatch preview`), once.

    Only the plan's will_change rows are sent, and only to the API the plan was previewed
    against. The plan is refused if it was altered, if its input file changed, if it is too
    old, if it was applied before (a stopped apply of it is resumed instead), or (when the job
    requires a second person) if you previewed it yourself. Writes undo.csv beside the report:
    `pcxbatch run undo.csv` puts the changed users back.
    """
    from pcxbatch.config import job_from_dict
    from pcxbatch.plan import load_plan
    from pcxbatch.runner import apply_plan

    found = overrides(flags)
    with blaming_flags(found):
        stored = job_from_dict(load_plan(plan_file).job, found)
    return _send(lambda ctx: apply_plan(plan_file, ctx, found), log_format, stored)


def _send(start: Callable[[RunContext], RunResult], log_format: str, job: Job) -> ExitCode:
    """Shared by run/resume/apply: credentials, the confirmation rule, the UI, the summary."""
    from pcxbatch.cli.summaries import print_result
    from pcxbatch.cli.ui import JsonUI, TerminalUI, warn
    from pcxbatch.context import RunContext

    # The built-in sandbox brings its own key; a real credential is never sent to it.
    creds = None if job.sandbox is not None else credentials(job)
    interactive = sys.stdin.isatty()
    if not (job.dry_run or job.yes or job.sandbox is not None or interactive):
        raise UnusableError(
            "not a terminal, so there is no one to confirm: pass --yes (or yes: true in the job)"
            " for unattended runs, or --dry-run to preview"
        )
    if job.allow_insecure_http and job.base_url.startswith("http://"):
        warn(f"WARNING: plain http to {job.base_url}: the credential travels unencrypted")
    ask = interactive and not job.yes and job.sandbox is None
    ui: TerminalUI = JsonUI(ask=ask) if log_format == "json" else TerminalUI(ask=ask)
    try:
        result = start(RunContext(ui=ui, credentials=creds))
    finally:
        ui.close()
    ui.finished(result)
    print_result(result)
    return result.exit_code


@cli.command()
@click.argument("target", type=click.Path(path_type=Path))
@job_options
@click.option(
    "--show", type=int, default=20, show_default=True, help="How many problem rows to list."
)
@log_format_option
@debug_option
def validate(target: Path, show: int, log_format: str, summary: bool, **flags: Any) -> ExitCode:
    """Read and check a job's input (or a file) without touching the network.

    Exit code 0 when every row is usable, 1 when some rows are invalid or duplicate, 2 when the
    file cannot be used at all.
    """
    from pcxbatch.cli.summaries import print_validation
    from pcxbatch.cli.ui import warn
    from pcxbatch.runner import check_table, read_input

    found = overrides(flags)
    with blaming_flags(found):
        job = load_job(target, found)
    table = read_input(job)
    counts: Counter[str] = Counter()
    problems: list[tuple[int, str, str]] = []
    items = check_table(table, job)
    for item in items:
        if item.outcome is None:
            counts[f"ready: {item.action.value if item.action else '?'}"] += 1
        else:
            counts[item.outcome.value] += 1
            if len(problems) < show:
                problems.append((item.row, item.outcome.value, item.message))
    print_validation(f"{safe(str(job.input))}", table.sheet, counts, problems)
    for note in getattr(items, "notes", ()):  # about the file, said once (e.g. unread columns)
        warn(f"note: {safe(note)}")
    return ExitCode.FILE_PROBLEMS if counts["invalid"] or counts["duplicate"] else ExitCode.OK


def _sandbox_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One option per settable sandbox field, from the one definition on ``SandboxConfig``."""
    from pcxbatch.sandbox.config import sandbox_settings

    for setting in reversed(sandbox_settings()):
        flag = "--" + setting.name.replace("_", "-")
        if setting.type is bool:
            option = click.option(flag, is_flag=True, help=setting.help)
        elif setting.choices:  # e.g. 409 or 200: shown and typed as text
            choices = [str(c) for c in setting.choices]
            option = click.option(
                flag,
                type=click.Choice(choices),
                default=str(setting.default),
                show_default=True,
                help=setting.help,
            )
        else:
            kind: Any = setting.type
            if setting.type is Path:
                kind = click.Path(path_type=Path, exists=True, dir_okay=False)
            option = click.option(
                flag,
                type=kind,
                default=setting.default,
                show_default=setting.default is not None,
                help=setting.help,
            )
        fn = option(fn)
    return fn


@cli.command()
@_sandbox_options
def sandbox(**flags: Any) -> ExitCode:
    """Serve the local PCX Users API stand-in, for demos and tests (Ctrl-C stops it)."""
    import contextlib

    from pcxbatch.sandbox import SandboxConfig, serve
    from pcxbatch.sandbox.config import sandbox_settings

    for setting in sandbox_settings():
        if setting.choices and flags.get(setting.name) is not None:
            flags[setting.name] = setting.type(flags[setting.name])
    config = SandboxConfig(**{k: v for k, v in flags.items() if v is not None})
    with contextlib.suppress(KeyboardInterrupt):
        serve(config, announce=lambda line: click.echo(line))
    return ExitCode.OK


cli.add_command(audit)
register_web_commands(cli)  # users, serve: their own module
