"""``pcxbatch audit verify FOLDER``: a folder's log checked against the files it vouches for.

In: the folder holding ``audit.jsonl`` (a report folder, or the web service's data folder),
and optionally a head and key fingerprint kept outside. Out: the :class:`~.verify.Verdict` of
:func:`~.verify.check_entries`, with a problem for each report file that is gone or not the one
its last entry recorded, and for each run whose journal rows differ from the digest its last
closing entry recorded. A run opened again (resumed) after its last closing entry is still
going, or stopped without one: its journal is noted, not judged.
"""

from __future__ import annotations

from pathlib import Path

from pcxbatch.audit.log import LOG_NAME, read_entries
from pcxbatch.audit.runs import journal_digest
from pcxbatch.audit.verify import Verdict, check_entries
from pcxbatch.errors import UnusableError


def verify_folder(
    folder: Path, *, head: tuple[int, str] | None = None, key: str | None = None
) -> Verdict:
    """Check ``folder``'s audit log and everything its entries vouch for."""
    log = folder / LOG_NAME
    if not log.is_file():
        raise UnusableError(f"{folder}: no audit log here ({LOG_NAME})")
    try:
        verdict = check_entries(read_entries(log), head=head, key=key)
    except OSError as exc:
        raise UnusableError(f"{log}: cannot read the audit log: {exc.strerror or exc}") from None
    _check_files(folder, verdict)
    _check_journals(folder, verdict)
    return verdict


def _check_files(folder: Path, verdict: Verdict) -> None:
    from pcxbatch.read import file_sha256

    for name, vouched in verdict.files.items():
        path = Path(name) if Path(name).is_absolute() else folder / name
        if not path.is_file():
            verdict.problems.append(
                f"{name}: entry {vouched.seq} vouched for this file; it is gone (deleted or moved)"
            )
            continue
        try:
            sha = file_sha256(path)
        except UnusableError as exc:
            verdict.problems.append(f"{name}: cannot be checked: {exc}")
            continue
        if sha != vouched.value:
            verdict.problems.append(
                f"{name}: not the file entry {vouched.seq} vouched for (its SHA-256 differs):"
                " replaced or changed since"
            )


def _check_journals(folder: Path, verdict: Verdict) -> None:
    from pcxbatch.journal import JOURNAL_NAME, Journal

    for run, vouched in verdict.journals.items():
        if verdict.opened.get(run, 0) > vouched.seq:
            verdict.notes.append(
                f"{run}: opened again at entry {verdict.opened[run]} with no closing entry since"
                " (still running, or stopped by a crash): its journal is checked once it ends"
            )
            continue
        path = folder / run / JOURNAL_NAME
        if not path.is_file():
            verdict.problems.append(
                f"{run}: entry {vouched.seq} vouched for this run's journal; it is gone"
            )
            continue
        journal = Journal(path)
        try:
            now = journal_digest(run, journal.lines())
        finally:
            journal.close()
        if now["sha256"] != vouched.value.get("sha256"):
            verdict.problems.append(
                f"{run}: the journal's rows are not those entry {vouched.seq} vouched for"
                f" ({vouched.value.get('rows')} rows then, {now['rows']} now): changed since"
            )
