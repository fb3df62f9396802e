"""The Summary sheet of ``results.xlsx`` and ``preview.xlsx``: the run in words, for an auditor.

In: the summary mapping (for results, the very dict ``summary.json`` is written from, so the two
never disagree; for a preview, the facts the runner has about it), the counts and the Rows
sheet's column names. Out: :class:`~pcxbatch.report.table.SheetLine` s: a title, then sections
answering the auditor's first questions (which system, which file, who, when, what came of it),
each fact with a note saying what it means. Keys this module does not know are shown under
"Other facts", so a fact added to the summary is never left off the sheet.

Who previewed and who applied are shown as "name given" when the CLI ran (it takes them from
``PCXBATCH_OPERATOR`` or the login name and cannot check them) and as "signed-in account" when
the web service did.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..model import Outcome, Verdict
from .table import SheetLine

__all__ = ["preview_sheet", "results_sheet"]

NAME_GIVEN = (
    "the name pcxbatch was given (PCXBATCH_OPERATOR, else the login name); pcxbatch cannot check it"
)

SIGNED_IN = "an account signed in to the pcxbatch web service (checked by its password or token)"

OUTCOME_MEANINGS: dict[str, str] = {
    Outcome.APPLIED: "the API confirmed the change",
    Outcome.UNCHANGED: "the user was already in the wanted state; nothing changed",
    Outcome.FAILED: "the API refused it or it could not be delivered; the message says why",
    Outcome.INVALID: "the row could not be used; nothing was sent; the message names the cell",
    Outcome.DUPLICATE: "the same user appears earlier in the file; the first row is acted on",
    Outcome.NOT_FOUND: "the API has no such user",
    Outcome.NOT_ATTEMPTED: "the run stopped before reaching it; a resume picks it up",
    Outcome.PLANNED: "dry run: what would be sent; nothing was",
}

VERDICT_MEANINGS: dict[str, str] = {
    Verdict.WILL_CHANGE: "applying the plan sends a change (the message says from -> to)",
    Verdict.UNCHANGED: "already in the wanted state; nothing will be sent",
    Verdict.NOT_FOUND: "no such user among the users listed; nothing will be sent",
    Verdict.INVALID: "the row cannot be used; the message names the cell and why",
    Verdict.DUPLICATE: "the same user appears earlier in the file; the first row is acted on",
}

EXIT_MEANINGS: dict[int, str] = {
    0: "every row applied, unchanged or planned, or nothing to do",
    1: "finished; only the file's own problems (invalid, duplicate, not_found rows)",
    2: "the job, the input or the environment could not be used; nothing was sent",
    3: "stopped before every row was tried; running the same command again resumes it",
    4: "another run of the same job held the lock",
    5: "finished; some rows failed or are unconfirmed at the API",
    6: "declined at the confirmation prompt; nothing was sent",
    70: "internal error; the report holds what was done",
}

_KINDS = {
    "apply": "the apply of a reviewed plan",
    "run": "a run of the job",
}

#: Keys the sections below show; any other key goes under "Other facts".
_SHOWN = frozenset(
    {
        "job",
        "job_file",
        "run_id",
        "kind",
        "previous_run",
        "input",
        "target",
        "base_url",
        "sandbox",
        "credential",
        "dry_run",
        "run_by",
        "started",
        "finished",
        "counts",
        "rows",
        "retries",
        "throttled",
        "stopped",
        "exit_code",
        "hidden_rows_skipped",
        "unfinished_runs",
        "plan",
        "plan_hash",
        "previewed_by",
        "previewed_at",
        "previewed_with",
        "applied_by",
        "people_signed_in",  # shown in the labels of the people above
        "pcxbatch_version",
        "transitions",
        "whole_file",
        "results_xlsx",
    }
)


def _fact(label: str, value: Any, note: str = "") -> SheetLine:
    return SheetLine(label, _shown(value), note)


def _shown(value: Any) -> str | int | None:
    """A summary value as a cell: whole numbers stay numbers, the rest becomes text."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or isinstance(value, int | str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _row_list(rows: Sequence[int], limit: int = 30) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    more = f", ... ({len(rows) - limit} more, all in summary.json)" if len(rows) > limit else ""
    return f"{len(rows)}: rows {shown}{more}"


def _target(s: Mapping[str, Any], label: str) -> list[SheetLine]:
    lines = [_fact(label, s.get("base_url") or s.get("target"))]
    if "sandbox" in s:
        note = (
            "a stand-in for PCX on this computer: no real user was changed"
            if s["sandbox"]
            else "the PCX API at the base URL above"
        )
        lines.append(_fact("Built-in sandbox", bool(s["sandbox"]), note))
    return lines


