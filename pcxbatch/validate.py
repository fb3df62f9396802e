"""Check rows: find the known columns, then turn each source row into exactly one ``Item``.

In: a table's column names (for :func:`resolve_columns`), then its ``SourceRow`` stream, the
resolved :class:`Columns`, the job's :class:`~pcxbatch.model.RowDefaults` and the user-ID pattern
(for :func:`check_rows`). Out: one :class:`~pcxbatch.model.Item` per row, same order, same row
number. A usable row has ``outcome=None``; an unusable one ``Outcome.INVALID``, and a repeated
user ``Outcome.DUPLICATE``, each with a message naming the row and the column as a person reads
them (``row 7, column 'User ID': empty``); ``validate_ids`` words the user-ID messages, saying
how a spreadsheet probably mangled the ID on its way. Only a table that cannot be used at all
(no user-ID column, two columns for one field) raises ``InputError``. No third-party imports.

How a row's action is decided: the row's ``action`` cell; else its status cell (``inactive``,
``deactivated`` or ``deactivate`` mean a deactivation, any settable status a status change);
else the job's action; else the job's status. When the job names an action and a row's status
says the other one, the row is invalid rather than quietly doing something the job did not ask.

Messages quote cell texts with ``repr`` and column names with any control character escaped, so
no cell can put terminal escape sequences into what is printed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pcxbatch.errors import InputError
from pcxbatch.model import (
    DEACTIVATED_STATUS,
    SETTABLE_STATUSES,
    Action,
    CellNote,
    Item,
    Outcome,
    RowDefaults,
    SourceRow,
)
from pcxbatch.rules import (
    DEFAULT_ID_PATTERN,
    compile_id_pattern,
    read_action,
    read_status,
    word_key,
)
from pcxbatch.validate_ids import formula_like, id_problem, printable, show

__all__ = [
    "MAX_REASON_LENGTH",
    "MAX_UPDATED_BY_LENGTH",
    "Columns",
    "check_rows",
    "resolve_columns",
]

MAX_REASON_LENGTH = 1000
MAX_UPDATED_BY_LENGTH = 256

# Header aliases, compared after rules.word_key (case, spaces, "_", "-" and "." ignored), the
# comparison action and status words get.
_FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "user_id": ("user_id", "userid", "user", "id", "uid", "pcx_user_id"),
    "action": ("action",),
    "status": ("status", "target_status", "new_status"),
    "reason": ("reason", "status_reason", "deactivation_reason"),
    "updated_by": ("updated_by", "changed_by"),
}
_FIELD_LABELS = {
    "user_id": "user ID",
    "action": "action",
    "status": "status",
    "reason": "reason",
    "updated_by": "updated_by",
}
_ALLOWED_STATUSES = ", ".join(SETTABLE_STATUSES) + f" or {DEACTIVATED_STATUS} (to deactivate)"
_ALLOWED_ACTIONS = f"{Action.DEACTIVATE.value} or {Action.SET_STATUS.value}"

# read names a repeated header "Name (2)"; such a column still counts for its field, so that
# two "User ID" columns are reported as ambiguous instead of one being silently ignored.
_REPEAT_SUFFIX = re.compile(r"\s\(\d+\)$")
# A "no user ID column" message lists this many columns, each cut to this many characters.
_LIST_COLUMNS = 20
_COLUMN_SHOWN = 40

_CACHE_LIMIT = 10_000
_W = TypeVar("_W")
# Instruction codes for duplicate detection: one small int per user ID keeps 1M rows cheap.
_UNUSABLE = 7
_INSTRUCTION_CODES: dict[tuple[Action, str], int] = {
    (Action.DEACTIVATE, DEACTIVATED_STATUS): 0,
    **{(Action.SET_STATUS, s): i for i, s in enumerate(SETTABLE_STATUSES, start=1)},
}


@dataclass(frozen=True)
class Columns:
    """Where each known field is in the table (an index into its columns), ``None`` if absent.

    ``names`` are the table's column names, used in messages.
    """

    user_id: int
    action: int | None
    status: int | None
    reason: int | None
    updated_by: int | None
    names: tuple[str, ...]


_ALIAS_TO_FIELD: dict[str, str] = {
    word_key(alias): field for field, aliases in _FIELD_ALIASES.items() for alias in aliases
}


def resolve_columns(columns: Sequence[str], source: str) -> Columns:
    """Find the known fields among ``columns`` (header names); ``source`` names the input file.

    Raises ``InputError`` when there is no user-ID column or when two columns claim one field.
    """
    found: dict[str, int] = {}
    for index, name in enumerate(columns):
        field = _ALIAS_TO_FIELD.get(word_key(_REPEAT_SUFFIX.sub("", name)))
        if field is None:
            continue
        if field in found:
            first = _short(columns[found[field]])
            raise InputError(
                f"{source}: columns '{first}' and '{_short(name)}' both look like the "
                f"{_FIELD_LABELS[field]} column; rename or remove one of them"
            )
        found[field] = index
    if "user_id" not in found:
        listed = ", ".join(f"'{_short(name)}'" for name in columns[:_LIST_COLUMNS]) or "none"
        if len(columns) > _LIST_COLUMNS:
            listed += f" and {len(columns) - _LIST_COLUMNS} more ({len(columns)} columns)"
        raise InputError(
            f"{source}: no user ID column; the columns are {listed}. "
            "Name the user ID column 'user_id' (also accepted: User ID, userId, user, id, uid)"
        )
    return Columns(
        user_id=found["user_id"],
        action=found.get("action"),
        status=found.get("status"),
        reason=found.get("reason"),
        updated_by=found.get("updated_by"),
        names=tuple(columns),
    )


def _short(name: str, limit: int = _COLUMN_SHOWN) -> str:
    """A column name fit for a one-line message: printable and at most ``limit`` characters."""
    name = printable(name)
    return name if len(name) <= limit else name[: limit - 3] + "..."


def _is_formula(notes: dict[int, CellNote], column: int | None, text: str) -> bool:
    """True when the cell is a formula (``read`` said so) or its text is formula-like."""
    if column is not None and notes and notes.get(column) is CellNote.FORMULA:
        return True
    return formula_like(text)


def _cached_word(
    text: str, cache: dict[str, _W | None], read: Callable[[str], _W | None]
) -> _W | None:
    """What ``read`` (``rules.read_status`` or ``read_action``) makes of ``text``; the raw
    spelling is remembered (up to ``_CACHE_LIMIT`` of them), since the same few spellings
    repeat on every row."""
    if text in cache:
        return cache[text]
    found = read(text)
    if len(cache) < _CACHE_LIMIT:
        cache[text] = found
    return found


class _RowChecker:
    """Everything about one ``check_rows`` call that does not change from row to row."""

    def __init__(self, columns: Columns, defaults: RowDefaults, pattern: re.Pattern[str]) -> None:
        self.columns = columns
        self.pattern = pattern
        self.defaults = defaults
        names = columns.names
        self.label = {i: f"column '{_short(name, 80)}'" for i, name in enumerate(names)}
        self.status_label = self._label(columns.status)
        self.action_label = self._label(columns.action)
        # Status and action cells repeat a handful of spellings: remember what each one meant.
        self.statuses: dict[str, str | None] = {}
        self.actions: dict[str, Action | None] = {}
        self.default_status: str | None = None
        self.default_status_problem: str | None = None
        if defaults.status:
            self.default_status = read_status(defaults.status)
            if self.default_status is None:
                self.default_status_problem = (
                    f"the job's status {defaults.status!r} is not one of {_ALLOWED_STATUSES}"
                )

    def _label(self, index: int | None) -> str:
        return "" if index is None else self.label[index]

    def user_id_problem(self, row: SourceRow) -> str | None:
        """What is wrong with the row's user ID, as its message part; None when usable."""
        index = self.columns.user_id
        note = row.notes.get(index) if row.notes else None
        return id_problem(self.label[index], row.values[index], note, self.pattern)

    def check(self, row: SourceRow) -> tuple[Item, list[str]]:
        """Resolve the row's instruction (all but the user ID) and list what is wrong with it."""
        problems: list[str] = []
        columns, defaults, values = self.columns, self.defaults, row.values
        status_text = values[columns.status] if columns.status is not None else ""
        row_status = self._row_status(row, problems)
        action = self._row_action(row, problems)
        # Without a readable action and status, further complaints would only be noise.
        decidable = not problems
        reason = self._row_text(
            values, columns.reason, defaults.reason, MAX_REASON_LENGTH, problems
        )
        updated_by = self._row_text(
            values, columns.updated_by, defaults.updated_by, MAX_UPDATED_BY_LENGTH, problems
        )
        target: str | None = None
        if decidable:
            action = self._decide_action(action, row_status, problems)
            if action is Action.DEACTIVATE:
                target = self._deactivation(row_status, status_text, updated_by, problems)
            elif action is Action.SET_STATUS:
                target = self._status_change(row_status, status_text, problems)
        item = Item(
            row.row, values[columns.user_id], action, target, reason, updated_by, values=values
        )
        return item, problems

    def _row_status(self, row: SourceRow, problems: list[str]) -> str | None:
        """The row's status cell read (``rules.read_status``); None when empty or unusable."""
        allowed = f"use {_ALLOWED_STATUSES}"
        words = (self.statuses, read_status, "status", allowed)
        return self._row_word(row, self.columns.status, self.status_label, words, problems)

    def _row_action(self, row: SourceRow, problems: list[str]) -> Action | None:
        """The row's action cell read (``rules.read_action``); None when empty or unusable."""
        allowed = f"use {_ALLOWED_ACTIONS}"
        words = (self.actions, read_action, "action", allowed)
        return self._row_word(row, self.columns.action, self.action_label, words, problems)

    @staticmethod
    def _row_word(
        row: SourceRow,
        column: int | None,
        label: str,
        words: tuple[dict[str, _W | None], Callable[[str], _W | None], str, str],
        problems: list[str],
    ) -> _W | None:
        """One word cell (status or action) read through its cache: ``words`` is (cache,
        reader, what the word is, the allowed words). A formula cell is refused even when
        empty (never calculated), rather than quietly falling back on the job's defaults."""
        cache, read, kind, allowed = words
        text = row.values[column] if column is not None else ""
        if _is_formula(row.notes, column, text):
            problems.append(f"{label}: a formula, not a value")
            return None
        if not text:
            return None
        word = _cached_word(text, cache, read)
        if word is None:
            problems.append(f"{label}: unknown {kind} {show(text)} ({allowed})")
        return word

    def _row_text(
        self,
        values: tuple[str, ...],
        column: int | None,
        default: str | None,
        limit: int,
        problems: list[str],
    ) -> str | None:
        """The row's own text in ``column`` (at most ``limit`` characters), else ``default``."""
        if column is None or not values[column]:
            return default
        text = values[column]
        if len(text) > limit:
            problems.append(
                f"{self.label[column]}: too long ({len(text)} characters; at most {limit})"
            )
        return text

    def _deactivation(
        self, row_status: str | None, status_text: str, updated_by: str | None, problems: list[str]
    ) -> str:
        """A deactivation's target status, after checking the row can be one."""
        if row_status is not None and row_status != DEACTIVATED_STATUS:
            problems.append(
                f"{self.status_label}: {show(status_text)} contradicts the "
                f"action deactivate (a deactivated user ends {DEACTIVATED_STATUS!r})"
            )
        if not updated_by:
            problems.append(
                "a deactivation needs updated_by: add an 'updated_by' column "
                "or set updated_by in the job"
            )
        return DEACTIVATED_STATUS

    def _status_change(
        self, row_status: str | None, status_text: str, problems: list[str]
    ) -> str | None:
        """A status change's target status (the row's, else the job's), if it can be set."""
        target = row_status or self.default_status
        if target is None:
            problems.append(
                self.default_status_problem
                or "a status change needs a status: add a 'status' column or set "
                f"status in the job (one of {', '.join(SETTABLE_STATUSES)})"
            )
        elif target == DEACTIVATED_STATUS:
            where = (
                f"{self.status_label}: {show(status_text)}"
                if row_status is not None and self.columns.status is not None
                else f"the job's status {self.defaults.status!r}"
            )
            problems.append(
                f"{where} cannot be set by a status change; use the action deactivate instead"
            )
        return target

    def _decide_action(
        self, action: Action | None, row_status: str | None, problems: list[str]
    ) -> Action | None:
        if action is not None:
            return action
        job_action = self.defaults.action
        if row_status is not None:
            implied = Action.DEACTIVATE if row_status == DEACTIVATED_STATUS else Action.SET_STATUS
            if job_action is not None and job_action is not implied:
                problems.append(
                    f"{self.status_label}: status {row_status!r} contradicts "
                    f"the job's action {job_action.value}; leave the cell empty or add an "
                    "'action' column"
                )
            return implied
        if job_action is not None:
            return job_action
        if self.default_status is not None:
            if self.default_status == DEACTIVATED_STATUS:
                return Action.DEACTIVATE
            return Action.SET_STATUS
        problems.append(
            self.default_status_problem
            or "no action: add an 'action' or 'status' column, or set action in the job"
        )
        return None


