"""The run's durable record: every row, what was intended for it, and what came of it.

In: checked rows (:class:`~pcxbatch.model.Item` with the input's own cells), intents and
results as the run goes. Out: the pending rows to send, the report's lines in input order, the
counts per outcome; enough to rebuild the report or resume the run after any crash.

Why SQLite: it is in the standard library, a single file inside the run folder, and in WAL mode
with ``synchronous=FULL`` a committed transaction survives a power cut or a ``SIGKILL``. Rows can
be streamed in and out in input order without holding the file in memory. An intent (the row is
about to be sent) is committed before its request leaves; its outcome is committed right after
the answer. A row with an intent and no outcome was perhaps applied: resume reads or sends it
again (the PUTs are idempotent), and it stays "may have been applied" (``earlier``) until a read
settles it. Each row also keeps the status a read before sending saw and when (``seen_status``,
``seen_at``), and, while its answer leaves the truth open (``open``), what that answer was, so
that a read after the sends can settle it even after a crash and a resume.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pcxbatch.model import Action, Item, Outcome, ReportLine, RowResult

JOURNAL_NAME = "journal.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    row INTEGER PRIMARY KEY,        -- the spreadsheet's row number
    user_id TEXT NOT NULL,
    action TEXT,
    target_status TEXT,
    reason TEXT,
    updated_by TEXT,
    input_values TEXT NOT NULL,     -- JSON list of the input's own cells
    outcome TEXT,                   -- NULL while the row is still to be sent
    sent INTEGER NOT NULL DEFAULT 0,-- 1 once an intent was recorded for it
    uncertain INTEGER NOT NULL DEFAULT 0, -- an attempt may have been applied (see earlier)
    seen_status TEXT,               -- the user's status read before sending (NULL: not read)
    http_status INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    throttled INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    request_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS rows_pending ON rows(row) WHERE outcome IS NULL;
"""
#: Columns added since the first journal format: added to an older journal when it is opened.
_ADDED_COLUMNS = (
    ("seen_at", "TEXT"),  # when seen_status was read (ISO 8601, UTC)
    ("earlier", "TEXT NOT NULL DEFAULT ''"),  # how an attempt may have made the change
    ("confirmed", "INTEGER NOT NULL DEFAULT 1"),  # 0: the outcome is not proven
    ("open", "INTEGER NOT NULL DEFAULT 0"),  # 1: answered, to be settled by a read
    ("answer_kind", "TEXT"),  # pcxbatch.answers.Kind of the final answer
    ("answer_text", "TEXT NOT NULL DEFAULT ''"),  # the final answer in words
)
_OLD_UNCERTAIN = "an earlier attempt got no clear answer"


@dataclass(frozen=True, slots=True)
class PendingRow:
    """A row still to be sent. ``resent`` is True when an earlier run sent it without an answer;
    ``earlier`` says how an attempt may already have made the change, when the journal knows
    more than that. ``seen_status``/``seen_at``: the last read before sending, if any."""

    row: int
    user_id: str
    action: Action
    target_status: str
    reason: str | None
    updated_by: str | None
    resent: bool
    seen_status: str | None = None
    seen_at: str | None = None
    earlier: str = ""


@dataclass(frozen=True, slots=True)
class OpenRow:
    """A row whose answer left the truth open, with what settling it needs."""

    row: int
    user_id: str
    action: Action
    target_status: str
    seen_status: str | None
    seen_at: str | None
    earlier: str
    answer_kind: str
    answer_text: str


#: Settling a row: (row, outcome, confirmed, message).
Settled = tuple[int, Outcome, bool, str]