def _input(s: Mapping[str, Any]) -> list[SheetLine]:
    given = s.get("input") or {}
    lines = [_fact("Input file", given.get("file"))]
    if given.get("sheet"):
        lines.append(_fact("Input sheet", given["sheet"]))
    lines.append(
        _fact("Input SHA-256", given.get("sha256"), "the file's fingerprint: any edit changes it")
    )
    return lines


def _people(s: Mapping[str, Any]) -> list[SheetLine]:
    lines = []
    if s.get("plan"):
        lines.append(_fact("Plan file", s["plan"]))
    if s.get("plan_hash"):
        lines.append(
            _fact("Plan hash", s["plan_hash"], "SHA-256 seal: apply refuses a changed plan")
        )
    kind, note = (
        ("signed-in account", SIGNED_IN)
        if s.get("people_signed_in")
        else ("name given", NAME_GIVEN)
    )
    for key, label in (
        ("previewed_by", f"Previewed by ({kind})"),
        ("previewed_at", "Previewed at"),
        ("applied_by", f"Applied by ({kind})"),
    ):
        if s.get(key):
            lines.append(_fact(label, s[key], note if key.endswith("_by") else ""))
    if s.get("run_by") and s.get("run_by") != s.get("applied_by"):
        lines.append(_fact(f"Run by ({kind})", s["run_by"], note))
    return lines


def _what(s: Mapping[str, Any]) -> str:
    if s.get("dry_run"):
        return "a dry run: nothing was sent"
    if s.get("previous_run"):
        return f"a retry of the rows run {_run_id(s['previous_run'])} did not finish"
    return _KINDS.get(str(s.get("kind")), "a run of the job")


def _run_id(path: Any) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def _the_run(s: Mapping[str, Any]) -> list[SheetLine]:
    job_note = f"job file {s['job_file']}" if s.get("job_file") else "an ad-hoc job from flags"
    lines = [
        SheetLine("The run", kind="heading"),
        _fact("Run", s.get("run_id")),
        _fact("What it was", _what(s)),
        _fact("Job", s.get("job"), job_note),
        *_target(s, "Would be sent to (base URL)" if s.get("dry_run") else "Sent to (base URL)"),
        _fact("Credential", s.get("credential"), "named by its non-secret prefix only"),
        *_input(s),
        *_people(s),
        _fact("Started", s.get("started")),
        _fact("Finished", s.get("finished")),
    ]
    if s.get("previous_run"):
        lines.append(_fact("Follows run", _run_id(s["previous_run"]), str(s["previous_run"])))
    lines.append(_fact("pcxbatch version", s.get("pcxbatch_version")))
    return lines


def _ending(s: Mapping[str, Any]) -> list[SheetLine]:
    code = s.get("exit_code")
    stopped = s.get("stopped")
    lines = [
        SheetLine("How it ended", kind="heading"),
        _fact("Exit code", code, EXIT_MEANINGS.get(code, "") if isinstance(code, int) else ""),
        _fact(
            "Why it stopped",
            stopped or "it did not stop early",
            "the run can be resumed" if stopped else "",
        ),
        _fact("Rows in this run", s.get("rows")),
        _fact("Retries", s.get("retries"), "attempts beyond the first, over all rows"),
        _fact("Throttled answers", s.get("throttled"), "429 answers, waited out and retried"),
    ]
    if s.get("unfinished_runs"):
        left = [_run_id(path) for path in s["unfinished_runs"]]
        note = "earlier runs of the job left with rows unsent: " + ", ".join(left)
        lines.append(_fact("Runs left unfinished", len(left), note))
    if s.get("hidden_rows_skipped"):
        note = "hidden or filtered rows of the workbook, left out as the job says"
        lines.append(_fact("Hidden rows skipped", _row_list(s["hidden_rows_skipped"]), note))
    return lines


def _counts(
    title: str, counts: Mapping[str, int], meanings: Mapping[str, str], *, notes: bool = True
) -> list[SheetLine]:
    lines = [SheetLine(title, kind="heading")]
    names = [*meanings, *(k for k in counts if k not in meanings)]
    for name in names:
        note = meanings.get(name, "") if notes else ""
        lines.append(_fact(str(name), int(counts.get(name, 0)), note))
    return lines


