"""The command line: the only part of pcxbatch that prints, prompts or exits.

In: ``sys.argv`` and the environment (``PCX_API_KEY``, ``PCX_JWT``, ``PCX_BASE_URL``,
``PCXBATCH_OPERATOR``). Out: what the user reads on the terminal, the report folders the runner
writes, and one exit code from :class:`~pcxbatch.errors.ExitCode`, the same table for every
command.

:func:`main` is the one boundary: commands return a code, and every exception ends here, turned
into one line and a code. pcxbatch's own errors carry their code; anything else is a bug, said
as such in one line (exit 70), with the traceback only under ``--debug``.

Modules: ``app`` (the click commands), ``options`` (flags shared by commands, flags to job
overrides, credentials), ``ui`` (terminal and JSON rendering with rich). Heavy libraries (pandas,
openpyxl, httpx, uvicorn, rich) are imported by the command that needs them, so ``--help`` is
quick.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

import click

from pcxbatch.errors import ExitCode, InternalError, PcxbatchError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point: run one command and exit with its code."""
    sys.exit(int(run_cli(sys.argv[1:] if argv is None else list(argv))))


def run_cli(args: list[str]) -> ExitCode:
    """Run the command in ``args`` and turn whatever it ends with into an exit code."""
    from pcxbatch.cli.app import cli
    from pcxbatch.cli.options import safe

    debug = "--debug" in args
    try:
        code = cli.main(args, prog_name="pcxbatch", standalone_mode=False)
    except click.exceptions.Abort as exc:
        # click turns Ctrl-C (or end of input) anywhere in a command into Abort.
        interrupted = isinstance(exc.__context__, KeyboardInterrupt)
        _say("interrupted; nothing was sent" if interrupted else "aborted; nothing was sent")
        return ExitCode.STOPPED if interrupted else ExitCode.DECLINED
    except click.ClickException as exc:
        exc.show()
        return ExitCode.UNUSABLE
    except InternalError as exc:
        if debug and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__)
        _say(f"error: {_lines(str(exc))}")
        return exc.exit_code
    except PcxbatchError as exc:
        _say(f"error: {_lines(str(exc))}")
        return exc.exit_code
    except KeyboardInterrupt:
        _say("interrupted; nothing was sent")
        return ExitCode.STOPPED
    except Exception as exc:  # the boundary: anything else is a bug, said in one line
        if debug:
            traceback.print_exc()
        _say(
            f"internal error ({type(exc).__name__}: {safe(str(exc))}); this is a bug in"
            " pcxbatch. Run the same command with --debug to see the traceback."
        )
        return ExitCode.INTERNAL
    return ExitCode(code or 0)


def _say(text: str) -> None:
    click.echo(text, err=True)


def _lines(text: str) -> str:
    """``text`` made safe for the terminal line by line (a job's problems are one per line)."""
    from pcxbatch.cli.options import safe

    return "\n".join(safe(line) for line in text.splitlines())
