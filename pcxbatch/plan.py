"""The plan stage: what each checked row would do to its user, and the reviewed plan file.

In: checked rows (from ``validate``, as the journal's :class:`~pcxbatch.model.ReportLine`), the
users' current statuses (read by ``listing.read_states``), who is previewing. Out: a
:class:`~pcxbatch.model.PlanRow` per row with its :class:`~pcxbatch.model.Verdict`
(``will_change`` from → to, ``unchanged``, ``not_found``, or the row's ``invalid``/``duplicate``),
a :class:`Tally` of counts and transitions for the reviewer, and a :class:`Plan` file that
``pcxbatch apply`` sends exactly, refusing it when it was altered, its input changed, or it is
too old; :func:`plan_items` turns a plan back into the rows to record.

The plan file is JSON with a SHA-256 over its canonical form: it shows accidental or careless
edits, not a determined forger (anyone can recompute it); who may apply is the job's rule.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pcxbatch.config import Job, fingerprint, job_to_dict
from pcxbatch.errors import InputError, UnusableError
from pcxbatch.model import (
    DEACTIVATED_STATUS,
    SETTABLE_STATUSES,
    Action,
    Item,
    Outcome,
    PlanRow,
    ReportLine,
    UndoRow,
    Verdict,
)
from pcxbatch.rules import same_api

#: 2: rows are objects keyed by field name (1 held positional lists).
PLAN_FORMAT = 2


def verdict(target_status: str | None, seen: str | None) -> Verdict:
    """``will_change`` unless the user is missing or already has ``target_status``."""
    if seen is None:
        return Verdict.NOT_FOUND
    if seen == target_status:
        return Verdict.UNCHANGED
    return Verdict.WILL_CHANGE


def operator() -> str:
    """Who is at the keyboard: ``PCXBATCH_OPERATOR`` if set, else the login name."""
    return os.environ.get("PCXBATCH_OPERATOR") or getpass.getuser()


def classify(lines: Iterable[ReportLine], *, scope: str = "") -> Iterator[PlanRow]:
    """One :class:`PlanRow` per checked row, from the status a preview saw for its user.

    ``scope`` names the listing's filter for a not-found message (e.g. " of organisation X").
    """
    for line in lines:
        seen = line.seen_status or None
        if line.outcome in (Outcome.INVALID, Outcome.DUPLICATE):
            kind, message = Verdict(line.outcome.value), line.message
        else:
            kind = verdict(line.target_status, seen)
            if kind is Verdict.WILL_CHANGE:
                message = f"{seen} -> {line.target_status}"
            elif kind is Verdict.UNCHANGED:
                message = f"already {seen}; nothing will be sent"
            else:
                message = f"no such user among the users{scope} listed"
        yield PlanRow(
            row=line.row,
            user_id=line.user_id,
            action=line.action,
            target_status=line.target_status,
            reason=line.reason,
            updated_by=line.updated_by,
            seen_status=seen,
            verdict=kind,
            message=message,
            values=line.values,
        )


@dataclass
class Tally:
    """Counts per verdict, the (from, to) moves, and the first rows a person must look at."""

    counts: Counter[str] = field(default_factory=Counter)
    moves: Counter[tuple[str, str]] = field(default_factory=Counter)
    problems: list[tuple[int, str, str]] = field(default_factory=list)
    show: int = 10

    def add(self, row: PlanRow) -> PlanRow:
        """Count ``row`` and hand it back (so a stream can be tallied as it is written)."""
        self.counts[row.verdict.value] += 1
        if row.verdict is Verdict.WILL_CHANGE:
            self.moves[(row.seen_status or "", row.target_status)] += 1
        elif row.verdict is not Verdict.UNCHANGED and len(self.problems) < self.show:
            self.problems.append((row.row, row.verdict.value, row.message))
        return row

    @property
    def transitions(self) -> list[tuple[str, str, int]]:
        """(from, to, rows) of the will_change rows, most frequent first."""
        return [(a, b, n) for (a, b), n in self.moves.most_common()]

    @property
    def file_problems(self) -> int:
        """Rows the file itself is to blame for: invalid, duplicate, not found."""
        bad = (Verdict.INVALID, Verdict.DUPLICATE, Verdict.NOT_FOUND)
        return sum(self.counts[v.value] for v in bad)


@dataclass(frozen=True)
class Plan:
    """A reviewed plan: the job it was made with, its input, who previewed it, and its rows.

    ``job`` is the job's stored settings (``config.job_to_dict``); ``hash`` is the seal, empty
    until :func:`write_plan` computes it.
    """

    job: dict[str, Any]
    fingerprint: dict[str, Any]
    input: dict[str, Any]  # path, file, sha256, sheet
    columns: list[str]
    target: str
    previewed_by: str
    previewed_with: str
    previewed_at: str
    preview_dir: str
    counts: dict[str, int]
    rows: list[PlanRow]
    hash: str = ""

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON values, rows as objects keyed by field name."""
        body = asdict(self)
        body["rows"] = [{**asdict(r), "values": list(r.values)} for r in self.rows]
        body["format"] = PLAN_FORMAT
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Plan:
        """Rebuild a plan from :meth:`to_json`'s values; KeyError/TypeError/ValueError if off."""
        fields = {k: body[k] for k in cls.__dataclass_fields__ if k != "rows"}
        rows = [
            PlanRow(**{**r, "verdict": Verdict(r["verdict"]), "values": tuple(r["values"])})
            for r in body["rows"]
        ]
        return cls(**fields, rows=rows)


