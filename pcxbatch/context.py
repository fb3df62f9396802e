"""What an operation of the runner needs from the world, and what it hands back.

In: nothing (types only). Out: :class:`RunContext` (the credential, the :class:`RunUI` a run
reports to, and the clock, operator, client factory and async runner, each with a production
default, so tests drive the whole orchestration in-process on a virtual clock), the
:class:`Confirmation` a UI is asked to accept, and the :class:`RunResult`/:class:`PreviewResult`
the operations return. Both faces (``cli`` and ``web``) speak these types.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pcxbatch.config import MAX_RATE, Job
from pcxbatch.errors import ExitCode
from pcxbatch.model import ReportLine, RowResult
from pcxbatch.plan import operator

if TYPE_CHECKING:  # the client stack is imported when a run sends, not when the CLI starts
    from pcxbatch.audit import AuditLog
    from pcxbatch.client import PcxClient
    from pcxbatch.credentials import Credentials
    from pcxbatch.limiter import Pacer
    from pcxbatch.runfolder import UnfinishedRun


class RunUI(Protocol):
    """Where a run reports to (the terminal, JSON logs, the web service, or a test)."""

    def planned(self, plan: Confirmation) -> bool:
        """Show what is about to be sent; return False to decline (nothing is sent)."""
        ...

    def started(self, total: int) -> None:
        """Sending starts: ``total`` rows to send."""
        ...

    def result(self, result: RowResult) -> None:
        """One row got its outcome."""
        ...

    def stopping(self, reason: str) -> None:
        """The run is stopping early (interrupt, auth failure, guard)."""
        ...

    def resuming(self, run: UnfinishedRun) -> None:
        """An unfinished run is picked up (its folder, age and rows left) instead of a new one."""
        ...

    def left_unfinished(self, runs: Sequence[UnfinishedRun]) -> None:
        """Older runs of the job stay unfinished while this one runs: say so, and how to end
        them."""
        ...

    def listing(self, pages: int, listed: int, found: int) -> None:
        """A preview read another page of users (pages so far, users listed, the file's found)."""
        ...

    def notice(self, text: str) -> None:
        """Something a person should know while the run goes on (a wait the API asked for, a
        key that may not read); not a stop, not a row."""
        ...


class ClientFactory(Protocol):
    """Builds the client a run sends through (tests inject an in-process transport)."""

    def __call__(
        self, job: Job, base_url: str, credentials: Credentials, *, connections: int
    ) -> PcxClient: ...


def make_client(
    job: Job, base_url: str, credentials: Credentials, *, connections: int
) -> PcxClient:
    """The production client: the job's pacing, retries, ID pattern and http policy."""
    from pcxbatch.client import PcxClient, RetryPolicy

    return PcxClient(
        base_url,
        credentials,
        limiter=job_limiter(job, credentials),
        retry=RetryPolicy(max_attempts=job.max_attempts, max_wait=job.max_retry_wait),
        max_connections=connections,
        id_pattern=job.id_pattern,
        allow_insecure_http=job.allow_insecure_http,
        deadline=job.request_timeout,
    )


class AuditLogFactory(Protocol):
    """Makes the audit log of a report folder, dated by the context's clock."""

    def __call__(self, folder: Path, clock: Callable[[], datetime]) -> AuditLog: ...


def _audit_log(folder: Path, clock: Callable[[], datetime]) -> AuditLog:
    from pcxbatch.audit import AuditLog

    return AuditLog(folder, clock=clock)


def job_limiter(job: Job, credentials: Credentials | None = None) -> Pacer:
    """The job's pacing: its stated ``rate``, shared with every run on the same API key
    (``sharedpace.shared_pacer``), or ``rate: auto`` finding the limit under ``max_rate``
    (``Limiter.finding``; a found rate is this run's own)."""
    from pcxbatch.limiter import Limiter  # imported with the client: only a send needs it

    if job.rate == "auto":
        return Limiter.finding(job.max_rate or MAX_RATE, job.burst)
    local = Limiter(job.rate, job.burst)
    if credentials is None:
        return local
    from pcxbatch.sharedpace import shared_pacer

    return shared_pacer(local, job.pacing_store, credentials.pacing_key(), job.rate, job.burst)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RunContext:
    """What an operation needs from the world; every field but ``ui`` has a production default.

    ``clock`` names run folders and dates plans and summaries; ``operator`` is who previews or
    applies (the CLI's name for the person, the web service's signed-in account);
    ``run_async`` runs the sending coroutine (tests: a virtual-clock loop);
    ``on_interruptible``, when set, is handed a ``stop(reason)`` callable, safe from any thread,
    as the sends begin: the web service's cancel, which stops the run as SIGTERM does (its
    worker thread cannot take signals).
    """

    ui: RunUI
    credentials: Credentials | None = None
    clock: Callable[[], datetime] = _utc_now
    operator: str = field(default_factory=operator)
    client_factory: ClientFactory = make_client
    run_async: Callable[[Coroutine[Any, Any, Any]], Any] = asyncio.run
    on_interruptible: Callable[[Callable[[str], None]], None] | None = None
    #: Who acts, as the audit log records it (None: the CLI's operator and Unix user).
    actor: Mapping[str, str] | None = None
    #: The audit log of a report folder (None: none written; only benchmarks ask for that).
    audit_log: AuditLogFactory | None = _audit_log

    def who(self) -> Mapping[str, str]:
        """The actor the audit log records: the web's account, or the CLI's operator."""
        if self.actor is not None:
            return self.actor
        from pcxbatch.audit.runs import cli_actor

        return cli_actor(self.operator)

    def now_iso(self) -> str:
        """The context's time as plans and summaries write it."""
        return self.clock().isoformat(timespec="seconds")


@dataclass(frozen=True)
class PlanFacts:
    """What an apply's prompt shows about its plan: the seal, who previewed it where and when
    (``previewed_by`` is the name the previewer's environment gave), and the transitions."""

    plan_hash: str
    previewed_by: str
    previewed_at: str
    previewed_against: str
    transitions: list[tuple[str, str, int]] = field(default_factory=list)


@dataclass(frozen=True)
class Confirmation:
    """What a run is about to do, for the confirmation prompt."""

    job: Job
    run_dir: Path
    target: str  # where changes go: a URL, or "the built-in sandbox at ..."
    credential: str  # safe description of the credential
    counts: dict[str, int]  # rows per outcome decided so far (invalid, duplicate, planned)
    to_send: dict[str, int]  # rows to send per action
    dry_run: bool
    sheet: str | None = None
    plan: PlanFacts | None = None  # an apply's plan


@dataclass
class RunResult:
    """What a finished, stopped or declined run leaves behind (``run_dir`` None: no folder)."""

    run_dir: Path | None
    counts: dict[str, int]
    exit_code: ExitCode
    stopped: str | None = None
    files: list[Path] = field(default_factory=list)
    problems: list[ReportLine] = field(default_factory=list)  # the first few, in input order
    #: Older runs of the job left unfinished (the exit code says a person is needed).
    unfinished: list[UnfinishedRun] = field(default_factory=list)
    note: str | None = None  # a sentence for the person, e.g. why nothing was done


@dataclass
class PreviewResult:
    """What a preview found, and where its report and plan are."""

    run_dir: Path
    plan_path: Path
    plan_hash: str
    target: str
    counts: dict[str, int]  # rows per verdict
    transitions: list[tuple[str, str, int]]  # (from, to, rows) of the will_change rows
    exit_code: ExitCode
    problems: list[tuple[int, str, str]] = field(default_factory=list)
