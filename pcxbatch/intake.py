"""What an operation checks and cleans up before and around recording a run, shared by them all.

In: a :class:`~pcxbatch.config.Job`, a :class:`~pcxbatch.context.RunContext`, a run folder.
Out: the job's input table and its checked rows (:func:`read_input`, :func:`check_table`), or a
refusal before anything is sent (no credential, a preview folder where a run was expected, more
rows than ``max_rows``), and the context managers that close or remove a folder when an
operation fails before it sent anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from pcxbatch.errors import InputError, UnusableError
from pcxbatch.model import Item, Outcome, RowDefaults
from pcxbatch.runfolder import KIND_PREVIEW, RunFolder

if TYPE_CHECKING:
    from pcxbatch.config import Job
    from pcxbatch.context import RunContext
    from pcxbatch.journal import Journal
    from pcxbatch.read import Table


def read_input(job: Job) -> Table:
    """The job's input table, under the job's size limit (``read``'s default when unset), with
    its header found where the job says (``header_row``, the column mapped to ``user_id``)."""
    from pcxbatch.read import MAX_INPUT_BYTES, read_table

    return read_table(
        job.input, sheet=job.sheet, hidden_rows=job.hidden_rows, header_row=job.header_row,
        max_bytes=job.max_bytes or MAX_INPUT_BYTES, id_header=job.columns.get("user_id"),
    )  # fmt: skip


def check_table(table: Table, job: Job) -> Iterator[Item]:
    """Every row of ``table`` checked under the job's defaults, column mapping and ID pattern,
    in order. The columns are resolved at once (a missing user ID column raises here); rows
    lazily."""
    from pcxbatch.validate import check_rows, table_columns

    columns = table_columns(table, str(job.input), job.columns)
    if job.fixed_updated_by and columns.updated_by is not None:
        ignored = columns.names[columns.updated_by]
        note = f"column '{ignored}' is not read: every row's updated_by is {job.updated_by!r}"
        columns = replace(columns, updated_by=None, notes=(*columns.notes, note))
    defaults = RowDefaults(job.action, job.status, job.reason, job.updated_by)
    return check_rows(table.rows, columns, defaults, id_pattern=job.id_pattern)


def require_credential(job: Job, ctx: RunContext) -> None:
    """Refuse, before any folder exists, a run that would send without a credential."""
    if ctx.credentials is None and job.sandbox is None and not job.dry_run:
        raise UnusableError(
            "no API credential: set PCX_API_KEY (or PCX_JWT), or name a credentials_file in the job"
        )


def refuse_preview(folder: RunFolder) -> None:
    if folder.meta.get("kind") == KIND_PREVIEW:
        raise UnusableError(
            f"{folder.path} is a preview, not a run: nothing of it can be sent again; apply its"
            " plan with pcxbatch apply PLAN (or preview again)"
        )


def check_max_rows(job: Job, journal: Journal) -> None:
    """A dry run and a preview refuse what the real run would refuse."""
    sending = sum(journal.pending_counts().values())
    if job.dry_run:
        sending = journal.counts()[Outcome.PLANNED.value]
    if job.max_rows is not None and sending > job.max_rows:
        raise InputError(
            f"{job.input.name}: {sending} rows would be sent, more than the job's max_rows"
            f" ({job.max_rows}); raise max_rows in the job (or --max-rows) if this is right"
        )


def is_workbook(job: Job) -> bool:
    return job.input.suffix.lower() in (".xlsx", ".xlsm")


@contextlib.contextmanager
def closing_on_error(folder: RunFolder) -> Iterator[None]:
    try:
        yield
    except BaseException:
        folder.journal.close()
        raise


@contextlib.contextmanager
def discarding_on_error(folder: RunFolder) -> Iterator[None]:
    """A failure before anything was sent leaves no folder behind (nothing to resume)."""
    try:
        yield
    except BaseException:
        folder.discard()
        raise