def preview_plan(
    job: Job,
    meta: Mapping[str, Any],
    *,
    target: str,
    previewed_by: str,
    previewed_with: str,
    previewed_at: str,
    preview_dir: Path,
    counts: Mapping[str, int],
    rows: list[PlanRow],
) -> Plan:
    """The plan a preview hands to its reviewer: the job, its input (from the preview's journal
    ``meta``), who previewed with which credential and when, the counts and every row."""
    return Plan(
        job=job_to_dict(job),
        fingerprint=fingerprint(job),
        input={
            "path": str(job.input.absolute()),
            "file": job.input.name,
            "sha256": meta["input_sha256"],
            "sheet": meta.get("sheet"),
        },
        columns=list(meta["columns"]),
        target=target,
        previewed_by=previewed_by,
        previewed_with=previewed_with,
        previewed_at=previewed_at,
        preview_dir=str(preview_dir),
        counts=dict(counts),
        rows=rows,
    )


def plan_hash(body: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical JSON of the plan without its ``hash`` field."""
    canonical = json.dumps(
        {k: v for k, v in body.items() if k != "hash"},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def seal(plan: Plan) -> tuple[str, str]:
    """The plan file's text with its hash, and the hash."""
    body = plan.to_json()
    body["hash"] = plan_hash(body)
    return json.dumps(body, ensure_ascii=False, indent=1) + "\n", body["hash"]


def load_plan(path: Path) -> Plan:
    """Read a plan file and check it was not altered; :class:`UnusableError` otherwise."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnusableError(f"{path}: no such plan file") from None
    except OSError as exc:
        raise UnusableError(f"{path}: cannot read the plan file: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnusableError(f"{path}: not a pcxbatch plan file ({exc})") from None
    if not isinstance(body, dict) or body.get("format") != PLAN_FORMAT or "hash" not in body:
        raise UnusableError(f"{path}: not a pcxbatch plan file (or one of an older version)")
    if plan_hash(body) != body["hash"]:
        raise UnusableError(
            f"{path}: the plan was changed after it was written (its hash does not match);"
            " preview again to make a new plan"
        )
    try:
        return Plan.from_json(body)
    except (KeyError, TypeError, ValueError):
        raise UnusableError(f"{path}: not a pcxbatch plan file (a field is missing)") from None


def check_plan(
    plan: Plan,
    source: Path,
    job: Job,
    *,
    max_age: timedelta,
    now: datetime,
    applier: str,
) -> tuple[Path, str]:
    """Every check a plan must pass before an apply of ``job`` (the plan's job with the
    applier's flags); returns where its input file is now and the file's SHA-256.

    Refused (:class:`UnusableError`): a job whose sending settings or target differ from the
    plan's, a plan older than ``max_age``, an applier who may not apply it, an input file that
    changed or cannot be found.
    """
    check_target(plan, source, job)
    if not same_sending(plan.fingerprint, fingerprint(job)):
        raise UnusableError(
            f"{source}: applying cannot change what the plan sends (action, status,"
            " reason, updated_by, sheet, ID pattern)"
        )
    check_age(plan, max_age, now)
    check_second_person(plan, applier)
    return find_input(plan, source)


def plan_target(job: Mapping[str, Any]) -> str | None:
    """The base URL a plan's job sends to, or None for the built-in sandbox."""
    return None if job.get("sandbox") is not None else str(job.get("base_url"))


def check_target(plan: Plan, source: Path, job: Job) -> None:
    """Refuse an apply that would send elsewhere than the plan was previewed against: the
    statuses it saw, and what the reviewer signed off, belong to that API. PCX's two documented
    host names for the same API count as one (``rules.same_api``)."""
    previewed = plan_target(plan.job)
    base_url = str(plan.job.get("base_url"))
    if previewed is None:
        if job.base_url == base_url:  # the sandbox plan, sent to a sandbox again
            return
        where = f"{job.base_url} (from --base-url or PCX_BASE_URL)"
    elif job.sandbox is None and same_api(previewed, job.base_url):
        return
    else:
        where = "the built-in sandbox" if job.sandbox is not None else job.base_url
    raise UnusableError(
        f"{source}: this plan was previewed against {plan.target}; this apply would send to"
        f" {where}. A plan applies only to the API it was previewed against: preview against"
        " that one to make a plan for it"
    )


def same_sending(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """True when two job fingerprints (``config.fingerprint``) send the same thing to the same
    API: equal, except that the base URL may move between PCX's names for one API."""
    rest = set(a) | set(b)
    rest.discard("base_url")
    return all(a.get(k) == b.get(k) for k in rest) and same_api(
        str(a.get("base_url")), str(b.get("base_url"))
    )


def find_input(plan: Plan, source: Path) -> tuple[Path, str]:
    """The plan's input file and its SHA-256: where it was previewed, or else beside the plan
    (a folder handed over whole). Refused when it is in neither place or it has changed."""
    from pcxbatch.read import file_sha256  # the stdlib part of read; pandas is not loaded

    recorded = Path(plan.input["path"])
    beside = source.parent / str(plan.input["file"])
    places = [recorded] if recorded.absolute() == beside.absolute() else [recorded, beside]
    present = [p for p in places if p.is_file()]
    if not present:
        where = " nor beside the plan (" + str(beside) + ")" if len(places) > 1 else ""
        raise UnusableError(
            f"{source}: the plan's input file {plan.input['file']} is not where it was previewed"
            f" ({recorded}){where}; put it back in one of those places"
        )
    for path in present:
        try:
            digest = file_sha256(path)
        except InputError as exc:
            raise UnusableError(f"{source}: cannot check the plan's input file: {exc}") from None
        if digest == plan.input["sha256"]:
            return path, digest
    raise UnusableError(
        f"{plan.input['file']} ({present[0]}) has changed since it was previewed; preview it again"
    )


def check_age(plan: Plan, max_age: timedelta, now: datetime) -> None:
    """Refuse a plan older than ``max_age``: the users' state it saw may be stale."""
    age = now - datetime.fromisoformat(plan.previewed_at)
    if age > max_age:
        hours = age.total_seconds() / 3600
        limit = max_age.total_seconds() / 3600
        raise UnusableError(
            f"the plan is {hours:.1f} h old, older than the {limit:g} h allowed"
            " (max_plan_age_hours in the job, or --max-age); preview again"
        )


def check_second_person(plan: Plan, applier: str) -> None:
    """Refuse when the job requires a second person and the applier previewed the plan.

    Names are compared without regard to case or surrounding spaces (``Ana`` is ``ana``). Both
    come from each person's own environment (``PCXBATCH_OPERATOR``, else the login name), so
    this guards against a mistake, not against someone determined to get round it.
    """
    if plan.job.get("require_second_person") and same_person(plan.previewed_by, applier):
        raise UnusableError(
            f"the job requires a second person: {applier} previewed this plan and may not apply"
            " it; ask a colleague to run pcxbatch apply"
        )


def same_person(a: str, b: str) -> bool:
    """True when two operator names are the same name (case and outer spaces ignored)."""
    return a.strip().casefold() == b.strip().casefold()


def plan_transitions(plan: Plan) -> list[tuple[str, str, int]]:
    """(from, to, rows) of the plan's ``will_change`` rows, most frequent first."""
    moves: Counter[tuple[str, str]] = Counter(
        (r.seen_status or "", r.target_status or "")
        for r in plan.rows
        if r.verdict is Verdict.WILL_CHANGE
    )
    return [(a, b, n) for (a, b), n in moves.most_common()]


def plan_items(plan: Plan) -> Iterator[Item]:
    """The rows to record for an apply: only ``will_change`` rows are left to send."""
    when = plan.previewed_at
    for r in plan.rows:
        outcome: Outcome | None = None
        message = r.message
        if r.verdict is Verdict.UNCHANGED:
            outcome, message = (
                Outcome.UNCHANGED,
                f"already {r.seen_status} at the preview ({when}); not sent",
            )
        elif r.verdict is Verdict.NOT_FOUND:
            outcome = Outcome.NOT_FOUND
            message = f"user not found at the preview ({when}); not sent"
        elif r.verdict is not Verdict.WILL_CHANGE:
            outcome = Outcome(r.verdict.value)
        yield Item(
            row=r.row,
            user_id=r.user_id,
            action=Action(r.action) if r.action else None,
            target_status=r.target_status or None,
            reason=r.reason or None,
            updated_by=r.updated_by or None,
            outcome=outcome,
            message=message,
            values=r.values,
        )


def undo_rows(
    lines: Iterable[ReportLine], reason: str, updated_by: str | None
) -> Iterator[UndoRow]:
    """How to put back every user a run changed: its status before, when one was read.

    A run knows a user's status before the change only when it was read before sending (a
    preview, or a run's own read when it was cheap enough). Without one, the user is listed with
    the status left empty and says why (never a guessed status), so that whoever must undo it
    knows whom, and can fill the column in from their own records.
    """
    unknown = (
        "the status before this run is unknown: it was not read before sending, or only as not"
        " the wanted one (pcxbatch preview + apply always reads it; a run reads it when"
        " read_before_send allows); fill in the status to restore"
    )
    maybe = "this run may not have changed it (it may already have been so): check first"
    for line in lines:
        if line.outcome is Outcome.APPLIED:
            status, why = undo_status(line.seen_status) if line.seen_status else ("", unknown)
            why = "; ".join(note for note in (why, "" if line.confirmed else maybe) if note)
            yield UndoRow(
                line.user_id, status, reason, updated_by or "pcxbatch-undo", why, line.row
            )


def undo_status(seen: str) -> tuple[str, str]:
    """How to put a user back to ``seen``: (status for the undo file, why not if empty)."""
    if seen == DEACTIVATED_STATUS or seen in SETTABLE_STATUSES:
        return seen, ""
    return "", f"cannot be restored: PCX has no call that sets the status {seen!r}"
