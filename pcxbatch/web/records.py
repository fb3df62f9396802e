"""What the admins' audit page reads and hands out: the audit log's entries, filtered and paged
on the server; a finished job's evidence pack; a job's plan signed with the audit key.

In: a :class:`~pcxbatch.web.flow.Flow` (its report folder holds the service's audit log), the
page's filters (account, job, dates ``YYYY-MM-DD``, page number), the signed-in admin. Out:
:class:`EntryPage` (rows a page shows), or the path of a file to download, written under
``DATA_DIR/exports`` (removed by the retention sweep). Each download is an audit event; the
evidence pack's own ``export`` entry is written by ``audit.evidence.export_run``.

The signed plan is a zip of the server's ``plan.json`` exactly as stored, ``plan.json.sig``
(a raw Ed25519 signature over those bytes), the public key ``audit-key.pem`` and a page saying
how to check them. It is evidence only: no plan file is ever accepted back by the server.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pcxbatch.audit import Event
from pcxbatch.web import flow as f
from pcxbatch.web.events import Who
from pcxbatch.web.flow import Flow, Refused
from pcxbatch.web.uploads import generated_path

PER_PAGE = 50
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

HOW_TO_CHECK = """\
This is the plan of pcxbatch web job {job}, exactly as the server kept and applied it
(plan sha256 {plan_sha256}), signed with the installation's audit key.

