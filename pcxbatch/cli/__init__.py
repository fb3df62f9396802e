"""The command line: the only part of pcxbatch that prints, prompts or exits.

In: ``sys.argv`` and the environment (``PCX_API_KEY``, ``PCX_JWT``, ``PCX_BASE_URL``,
``PCXBATCH_OPERATOR``). Out: what the user reads on the terminal, the report folders the runner
writes, and one exit code from :class:`~pcxbatch.errors.ExitCode`, the same table for every
command.

:func:`run_cli` is the one boundary: commands return a code, and every exception ends here,
turned into one line (one JSON ``error`` event with ``--log-format json``) and a code.
pcxbatch's own errors carry their code; a disk or permission the system refused is the
environment's (exit 2); anything else is a bug, said as such in one line (exit 70), with the
traceback only under ``--debug``.

Modules: ``app`` (the click commands), ``options`` (flags shared by commands, flags to job
overrides, credentials), ``ui`` (a run on the terminal or as JSON events), ``summaries`` (what
each command prints when it ends), ``output`` (the streams: safe to write whatever becomes of
them, and JSON when asked). Heavy libraries (pandas, openpyxl, httpx, uvicorn, rich) are
imported by the command that needs them, so ``--help`` is quick.
"""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

import click

from pcxbatch.cli import output
from pcxbatch.errors import ConfigError, ExitCode, InternalError, PcxbatchError

__all__ = ["main", "run_cli"]


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point: run one command and exit with its code.

    The standard streams are made safe first (``output.install``), and SIGTERM and SIGHUP get
    Ctrl-C's handling: before a run sends, they end it with nothing sent; while it sends, the
    run stops gracefully (``execute``); while it writes its report, the report is finished.
    """
    output.install()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop_signal)
    sys.exit(int(run_cli(sys.argv[1:] if argv is None else list(argv))))


def _stop_signal(signum: int, _frame: FrameType | None) -> None:
    # Rows were answered and this handler is back (the run's own are off): the run is writing
    # its report, which comes first. Before any answer, nothing was sent: stop at once.
    if output.state.answered:
        return
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_cli(args: list[str]) -> ExitCode:
    """Run the command in ``args`` and turn whatever it ends with into an exit code.

    With ``--log-format json`` anywhere in ``args``, what ends the command is a JSON ``error``
    event too (even a usage error, found before the options are parsed).
    """
    from pcxbatch.cli.app import cli

    if output.wants_json(args):
        output.use_json(summary="--summary" in args)
    debug = "--debug" in args
    try:
        code = cli.main(args, prog_name="pcxbatch", standalone_mode=False)
    except click.exceptions.Abort as exc:
        # click turns Ctrl-C (or end of input) anywhere in a command into Abort.
        interrupted = isinstance(exc.__context__, KeyboardInterrupt)
        if interrupted:
            return _said("interrupted; nothing was sent", ExitCode.STOPPED)
        return _said("aborted; nothing was sent", ExitCode.DECLINED)
    except click.ClickException as exc:
        if not output.state.json:
            exc.show()
            return ExitCode.UNUSABLE
        return _said(f"error: {exc.format_message()}", ExitCode.UNUSABLE)
    except KeyboardInterrupt:
        return _said("interrupted; nothing was sent", ExitCode.STOPPED)
    except Exception as exc:  # the boundary: every error ends here, in one line
        return _failed(exc, debug)
    return ExitCode(code or 0)


def _failed(exc: Exception, debug: bool) -> ExitCode:
    """pcxbatch's own errors carry their code; the disk's refusals are the environment's
    (exit 2); anything else is a bug, said as such (exit 70)."""
    from pcxbatch.cli.options import safe
    from pcxbatch.reportdir import environment_problem

    if isinstance(exc, InternalError):
        if debug and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__)
        return _said(f"error: {safe(str(exc))}", exc.exit_code)
    if isinstance(exc, ConfigError):  # one line per problem, each naming its key
        head = f"error: {safe(exc.source)}: {len(exc.problems)} problem(s) in the job"
        if output.state.json:
            return _said(head, exc.exit_code, problems=exc.problems)
        lines = [f"{head}:", *(f"  - {safe(p)}" for p in exc.problems)]
        return _said("\n".join(lines), exc.exit_code)
    if isinstance(exc, PcxbatchError):
        return _said(f"error: {safe(str(exc))}", exc.exit_code)
    problem = environment_problem(exc)
    if problem is not None:
        if debug:
            traceback.print_exc()
        return _said(f"error: {safe(problem)}; nothing more was done", ExitCode.UNUSABLE)
    if debug:
        traceback.print_exc()
    return _said(
        f"internal error ({type(exc).__name__}: {safe(str(exc))}); this is a bug in"
        " pcxbatch. Run the same command with --debug to see the traceback.",
        ExitCode.INTERNAL,
    )


def _said(line: str, code: ExitCode, **fields: object) -> ExitCode:
    if output.state.json:
        output.error_line(line.removeprefix("error: "), int(code), **fields)
    else:
        output.error_line(line, int(code))
    return code
