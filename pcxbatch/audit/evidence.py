"""``pcxbatch audit export RUN``: gather one run's evidence and write its pack.

In: a run folder (its report folder holds the audit log), where to write the pack, whether to
include the input file, and who asks. Out: the pack (``pack.export_pack``), after an ``export``
entry and a signed checkpoint are added to the log, so the pack ends at a checkpoint that
witnesses all of the run's entries. Refused (:class:`UnusableError`, nothing written) when a
file or the journal is no longer what its entry recorded: ``audit verify`` says what changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from pcxbatch.audit import Event
from pcxbatch.audit.log import AuditLog
from pcxbatch.audit.pack import chosen_entries, export_pack
from pcxbatch.audit.runs import dump_digest, journal_dump
from pcxbatch.audit.verify import check_entries
from pcxbatch.errors import UnusableError


def export_run(
    run_dir: Path,
    out: Path,
    actor: Mapping[str, str],
    *,
    with_input: bool = False,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Path:
    """Write the evidence pack of ``run_dir`` to ``out``; returns ``out``."""
    from pcxbatch.journal import JOURNAL_NAME, Journal
    from pcxbatch.read import file_sha256
    from pcxbatch.runfolder import stored_job

    run_dir = Path(os.path.realpath(run_dir))
    root, run = run_dir.parent, run_dir.name
    if not (run_dir / JOURNAL_NAME).is_file():
        raise UnusableError(f"{run_dir}: not a pcxbatch run folder (no journal)")
    journal = Journal(run_dir / JOURNAL_NAME)
    try:
        meta = journal.meta()
        plan = meta.get("plan_hash")
        log = AuditLog(root, clock=clock)
        if not log.path.is_file():
            raise UnusableError(f"{root}: no audit log; runs before the audit log have none")
        log.record(Event.EXPORT, actor, objects={"run": run}, checkpoint=True)
        entries = chosen_entries(log.path, run, plan)
        # What the pack's entries last vouched for, as audit verify reads them.
        vouched = check_entries(enumerate(entries, start=1))
        files = {name: _checked(root, name, v.value) for name, v in vouched.files.items()}
        recorded = vouched.journals.get(run)
        sha = dump_digest(journal_dump(journal.lines()))["sha256"]
        if recorded is None or sha != recorded.value.get("sha256"):
            raise UnusableError(
                f"{run_dir}: the journal's rows are not the ones its last entry recorded;"
                f" pcxbatch audit verify {root} says more"
            )
        source = stored_job(run_dir).input if with_input else None
        if source is not None and file_sha256(source) != meta.get("input_sha256"):
            raise UnusableError(f"{source}: not the input file the run read (its SHA-256 differs)")
        public, fingerprint = log.public_key()
        return export_pack(
            entries, run, files, journal_dump(journal.lines()), out,
            public_key=public, fingerprint=fingerprint, input_file=source,
        )  # fmt: skip
    finally:
        journal.close()


def _checked(root: Path, name: str, sha: str) -> Path:
    from pcxbatch.read import file_sha256  # InputError (one line) when it cannot be read

    path = Path(name) if Path(name).is_absolute() else root / name
    if file_sha256(path) != sha:
        raise UnusableError(
            f"{path}: not the file its audit entry recorded (changed since);"
            f" pcxbatch audit verify {root} says more"
        )
    return path