Files: plan.json (the plan), plan.json.sig (raw Ed25519 signature of plan.json's bytes),
audit-key.pem (the public key that signed it).

1. Check the key is the installation's: its fingerprint must be the one recorded outside
   the installation (pcxbatch audit key DATA_DIR/reports prints it):

     openssl pkey -pubin -in audit-key.pem -outform DER | tail -c 32 | sha256sum

   must print {fingerprint_hex}

2. Check the signature:

     openssl pkeyutl -verify -pubin -inkey audit-key.pem -rawin -in plan.json -sigfile plan.json.sig

   must print "Signature Verified Successfully".

The server never accepts a plan file back: this copy is evidence, not something to apply.
"""


@dataclass(frozen=True)
class Filters:
    """The audit page's filters (empty: any)."""

    account: str = ""
    job: str = ""
    since: str = ""  # YYYY-MM-DD, inclusive
    until: str = ""  # YYYY-MM-DD, inclusive
    page: int = 1

    @classmethod
    def of(cls, query: Mapping[str, str]) -> Filters:
        """The filters of a query string; :class:`Refused` 400 for a date or page that is not."""
        since, until = query.get("from", "").strip(), query.get("to", "").strip()
        for value in (since, until):
            if value and not _DATE.match(value):
                raise Refused(400, f"dates are written YYYY-MM-DD, not {value!r}")
        page = query.get("page", "1").strip() or "1"
        if not page.isdigit() or int(page) < 1:
            raise Refused(400, f"page must be a number from 1, not {page!r}")
        return cls(query.get("account", "").strip(), query.get("job", "").strip(), since, until,
                   int(page))  # fmt: skip

    def matches(self, body: Mapping[str, Any]) -> bool:
        """Whether an entry's body passes every filter."""
        day = str(body.get("time", ""))[:10]
        return (
            (not self.account or (body.get("actor") or {}).get("account") == self.account)
            and (not self.job or job_of(body) == self.job)
            and (not self.since or day >= self.since)
            and (not self.until or day <= self.until)
        )


@dataclass(frozen=True)
class EntryPage:
    """One page of entries, newest first, and whether older ones follow."""

    rows: list[dict[str, Any]]
    page: int
    more: bool
    total: int


def entries(flow: Flow, filters: Filters) -> EntryPage:
    """The log's entries passing ``filters``, newest first, page ``filters.page``."""
    from pcxbatch.audit.chain import Entry
    from pcxbatch.audit.log import LOG_NAME, read_entries

    path = flow.config.reports / LOG_NAME
    found: list[dict[str, Any]] = []
    if path.is_file():
        for _line, entry in read_entries(path):
            body = entry.body if isinstance(entry, Entry) else None
            if body is None or body.get("event") == Event.CHECKPOINT or not filters.matches(body):
                continue
            found.append(_row(entry.seq if isinstance(entry, Entry) else 0, body))
    found.reverse()
    start = (filters.page - 1) * PER_PAGE
    return EntryPage(found[start : start + PER_PAGE], filters.page,
                     len(found) > start + PER_PAGE, len(found))  # fmt: skip


def job_of(body: Mapping[str, Any]) -> str:
    """The web job an entry is about: the service's entries name it, the runner's own entries
    name the job ``web-<id>`` the service gave it."""
    return str((body.get("objects") or {}).get("job", "")).removeprefix("web-")


def _short(value: Any) -> str:
    """A value as a page shows it: long digests cut to their first 12 characters (the entry
    keeps them whole), mappings as ``key value`` pairs."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_short(v)}" for k, v in value.items() if v not in (None, "", 0))
    if isinstance(value, list):
        return "; ".join(_short(v) for v in value)
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text[:12] + "…" if len(text) > 48 and " " not in text else text


def _row(seq: int, body: Mapping[str, Any]) -> dict[str, Any]:
    actor = body.get("actor") or {}
    objects = body.get("objects") or {}
    details = _short(body.get("details") or {})
    return {
        "seq": seq, "time": str(body.get("time", ""))[:19].replace("T", " "),
        "event": body.get("event", ""), "account": actor.get("account", ""),
        "role": actor.get("role", ""), "job": job_of(body),
        "objects": _short({k: v for k, v in objects.items() if k != "job"}),
        "details": details if len(details) <= 200 else details[:199] + "…",
    }  # fmt: skip


def evidence_pack(flow: Flow, who: Who, job_id: str) -> Path:
    """The evidence pack of the job's run (``audit.evidence.export_run``), to download."""
    from pcxbatch.audit.evidence import export_run
    from pcxbatch.errors import PcxbatchError

    job = flow.get(job_id)
    run_dir = job.get("run_dir")
    if job.state not in (f.FINISHED, f.STOPPED) or not run_dir:
        raise Refused(409, f"job {job_id} is {job.state}; evidence packs are of runs that ended")
    out = generated_path(flow.config.data_dir / "exports", ".zip")
    try:
        export_run(Path(run_dir), out, who.actor(), clock=flow.clock)
    except PcxbatchError as exc:
        out.unlink(missing_ok=True)
        raise Refused(409, f.one_line(exc)) from None
    flow.record(Event.DOWNLOAD, who, job_id, file="evidence.zip")
    return _named(out, f"evidence-{job_id}.zip")


def signed_plan(flow: Flow, who: Who, job_id: str) -> Path:
    """A zip of the job's plan, its detached signature by the audit key, and the public key."""
    from pcxbatch.audit.log import AuditLog
    from pcxbatch.audit.signing import public_pem

    job = flow.get(job_id)
    plan_path = job.get("plan_path")
    if not plan_path or not Path(plan_path).is_file():
        raise Refused(404, f"job {job_id} has no plan yet (it is {job.state})")
    data = Path(plan_path).read_bytes()
    signature, public_b64, fingerprint = AuditLog(flow.config.reports).sign(data)
    page = HOW_TO_CHECK.format(
        job=job_id, plan_sha256=job.get("plan_sha256"),
        fingerprint_hex=fingerprint.removeprefix("sha256:"),
    )  # fmt: skip
    out = generated_path(flow.config.data_dir / "exports", ".zip")
    with zipfile.ZipFile(out, "x", zipfile.ZIP_DEFLATED) as pack:
        pack.writestr("plan.json", data)
        pack.writestr("plan.json.sig", signature)
        pack.writestr("audit-key.pem", public_pem(public_b64))
        pack.writestr("HOW-TO-CHECK.txt", page)
    flow.record(Event.DOWNLOAD, who, job_id, file="plan-signed.zip", key=fingerprint)
    return _named(out, f"plan-{job_id}-signed.zip")


def _named(path: Path, name: str) -> Path:
    """The file under the name a person's browser saves it as (a folder of its own, so the
    generated name stays unique)."""
    folder = path.with_suffix("")
    folder.mkdir()
    return path.rename(folder / name)
