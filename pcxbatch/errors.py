"""Exceptions that end a run, grouped by what the caller must do about them.

Row problems are never exceptions: they are ``invalid``/``failed`` rows in the report. These are
for what stops the whole run, and each maps to one exit code in ``cli``::

    PcxbatchError
    ├── UnusableError        exit 2: the job or the input cannot be used; nothing was sent
    │   ├── ConfigError      the job file or flags (carries every problem at once)
    │   └── InputError       the input file (unreadable, no user_id column, empty, ...)
    ├── LockedError          exit 4: another run of the same job holds the lock
    ├── InternalError        exit 70: an unexpected failure after rows were sent (report kept)
    └── StoppedError         exit 3: the run stopped part-way and can be resumed
        └── AuthError        401/403: every further row would fail the same way
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """Every exit code pcxbatch returns, for every command; the only place they are defined."""

    OK = 0  # every row applied, unchanged or planned, or nothing to do
    FILE_PROBLEMS = 1  # finished; only the file's own problems (invalid, duplicate, not_found)
    UNUSABLE = 2  # the job, the input or the environment cannot be used; nothing was sent
    STOPPED = 3  # stopped (interrupt, guard, API unreachable, credential refused); resumable
    LOCKED = 4  # another run of the same job holds the lock
    FAILED_ROWS = 5  # finished; some rows failed or unconfirmed at the API (wins over 1)
    DECLINED = 6  # declined at the confirmation prompt; nothing sent, nothing to resume
    NOT_VERIFIED = 7  # audit verify: the log, a journal or a report file is not as recorded
    INTERNAL = 70  # internal error (--debug shows the traceback)


class PcxbatchError(Exception):
    """Base of every error pcxbatch raises on purpose. ``str()`` is a message for a person."""

    exit_code: ExitCode = ExitCode.UNUSABLE


class UnusableError(PcxbatchError):
    """The job or the input cannot be used at all; nothing was sent."""

    exit_code = ExitCode.UNUSABLE


class ConfigError(UnusableError):
    """A job file or its flags are wrong. ``problems`` lists every one, each naming its key."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s) in the job:\n{lines}")


class InputError(UnusableError):
    """The input file cannot be read or used (names the file and the problem)."""


class LockedError(PcxbatchError):
    """Another run of the same job is in progress."""

    exit_code = ExitCode.LOCKED


class StoppedError(PcxbatchError):
    """The run stopped before every row was tried; ``pcxbatch resume`` can finish it."""

    exit_code = ExitCode.STOPPED


class AuthError(StoppedError):
    """The API refused the credential (401) or its role (403).

    ``maybe_applied``: an earlier attempt of the same call may have been applied (a 504 before
    the 401 of a key rotated meanwhile); the row it was for stays "may have been applied".
    """

    def __init__(
        self,
        http_status: int,
        message: str,
        request_id: str | None = None,
        *,
        maybe_applied: bool = False,
    ) -> None:
        self.http_status = http_status
        self.request_id = request_id
        self.maybe_applied = maybe_applied
        what = "was refused (401)" if http_status == 401 else "is not allowed to do this (403)"
        super().__init__(f"the API credential {what}: {message}")


class InternalError(PcxbatchError):
    """An unexpected failure after rows were sent: the report was written, the run resumable.

    Raised ``from`` the unexpected exception, so ``--debug`` can show its traceback.
    """

    exit_code = ExitCode.INTERNAL

    def __init__(self, message: str, run_dir: Path) -> None:
        self.run_dir = run_dir
        super().__init__(message)