def _moves(title: str, moves: Sequence[Mapping[str, Any]], none: str) -> list[SheetLine]:
    lines = [SheetLine(title, kind="heading")]
    unread = "the status before was not read: a plain run does not read it (preview does)"
    for move in moves:
        before = move.get("from")
        label = f"{before or '(not read)'} \u2192 {move.get('to')}"
        lines.append(_fact(label, move.get("rows"), "" if before else unread))
    if not moves:
        lines.append(SheetLine(none, kind="text"))
    return lines


def _whole_file(whole: Mapping[str, Any], dry_run: bool, run_id: str) -> list[SheetLine]:
    title = "Every row of the file: its final outcome, from this run and the earlier ones"
    lines = _counts(title, whole.get("counts") or {}, OUTCOME_MEANINGS, notes=False)
    lines.insert(1, _fact("Rows of the file", whole.get("rows")))
    for rid, n in (whole.get("rows_by_run") or {}).items():
        if rid == run_id:
            lines.append(_fact("Decided by this run", n, rid))
        else:
            lines.append(_fact("Decided by earlier run", n, f"{rid} (its earlier_run on Rows)"))
    for rid in whole.get("unreadable_runs") or ():
        note = "its folder could not be read: the rows it decided are missing here"
        lines.append(_fact("Could not be read", rid, note))
    verb = "planned" if dry_run else "made"
    return lines + _moves(
        f"Changes {verb} by all these runs, from \u2192 to",
        whole.get("transitions") or [],
        "No user was changed.",
    )


def _others(s: Mapping[str, Any], shown: frozenset[str]) -> list[SheetLine]:
    rest = [(k, v) for k, v in s.items() if k not in shown and v not in (None, "", [], {})]
    if not rest:
        return []
    return [SheetLine("Other facts", kind="heading"), *(_fact(k, v) for k, v in rest)]


def _rows_sheet(columns: Sequence[str], what: str) -> list[SheetLine]:
    return [
        SheetLine("The Rows sheet", kind="heading"),
        SheetLine(
            f"One line per row of the input file, in the file's order, saying {what}; 'row' is"
            " the row number the spreadsheet shows.",
            kind="text",
        ),
        _fact("Its columns", ", ".join(columns)),
    ]


def results_sheet(summary: Mapping[str, Any], columns: Sequence[str]) -> list[SheetLine]:
    """The Summary sheet of ``results.xlsx``, from the run's summary; ``columns``: the Rows
    sheet's headers, in its order."""
    s = summary
    dry = bool(s.get("dry_run"))
    lines = [
        SheetLine(f"pcxbatch results of run {s.get('run_id', '')}", kind="title"),
        SheetLine(
            f"What pcxbatch did to each row of {(s.get('input') or {}).get('file', 'the file')}",
            kind="text",
        ),
        *_the_run(s),
        *_ending(s),
        *_counts("Rows of this run, per outcome", s.get("counts") or {}, OUTCOME_MEANINGS),
        *_moves(
            f"Changes {'this dry run plans' if dry else 'made by this run'}, from \u2192 to",
            s.get("transitions") or [],
            "No user was changed by this run.",
        ),
    ]
    if s.get("whole_file"):
        lines += _whole_file(s["whole_file"], dry, str(s.get("run_id")))
    return lines + _others(s, _SHOWN) + _rows_sheet(columns, "what came of it")


def preview_sheet(
    title: str,
    summary: Mapping[str, Any],
    counts: Mapping[str, int],
    transitions: Sequence[tuple[str, str, int]],
    columns: Sequence[str],
) -> list[SheetLine]:
    """The Summary sheet of ``preview.xlsx``: what was previewed (``summary``; may be empty),
    the rows per verdict and the ``(from, to, rows)`` moves applying the plan would make."""
    s = summary
    lines = [SheetLine("pcxbatch preview", kind="title"), SheetLine(title, kind="text")]
    if s:
        lines += [
            SheetLine("What was previewed", kind="heading"),
            _fact("Preview", s.get("run_id")),
            _fact("Job", s.get("job")),
            *_target(s, "Read from (base URL)"),
            _fact("Credential", s.get("previewed_with"), "named by its non-secret prefix only"),
            *_input(s),
            *_people(s),
            SheetLine("Nothing was changed: a preview only reads users.", kind="text"),
        ]
    moves = [{"from": a, "to": b, "rows": n} for a, b, n in transitions]
    lines += _counts("Rows per verdict", counts, VERDICT_MEANINGS)
    lines += _moves("Changes applying the plan would make, from \u2192 to", moves, "None.")
    shown = _SHOWN | {"run_id", "job"}
    return lines + _others(s, shown) + _rows_sheet(columns, "what applying the plan would do")
