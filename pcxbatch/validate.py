"""Check rows: find the known columns, then turn each source row into exactly one ``Item``.

In: a table's column names and the job's column mapping (for :func:`resolve_columns` and
:func:`table_columns`, in :mod:`~pcxbatch.validate_columns`), then its ``SourceRow`` stream,
the resolved :class:`Columns`, the job's :class:`~pcxbatch.model.RowDefaults` and the user-ID
pattern (for :func:`check_rows`). Out: one :class:`~pcxbatch.model.Item` per row, same order,
same row number, with the file-level notes about its columns (:class:`CheckedRows`). A usable
row has ``outcome=None``; an unusable one ``Outcome.INVALID``, and a repeated user
``Outcome.DUPLICATE``, each with a message naming the row and the column as a person reads them
(``row 7, column 'User ID': empty``) and, where the job could fill the gap, the flag and the
job key that do. ``validate_ids`` words the user-ID messages, saying how a spreadsheet probably
mangled the ID on its way; whether a number lost its leading zeros is judged against the IDs of
the column up to :data:`_ID_LOOKAHEAD` rows below it. Only a table that cannot be used at all
raises ``InputError``: no user-ID column, two columns for one field, or nothing anywhere (no
action or status column, no action or status in the job) that says what to do with any row.
No third-party imports.

How a row's action is decided: the row's ``action`` cell; else its status cell (``inactive``,
``deactivated`` or ``deactivate`` mean a deactivation, any settable status a status change);
else the job's action; else the job's status. When the job names an action and a row's status
says the other one, the row is invalid rather than quietly doing something the job did not ask.
A misspelt action or status is invalid, with the word it is closest to ("did you mean").

Messages quote cell texts with ``repr`` and column names with any control character escaped, so
no cell can put terminal escape sequences into what is printed.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
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
    near_action,
    near_status,
    read_action,
    read_status,
)
from pcxbatch.validate_columns import Columns, column_flag, resolve_columns, short, table_columns
from pcxbatch.validate_ids import IdColumn, formula_like, id_problem, show

__all__ = [
    "MAX_REASON_LENGTH",
    "MAX_UPDATED_BY_LENGTH",
    "CheckedRows",
    "Columns",
    "check_rows",
    "resolve_columns",
    "table_columns",
]

MAX_REASON_LENGTH = 1000
MAX_UPDATED_BY_LENGTH = 256

_ALLOWED_STATUSES = ", ".join(SETTABLE_STATUSES) + f" or {DEACTIVATED_STATUS} (to deactivate)"
_ALLOWED_ACTIONS = f"{Action.DEACTIVATE.value} or {Action.SET_STATUS.value}"
# What a message tells a person to do when the row lacks something the job could give.
_SET_STATUS = "give --status (status: in the job) for rows that leave it empty"
_SET_ACTION = "give --action (action: in the job) for rows that leave it empty"
_SET_UPDATED_BY = "give --updated-by NAME (updated_by: in the job) for rows that leave it empty"

_CACHE_LIMIT = 10_000
_W = TypeVar("_W")
# Instruction codes for duplicate detection: one small int per user ID keeps 1M rows cheap.
_UNUSABLE = 7
_INSTRUCTION_CODES: dict[tuple[Action, str], int] = {
    (Action.DEACTIVATE, DEACTIVATED_STATUS): 0,
    **{(Action.SET_STATUS, s): i for i, s in enumerate(SETTABLE_STATUSES, start=1)},
}
# How many rows below a row its ID column is read before the row's ID is judged: enough for
# the IDs stored as text to show that a number lost its leading zeros (see IdColumn).
_ID_LOOKAHEAD = 10_000


class CheckedRows(Iterator[Item]):
    """What :func:`check_rows` returns: its items, lazily and in order, with ``notes``, what a
    person should read once about the file's columns (``Columns.notes``)."""

    def __init__(self, items: Iterator[Item], notes: tuple[str, ...]) -> None:
        self._items = items
        self.notes = notes

    def __next__(self) -> Item:
        return next(self._items)


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
        self.label = {i: f"column '{short(name, 80)}'" for i, name in enumerate(names)}
        self.status_label = self._label(columns.status)
        self.action_label = self._label(columns.action)
        self.ids = IdColumn()
        # Status and action cells repeat a handful of spellings: remember what each one meant,
        # and what was said about each misspelling.
        self.statuses: dict[str, str | None] = {}
        self.actions: dict[str, Action | None] = {}
        self.unknown: dict[tuple[str, str], str] = {}
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
        text, where = row.values[index], self.label[index]
        return id_problem(where, text, note, self.pattern) or self.ids.lost_zeros(where, text, note)

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
        words = (self.statuses, read_status, "status")
        return self._row_word(row, self.columns.status, self.status_label, words, problems)

    def _row_action(self, row: SourceRow, problems: list[str]) -> Action | None:
        """The row's action cell read (``rules.read_action``); None when empty or unusable."""
        words = (self.actions, read_action, "action")
        return self._row_word(row, self.columns.action, self.action_label, words, problems)

    def _row_word(
        self,
        row: SourceRow,
        column: int | None,
        label: str,
        words: tuple[dict[str, _W | None], Callable[[str], _W | None], str],
        problems: list[str],
    ) -> _W | None:
        """One word cell (status or action) read through its cache: ``words`` is (cache,
        reader, what the word is). A formula cell is refused even when empty (never
        calculated), rather than quietly falling back on the job's defaults."""
        cache, read, kind = words
        text = row.values[column] if column is not None else ""
        if _is_formula(row.notes, column, text):
            problems.append(f"{label}: a formula, not a value")
            return None
        if not text:
            return None
        word = _cached_word(text, cache, read)
        if word is None:
            problems.append(f"{label}: {self._unknown_word(kind, text)}")
        return word

    def _unknown_word(self, kind: str, text: str) -> str:
        """What a message says of an unknown status or action ``text``: the word it is closest
        to, if any, and the words allowed (remembered, like the words read)."""
        said = self.unknown.get((kind, text))
        if said is None:
            near = near_status(text) if kind == "status" else near_action(text)
            allowed = _ALLOWED_STATUSES if kind == "status" else _ALLOWED_ACTIONS
            guess = f"did you mean {near!r}? " if near else ""
            said = f"unknown {kind} {show(text)} ({guess}use {allowed})"
            if len(self.unknown) < _CACHE_LIMIT:
                self.unknown[kind, text] = said
        return said

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
            column = self.columns.updated_by
            problems.append(
                f"{self.label[column]}: empty; a deactivation needs updated_by (who answers for "
                f"the change): fill it in, or {_SET_UPDATED_BY}"
                if column is not None
                else "a deactivation needs updated_by (who answers for the change): add an "
                "'Updated By' column (Reviewed By, Approved By and Changed By are read too), "
                "or give --updated-by NAME (updated_by: in the job)"
            )
        return DEACTIVATED_STATUS

    def _status_change(
        self, row_status: str | None, status_text: str, problems: list[str]
    ) -> str | None:
        """A status change's target status (the row's, else the job's), if it can be set."""
        target = row_status or self.default_status
        if target is None:
            settable = ", ".join(SETTABLE_STATUSES)
            problems.append(
                self.default_status_problem
                or (
                    f"{self.status_label}: empty; a status change needs the new status (one "
                    f"of {settable}): fill it in, or {_SET_STATUS}"
                    if self.columns.status is not None
                    else "a status change needs a status: add a 'Status' column, or give "
                    f"--status (status: in the job), one of {settable}"
                )
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
        problems.append(self.default_status_problem or self._nothing_says())
        return None

    def _nothing_says(self) -> str:
        """Why a row's action cannot be decided: its action and status cells are empty (the
        file has at least one of those columns: check_rows refuses a file with neither)."""
        action, status = self.columns.action, self.columns.status
        if action is not None and status is not None:
            return (
                f"columns '{short(self.columns.names[action], 80)}' and "
                f"'{short(self.columns.names[status], 80)}' are both empty, so nothing says "
                f"what to do: fill in one of them, or {_SET_ACTION}"
            )
        if status is not None:
            return (
                f"{self.status_label}: empty, so nothing says what to do: put the new status in "
                f"the cell ({_ALLOWED_STATUSES}), or {_SET_STATUS}"
            )
        return (
            f"{self.action_label}: empty, so nothing says what to do: put "
            f"{_ALLOWED_ACTIONS} in the cell, or {_SET_ACTION}"
        )


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
) -> CheckedRows:
    """One ``Item`` per row, lazily and in order (see the module docstring for the rules).

    The first row with a usable user ID is the one acted on; a later row with the same ID is a
    ``DUPLICATE`` naming that first row. Raises ``ValueError`` if ``id_pattern`` is not a valid
    regular expression. When nothing (no action or status column, no action or status in
    ``defaults``) could decide any row, iterating raises one ``InputError`` for the file,
    once every row has been read (so that a file that cannot be read says that first).
    """
    checker = _RowChecker(columns, defaults, compile_id_pattern(id_pattern))
    undecidable = _undecidable(columns, defaults)
    if undecidable is not None:
        return CheckedRows(_refusing(rows, undecidable), columns.notes)
    return CheckedRows(_checked(_looking_ahead(rows, checker), checker), columns.notes)


