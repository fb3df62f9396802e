"""What a run's audit entries vouch for: the journal's rows and the report files, as digests.

In: a run's journal lines and the files it wrote. Out: the canonical dump of the journal's
rows (one JSON array per row: row, user id, action, target status, outcome, confirmed, HTTP
status, attempts, request id), its digest, and the SHA-256 of each file keyed by its path
relative to the audit log's folder. The dump is of the rows, not of the SQLite file, whose
bytes change whenever SQLite checkpoints it.
"""

from __future__ import annotations

import getpass
import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pcxbatch.audit.chain import canonical
from pcxbatch.model import ReportLine

#: The columns of the dump, in order (the dump's first line names them).
JOURNAL_FIELDS = (
    "row",
    "user_id",
    "action",
    "target_status",
    "outcome",
    "confirmed",
    "http_status",
    "attempts",
    "request_id",
)


def row_dump(line: ReportLine) -> bytes:
    """One row of the dump: the :data:`JOURNAL_FIELDS` of ``line`` as a canonical JSON line."""
    values = [
        line.row,
        line.user_id,
        line.action,
        line.target_status,
        line.outcome.value,
        line.confirmed,
        line.http_status,
        line.attempts,
        line.request_id,
    ]
    return canonical(values) + b"\n"


HEADER = canonical(list(JOURNAL_FIELDS)) + b"\n"


def journal_dump(lines: Iterable[ReportLine]) -> Iterator[bytes]:
    """The journal's rows as canonical JSON lines, the header first (what is hashed)."""
    yield HEADER
    for line in lines:
        yield row_dump(line)


def dump_digest(chunks: Iterable[bytes]) -> dict[str, Any]:
    """``{"rows", "sha256"}`` of a dump (from :func:`journal_dump` or a pack's copy of one)."""
    h = hashlib.sha256()
    count = -1  # the header is not a row
    for chunk in chunks:
        h.update(chunk)
        count += 1
    return {"rows": max(count, 0), "sha256": h.hexdigest()}


def journal_digest(run: str, lines: Iterable[ReportLine]) -> dict[str, Any]:
    """What a run's closing entry says of its journal: the run folder (relative to the log's
    folder), the number of rows and the dump's SHA-256."""
    return {"run": run, **dump_digest(journal_dump(lines))}


class RowsDigest:
    """:func:`journal_digest` built up line by line, so a run's report and its digest come from
    one reading of the journal."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256(HEADER)
        self._rows = 0

    def add(self, line: ReportLine) -> None:
        """Count ``line`` in."""
        self._hash.update(row_dump(line))
        self._rows += 1

    def of(self, run: str) -> dict[str, Any]:
        """The digest of the lines added so far, for the run folder ``run``."""
        return {"run": run, "rows": self._rows, "sha256": self._hash.hexdigest()}


def file_hashes(root: Path, paths: Iterable[Path]) -> dict[str, str]:
    """SHA-256 of each file, keyed by its path relative to ``root`` (files elsewhere are
    keyed by their absolute path)."""
    from pcxbatch.read import file_sha256

    hashes = {}
    for path in paths:
        hashes[relative(root, path)] = file_sha256(path)
    return hashes


def relative(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` in POSIX form, or absolute when it is outside ``root``."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        return str(absolute)


def cli_actor(operator: str) -> dict[str, str]:
    """Who acts at a terminal, labelled as given: the operator name (``PCXBATCH_OPERATOR``,
    or the login name when unset) and the Unix user the process runs as."""
    given = "PCXBATCH_OPERATOR" if os.environ.get("PCXBATCH_OPERATOR") else "login name"
    try:
        unix_user = getpass.getuser()
    except (KeyError, OSError):
        unix_user = str(os.geteuid())
    return {"operator": operator, "operator_from": given, "unix_user": unix_user}


def counts_of(counts: Mapping[str, int]) -> dict[str, int]:
    """Counts without the zeros, for a shorter entry."""
    return {k: v for k, v in counts.items() if v}