class Journal:
    """One run's SQLite journal. Use it from the thread that opened it; only :meth:`commit` may
    run in another thread (one call at a time: it writes through a connection of its own)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fresh = not path.exists()
        if fresh:
            # Owner-only from the first byte: the journal holds the input's cells.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.row_factory = sqlite3.Row  # rows are read by column name, never by position
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._migrate()
        self._writer: sqlite3.Connection | None = None

    def _migrate(self) -> None:
        """Give a journal written by an older pcxbatch the columns added since."""
        have = {r["name"] for r in self._db.execute("PRAGMA table_info(rows)")}
        missing = [(name, kind) for name, kind in _ADDED_COLUMNS if name not in have]
        if not missing:
            return
        with self._tx():
            for name, kind in missing:
                self._db.execute(f"ALTER TABLE rows ADD COLUMN {name} {kind}")
            # An old "failed, but the change may have been made" row is an unconfirmed one.
            self._db.execute(
                "UPDATE rows SET earlier = ?, confirmed = 0 WHERE uncertain = 1 AND earlier = ''",
                (_OLD_UNCERTAIN,),
            )

    # -- set-up -----------------------------------------------------------------------------

    def set_meta(self, **values: Any) -> None:
        """Store JSON-serialisable facts about the run (job, input hash, columns, ...)."""
        with self._tx():
            self._db.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in values.items()],
            )

    def meta(self) -> dict[str, Any]:
        """Everything stored with :meth:`set_meta`."""
        cursor = self._db.execute("SELECT key, value FROM meta")
        return {r["key"]: json.loads(r["value"]) for r in cursor}

    def add_items(self, items: Iterable[Item], *, planned: bool = False) -> None:
        """Record every checked row with the input's own cells (``Item.values``), in batches.

        Rows that ``validate`` already decided (invalid, duplicate) keep that outcome; the rest
        are left pending, or marked ``planned`` for a dry run.
        """
        batch: list[tuple[Any, ...]] = []
        for item in items:
            outcome = item.outcome or (Outcome.PLANNED if planned else None)
            batch.append(
                (
                    item.row,
                    item.user_id,
                    item.action.value if item.action else None,
                    item.target_status,
                    item.reason,
                    item.updated_by,
                    json.dumps(list(item.values), ensure_ascii=False),
                    outcome.value if outcome else None,
                    item.message,
                )
            )
            if len(batch) >= 5000:
                self._insert(batch)
                batch = []
        if batch:
            self._insert(batch)

    def _insert(self, batch: list[tuple[Any, ...]]) -> None:
        with self._tx():
            self._db.executemany(
                "INSERT INTO rows(row, user_id, action, target_status, reason, updated_by,"
                " input_values, outcome, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                batch,
            )

    # -- the run ----------------------------------------------------------------------------

    def pending(self, after_row: int = 0, limit: int = 500) -> list[PendingRow]:
        """The next rows still to be sent, in input order, after ``after_row``."""
        cursor = self._db.execute(
            "SELECT row, user_id, action, target_status, reason, updated_by, sent, seen_status,"
            " seen_at, earlier FROM rows WHERE outcome IS NULL AND row > ? ORDER BY row LIMIT ?",
            (after_row, limit),
        )
        return [
            PendingRow(
                row=r["row"],
                user_id=r["user_id"],
                action=Action(r["action"]),
                target_status=r["target_status"],
                reason=r["reason"],
                updated_by=r["updated_by"],
                resent=bool(r["sent"]),
                seen_status=r["seen_status"],
                seen_at=r["seen_at"],
                earlier=r["earlier"],
            )
            for r in cursor
        ]

    def all_pending(self) -> Iterator[PendingRow]:
        """Every row still to be sent, in input order, read in batches."""
        after = 0
        while batch := self.pending(after, limit=5000):
            yield from batch
            after = batch[-1].row

    def pending_counts(self) -> dict[str, int]:
        """Rows still to be sent, per action."""
        cursor = self._db.execute(
            "SELECT action, COUNT(*) AS n FROM rows WHERE outcome IS NULL GROUP BY action"
        )
        return {r["action"]: r["n"] for r in cursor}

    def sent_any(self) -> bool:
        """True once any row of this run was sent (an intent was recorded for it)."""
        return self._db.execute("SELECT 1 FROM rows WHERE sent = 1 LIMIT 1").fetchone() is not None

    def pending_user_ids(self) -> set[str]:
        """The users of every row still to be sent."""
        cursor = self._db.execute("SELECT user_id FROM rows WHERE outcome IS NULL")
        return {r["user_id"] for r in cursor}

    def set_seen(self, found: Mapping[str, str], at: str | None = None) -> None:
        """Record the status a preview saw for each row's user (``NULL``: not found), and when."""
        rows = self._db.execute("SELECT row, user_id FROM rows").fetchall()
        with self._tx():
            self._db.executemany(
                "UPDATE rows SET seen_status = ?1, seen_at = CASE WHEN ?1 IS NULL THEN NULL"
                " ELSE ?2 END WHERE row = ?3",
                [(found.get(r["user_id"]), at, r["row"]) for r in rows],
            )

    # -- reads before sending, and settling after (pcxbatch.settle) ---------------------------

    def date_reads(self, at: str) -> None:
        """Date the statuses recorded without a time (a plan's, from its preview) at ``at``."""
        with self._tx():
            self._db.execute(
                "UPDATE rows SET seen_at = ? WHERE seen_status IS NOT NULL AND seen_at IS NULL",
                (at,),
            )

    def reads_due(self, older_than: str) -> int:
        """Rows still to send whose user was never read, or read before ``older_than``."""
        return self._count("outcome IS NULL AND (seen_at IS NULL OR seen_at < ?)", older_than)

    def record_read(
        self, seen: Sequence[tuple[int, str | None, str]], decided: Sequence[Settled]
    ) -> None:
        """A read before sending: ``seen`` rows (row, status, at) get the status read (``None``:
        not in the wanted status, by a listing of only that status); ``decided`` rows get their
        outcome without a request."""
        with self._tx():
            self._db.executemany(
                "UPDATE rows SET seen_status = ?, seen_at = ? WHERE row = ?",
                [(status, at, row) for row, status, at in seen],
            )
            self._settle(self._db, decided)

    def open_rows(self) -> list[OpenRow]:
        """Every row whose answer is still to be settled, in input order."""
        cursor = self._db.execute(
            "SELECT row, user_id, action, target_status, seen_status, seen_at, earlier,"
            " answer_kind, answer_text FROM rows WHERE open = 1 ORDER BY row"
        )
        return [
            OpenRow(
                row=r["row"],
                user_id=r["user_id"],
                action=Action(r["action"]),
                target_status=r["target_status"],
                seen_status=r["seen_status"],
                seen_at=r["seen_at"],
                earlier=r["earlier"],
                answer_kind=r["answer_kind"] or "",
                answer_text=r["answer_text"],
            )
            for r in cursor
        ]

    def open_count(self) -> int:
        """Rows answered whose truth a read is still to settle."""
        return self._count("open = 1")

    def settle(self, settled: Sequence[Settled]) -> None:
        """Give open rows their final outcome (settled by a read, or known to be unsettled)."""
        with self._tx():
            self._settle(self._db, settled)

    @staticmethod
    def _settle(db: sqlite3.Connection, settled: Sequence[Settled]) -> None:
        # A confirmed failure is one a read showed was not made: no earlier attempt made it.
        db.executemany(
            "UPDATE rows SET outcome = ?1, confirmed = ?2, message = ?3, open = 0,"
            " earlier = CASE WHEN ?1 = 'failed' AND ?2 = 1 THEN '' ELSE earlier END,"
            " uncertain = CASE WHEN ?1 = 'failed' AND ?2 = 1 THEN 0 ELSE uncertain END"
            " WHERE row = ?4",
            [
                (outcome.value, int(confirmed), message, row)
                for row, outcome, confirmed, message in settled
            ],
        )

    def sent_count(self) -> int:
        """How many rows of this run were sent (an intent recorded), stopped legs included."""
        return self._count("sent = 1")

    def unconfirmed(self) -> int:
        """Rows with an outcome that is not proven (``confirmed`` false)."""
        return self._count("outcome IS NOT NULL AND confirmed = 0")

    def _count(self, where: str, *params: str) -> int:
        query = f"SELECT COUNT(*) FROM rows WHERE {where}"  # noqa: S608 (``where``: ours, fixed)
        return int(self._db.execute(query, params).fetchone()[0])

    def commit(
        self,
        intents: Sequence[int],
        results: Sequence[RowResult],
        released: Sequence[tuple[int, str]] = (),
    ) -> None:
        """Durably record outcomes that came back and intents for rows about to be sent.

        ``released`` rows (row, earlier) got no answer because the credential was refused. With
        ``earlier`` empty nothing of theirs was applied: they go back to plain pending, so a
        resume does not treat them as possibly applied. Otherwise an attempt may have been
        applied (a 504 before the 401): they stay sent, and ``earlier`` says how.
        """
        if not intents and not results and not released:
            return
        db = self._commit_connection()
        with ImmediateTransaction(db):
            if released:
                db.executemany(
                    "UPDATE rows SET sent = CASE WHEN ? = '' THEN 0 ELSE 1 END,"
                    " earlier = ?, uncertain = ? WHERE row = ?",
                    [(why, why, int(bool(why)), row) for row, why in released],
                )
            if results:
                db.executemany(
                    "UPDATE rows SET outcome = ?, http_status = ?, attempts = attempts + ?,"
                    " throttled = throttled + ?, message = ?, request_id = ?, uncertain = ?,"
                    " earlier = ?, confirmed = ?, open = ?, answer_kind = ?, answer_text = ?"
                    " WHERE row = ?",
                    [
                        (
                            r.outcome.value,
                            r.http_status,
                            r.attempts,
                            r.throttled,
                            r.message,
                            r.request_id or "",
                            int(r.uncertain),
                            r.earlier,
                            int(r.confirmed),
                            int(r.open),
                            r.answer_kind,
                            r.answer_text,
                            r.row,
                        )
                        for r in results
                    ],
                )
            if intents:
                db.executemany(
                    "UPDATE rows SET sent = 1 WHERE row = ?", [(row,) for row in intents]
                )

    def _commit_connection(self) -> sqlite3.Connection:
        """The connection :meth:`commit` writes through, opened on first use.

        A connection of its own, usable from another thread, so that ``execute`` can run the
        commit (and its fsync) in a worker thread while the event loop goes on; WAL lets it
        write while this journal's main connection reads. Callers never commit concurrently.
        """
        if self._writer is None:
            self._writer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._writer.execute("PRAGMA synchronous=FULL")
        return self._writer

    def import_rows(self, source: Journal, outcomes: Sequence[Outcome]) -> int:
        """Copy ``source``'s rows that ended with one of ``outcomes``, as pending rows.

        A copied row counts as possibly sent when its change may have been made before
        (``uncertain``, or sent without a recorded answer), and keeps ``earlier`` and the status
        read before. Returns how many rows were copied.
        """
        wanted = {o.value for o in outcomes}
        cursor = source._db.execute(
            "SELECT row, user_id, action, target_status, reason, updated_by, input_values,"
            " CASE WHEN uncertain = 1 OR (outcome IS NULL AND sent = 1) THEN 1 ELSE 0 END"
            " AS sent, seen_status, seen_at, earlier, COALESCE(outcome, ?) AS outcome"
            " FROM rows ORDER BY row",
            (Outcome.NOT_ATTEMPTED.value,),
        )
        copied = 0
        while batch := cursor.fetchmany(5000):
            keep = [dict(r) for r in batch if r["outcome"] in wanted]
            with self._tx():
                self._db.executemany(
                    "INSERT INTO rows(row, user_id, action, target_status, reason, updated_by,"
                    " input_values, sent, uncertain, seen_status, seen_at, earlier) VALUES (:row,"
                    " :user_id, :action, :target_status, :reason, :updated_by, :input_values,"
                    " :sent, :sent, :seen_status, :seen_at, :earlier)",
                    keep,
                )
            copied += len(keep)
        return copied

    # -- reading back -----------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Rows per outcome; rows with no outcome yet count as ``not_attempted``."""
        counts = {o.value: 0 for o in Outcome}
        for r in self._db.execute(
            "SELECT COALESCE(outcome, ?) AS outcome, COUNT(*) AS n FROM rows GROUP BY 1",
            (Outcome.NOT_ATTEMPTED.value,),
        ):
            counts[r["outcome"]] = r["n"]
        return counts

    def totals(self) -> dict[str, int]:
        """Rows, attempts beyond the first (retries) and 429 answers over the whole run."""
        r = self._db.execute(
            "SELECT COUNT(*) AS rows, COALESCE(SUM(MAX(attempts - 1, 0)), 0) AS retries,"
            " COALESCE(SUM(throttled), 0) AS throttled FROM rows"
        ).fetchone()
        return {"rows": r["rows"], "retries": r["retries"], "throttled": r["throttled"]}

    def lines(self) -> Iterator[ReportLine]:
        """The report's lines in input order, streamed."""
        cursor = self._db.execute(
            "SELECT row, user_id, action, target_status, outcome, http_status, attempts,"
            " message, request_id, input_values, sent, seen_status, reason, updated_by,"
            " confirmed, open FROM rows ORDER BY row"
        )
        for r in cursor:
            message = r["message"]
            confirmed = bool(r["confirmed"])
            if r["outcome"] is None:
                # Never sent: certainly nothing happened. Sent with no answer: it may have been.
                confirmed = not r["sent"]
                message = (
                    "sent, but the run stopped before its answer was recorded, so it may have"
                    " been applied; resume settles it"
                    if r["sent"]
                    else "the run stopped before this row was sent; resume sends it"
                )
            elif r["open"]:
                message += " (the run stopped first; resume settles it)"
            yield ReportLine(
                row=r["row"],
                user_id=r["user_id"],
                action=r["action"] or "",
                target_status=r["target_status"] or "",
                outcome=Outcome(r["outcome"] or Outcome.NOT_ATTEMPTED),
                http_status=r["http_status"],
                attempts=r["attempts"],
                message=message,
                request_id=r["request_id"],
                values=tuple(json.loads(r["input_values"])),
                seen_status=r["seen_status"] or "",
                confirmed=confirmed,
                reason=r["reason"] or "",
                updated_by=r["updated_by"] or "",
            )

    def close(self) -> None:
        """Close the database (everything committed is already durable)."""
        if self._writer is not None:
            self._writer.close()
        self._db.close()

    def _tx(self) -> ImmediateTransaction:
        return ImmediateTransaction(self._db)


class ImmediateTransaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back if the block raises (also ``sharedpace``)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
