"""The facts a run's summary holds: ``summary.json``, and the Summary sheet of its workbook.

In: the job, the run folder (its journal's meta and totals), what the run was confirmed with,
its counts and ending, and the context (the operator, the clock); for a preview, its plan. Out:
plain dicts of JSON values, keys in the order a reader meets them; the report package writes
them (and adds what only the lines tell: the ``from -> to`` moves, a retry's whole file).

Why a module of its own: the runner orders the stages, and the list of what an auditor is told
about a run is long enough to be read on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pcxbatch import __version__
from pcxbatch.config import Job
from pcxbatch.context import Confirmation, RunContext
from pcxbatch.errors import ExitCode
from pcxbatch.plan import Plan
from pcxbatch.runfolder import RunFolder

__all__ = ["SANDBOX_AT", "preview_summary", "run_summary", "where"]

#: How a run's target names the built-in sandbox, before its URL.
SANDBOX_AT = "the built-in sandbox at "
#: What an apply's summary repeats from its journal.
_APPLY_FACTS = ("plan", "plan_hash", "previewed_by", "previewed_at", "applied_by")


def run_summary(
    job: Job,
    folder: RunFolder,
    plan: Confirmation,
    counts: dict[str, int],
    stopped: str | None,
    exit_code: ExitCode,
    ctx: RunContext,
) -> dict[str, Any]:
    """What ``summary.json`` and the Summary sheet of ``results.xlsx`` say of a run: the job,
    the input, where requests went and with which credential, who ran it and when, the counts
    and totals, how it ended. ``write_results`` adds what only the report's lines tell."""
    meta = folder.meta
    return {
        "job": job.name,
        "job_file": job.source,
        "run_id": folder.path.name,
        "kind": meta.get("kind"),
        "previous_run": meta.get("previous_run"),
        "input": {
            "file": job.input.name,
            "sha256": meta["input_sha256"],
            "sheet": meta.get("sheet"),
        },
        "target": plan.target,
        **where(plan.target),
        "credential": plan.credential,
        "dry_run": job.dry_run,
        "run_by": ctx.operator,
        # The web service's people are signed-in accounts; the CLI's are names it was given.
        "people_signed_in": bool(ctx.actor and "account" in ctx.actor),
        "started": meta["started"],
        "finished": ctx.now_iso(),
        "counts": counts,
        **folder.journal.totals(),
        "stopped": stopped,
        "exit_code": int(exit_code),
        "hidden_rows_skipped": meta.get("skipped_rows") or [],
        **{k: meta[k] for k in _APPLY_FACTS if k in meta},
        "pcxbatch_version": __version__,
    }


def preview_summary(
    job: Job, folder: RunFolder, plan: Plan, plan_path: Path, digest: str
) -> dict[str, Any]:
    """What a preview's Summary sheet says of it (the plan holds the rest)."""
    return {
        "run_id": folder.path.name,
        "job": job.name,
        "target": plan.target,
        **where(plan.target),
        "previewed_with": plan.previewed_with,
        "input": {k: plan.input[k] for k in ("file", "sha256", "sheet")},
        "previewed_by": plan.previewed_by,
        "previewed_at": plan.previewed_at,
        "plan": str(plan_path),
        "plan_hash": digest,
    }


def where(target: str) -> dict[str, Any]:
    """Where requests went, from the runner's description of its target: the base URL, and
    whether it was the built-in sandbox."""
    return {"base_url": target.removeprefix(SANDBOX_AT), "sandbox": target.startswith(SANDBOX_AT)}