def _message(row: int, problems: list[str]) -> str:
    first, *rest = problems
    text = f"row {row}, {first}" if first.startswith("column ") else f"row {row}: {first}"
    return "; ".join([text, *rest])


def _describe(code: int) -> str:
    for (action, status), known in _INSTRUCTION_CODES.items():
        if known == code:
            return action.value if action is Action.DEACTIVATE else f"status {status}"
    return "?"


def check_rows(
    rows: Iterable[SourceRow],
    columns: Columns,
    defaults: RowDefaults,
    *,
    id_pattern: str = DEFAULT_ID_PATTERN,
) -> Iterator[Item]:
    """One ``Item`` per row, lazily and in order (see the module docstring for the rules).

    The first row with a usable user ID is the one acted on; a later row with the same ID is a
    ``DUPLICATE`` naming that first row. Raises ``ValueError`` if ``id_pattern`` is not a valid
    regular expression.
    """
    checker = _RowChecker(columns, defaults, compile_id_pattern(id_pattern))
    first_rows: dict[str, int] = {}  # user ID -> row number << 3 | instruction code
    for row in rows:
        id_problem = checker.user_id_problem(row)
        item, problems = checker.check(row)
        if id_problem is not None:
            yield _replace(item, Outcome.INVALID, _message(row.row, [id_problem, *problems]))
            continue
        code = _UNUSABLE
        if not problems and item.action is not None and item.target_status is not None:
            code = _INSTRUCTION_CODES.get((item.action, item.target_status), _UNUSABLE)
        earlier = first_rows.get(item.user_id)
        if earlier is None:
            first_rows[item.user_id] = row.row << 3 | code
            if problems:
                item = _replace(item, Outcome.INVALID, _message(row.row, problems))
            yield item
            continue
        first_row, first_code = earlier >> 3, earlier & 7
        message = f"same user as row {first_row}"
        if first_code == _UNUSABLE:
            message += f" (row {first_row} is invalid: fix it there)"
        elif code != _UNUSABLE and code != first_code:
            message += (
                f", which asks for {_describe(first_code)} where this row asks for "
                f"{_describe(code)}; only row {first_row} is acted on"
            )
        if problems:
            message += f"; this row is also invalid: {'; '.join(problems)}"
        yield _replace(item, Outcome.DUPLICATE, message)


def _replace(item: Item, outcome: Outcome, message: str) -> Item:
    return Item(
        row=item.row,
        user_id=item.user_id,
        action=item.action,
        target_status=item.target_status,
        reason=item.reason,
        updated_by=item.updated_by,
        outcome=outcome,
        message=message,
        values=item.values,
    )