def _refusing(rows: Iterable[SourceRow], error: InputError) -> Iterator[Item]:
    for _ in rows:
        pass
    raise error
    yield  # a generator: nothing is read, or raised, before the first item is asked for


def _undecidable(columns: Columns, defaults: RowDefaults) -> InputError | None:
    """The error for a file none of whose rows can say what to do (one message, not one per
    row), or ``None`` when a row can."""
    if columns.action is not None or columns.status is not None:
        return None
    if defaults.action is not None or defaults.status is not None:
        return None
    unused = [columns.names[index] for index in columns.unused]
    hint = ""
    if len(unused) == 1:
        hint = f"; if column '{short(unused[0])}' holds the new status, say so: " + column_flag(
            "status", unused[0]
        )
    elif unused:
        listed = ", ".join(f"'{short(name)}'" for name in unused[:10])
        hint = (
            f"; if one of the columns not read ({listed}) holds the new status, say which: "
            '--column status="HEADER" (columns: in the job)'
        )
    return InputError(
        f"{columns.source or 'the input'}: nothing says what to do with the rows: there is no "
        "status or action column, and the job sets no --action or --status (action: or status: "
        f"in the job){hint}"
    )


def _looking_ahead(rows: Iterable[SourceRow], checker: _RowChecker) -> Iterator[SourceRow]:
    """``rows`` as they come, each once the checker's ``IdColumn`` has seen the user IDs of up
    to :data:`_ID_LOOKAHEAD` rows below it."""
    index = checker.columns.user_id
    observe = checker.ids.observe
    waiting: deque[SourceRow] = deque()
    for row in rows:
        observe(row.values[index], row.notes.get(index) if row.notes else None)
        waiting.append(row)
        if len(waiting) > _ID_LOOKAHEAD:
            yield waiting.popleft()
    yield from waiting


def _checked(rows: Iterable[SourceRow], checker: _RowChecker) -> Iterator[Item]:
    """The items of ``check_rows``: each row checked, then judged against the rows before it."""
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
