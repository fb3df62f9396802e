"""Check rows: find the known columns, then turn each source row into exactly one ``Item``.

In: a table's column names (for :func:`resolve_columns`), then its ``SourceRow`` stream, the
resolved :class:`Columns`, the job's :class:`~pcxbatch.model.RowDefaults` and the user-ID pattern
(for :func:`check_rows`). Out: one :class:`~pcxbatch.model.Item` per row, same order, same row
number. A usable row has ``outcome=None``; an unusable one ``Outcome.INVALID``, and a repeated
user ``Outcome.DUPLICATE``, each with a message naming the row and the column as a person reads
them (``row 7, column 'User ID': empty``). Only a table that cannot be used at all (no user-ID
column, two columns for one field) raises ``InputError``. No third-party imports.

How a row's action is decided: the row's ``action`` cell; else its status cell (``inactive``,
``deactivated`` or ``deactivate`` mean a deactivation, any settable status a status change);
else the job's action; else the job's status. When the job names an action and a row's status
says the other one, the row is invalid rather than quietly doing something the job did not ask.

What a user-ID message says about how the ID was probably mangled on its way through a
spreadsheet (the row is invalid in each case; nothing is guessed or repaired):

- scientific notation (``1.23457E+14``), or a number cell with more than 15 significant digits:
  digits are lost;
- a number cell of 12 or more digits of which at most 6 are significant (``123457000000000``):
  what Excel makes of ``1.23457E+14`` when it reads a CSV back, so digits are lost;
- a number cell (or digits alone) that fails the ID pattern: leading zeros may have been lost,
  and when zeros put back in front would make it match, the message says so;
- a formula cell (from ``read``), or a text starting with ``=`` in the ID, status or action
  column: a formula, never evaluated, never sent;
- a spreadsheet error value (``#N/A``), or an ISO date or time (a spreadsheet took the ID for a
  date).

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
    check_user_id,
    compile_id_pattern,
    read_action,
    read_status,
    word_key,
)

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

# read.py names a repeated header "Name (2)"; such a column still counts for its field, so that
# two "User ID" columns are reported as ambiguous instead of one being silently ignored.
_REPEAT_SUFFIX = re.compile(r"\s\(\d+\)$")
# How Excel shows a big number in a General cell, e.g. 1.23457E+14 (or 1,23457E+14).
_SCIENTIFIC = re.compile(r"^[+-]?\d+(?:[.,]\d*)?[eE][+-]\d+$")
_DECIMAL_INTEGER = re.compile(r"^\d+[.,]0+$")
_DIGITS = re.compile(r"^[0-9]+$")
# Excel's error values, as a cell holding one reads.
_ERROR_VALUES = frozenset(
    {"#N/A", "#REF!", "#VALUE!", "#DIV/0!", "#NAME?", "#NUM!", "#NULL!", "#SPILL!", "#CALC!"}
)
# What read makes of a date or time cell (ISO 8601).
_DATE_LIKE = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$|^\d{1,2}:\d{2}(?::\d{2})?$"
)
# Excel shows a number of 12 digits or more in a General cell as 1.23457E+14: 6 significant
# digits. A CSV saved like that and read back holds 123457000000000.
_ROUNDED_MIN_DIGITS = 12
_ROUNDED_MAX_SIGNIFICANT = 6
# How many leading zeros a message tries putting back to see whether the ID would then match.
_MAX_LOST_ZEROS = 12
# A "no user ID column" message lists this many columns, each cut to this many characters.
_LIST_COLUMNS = 20
_COLUMN_SHOWN = 40

_CACHE_LIMIT = 10_000
_W = TypeVar("_W")
_FIX_NUMBER = "format the column as text in the source file and export it again"
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


def _show(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:76] + "...'"


def _printable(text: str) -> str:
    """``text`` with control and invisible characters escaped (``\\x1b``), so a header from a
    file cannot drive the terminal it is printed on."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _short(name: str, limit: int = _COLUMN_SHOWN) -> str:
    """A column name fit for a one-line message: printable and at most ``limit`` characters."""
    name = _printable(name)
    return name if len(name) <= limit else name[: limit - 3] + "..."


def _is_formula(notes: dict[int, CellNote], column: int | None, text: str) -> bool:
    """True when the cell is a formula (``read`` said so) or its text is formula-like."""
    if column is not None and notes and notes.get(column) is CellNote.FORMULA:
        return True
    return _formula_like(text)


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


def _formula_like(text: str) -> bool:
    # What a spreadsheet would run as a formula; a CSV cell like this was typed as one.
    return text.startswith("=") and len(text) > 1


def _lost_zeros(digits: str, pattern: re.Pattern[str]) -> str | None:
    """``digits`` with the fewest leading zeros that make it match ``pattern``, if any."""
    for zeros in range(1, _MAX_LOST_ZEROS + 1):
        candidate = "0" * zeros + digits
        if pattern.fullmatch(candidate):
            return candidate
    return None


def _scientific(digits: str) -> str:
    """An integer's digits as Excel shows them in scientific notation: ``1.23457E+14``."""
    sign, unsigned = ("-", digits[1:]) if digits.startswith("-") else ("", digits)
    significant = unsigned.rstrip("0") or "0"
    mantissa = significant[0] + ("." + significant[1:] if len(significant) > 1 else "")
    return f"{sign}{mantissa}E+{len(unsigned) - 1:02d}"


def _rounded_by_excel(digits: str) -> bool:
    """Whether a number looks like Excel's 6-significant-digit rendering read back."""
    unsigned = digits.lstrip("-")
    return (
        _DIGITS.match(unsigned) is not None
        and len(unsigned) >= _ROUNDED_MIN_DIGITS
        and len(unsigned.rstrip("0")) <= _ROUNDED_MAX_SIGNIFICANT
    )


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
        index = self.columns.user_id
        user_id = row.values[index]
        note = row.notes.get(index) if row.notes else None
        where = self.label[index]
        if note is CellNote.FORMULA:
            return f"{where}: a formula, not a value (paste the values in its place)"
        if note is CellNote.LOSSY_NUMBER:
            return (
                f"{where}: {_printable(user_id)[:80]} was stored as a number with more than "
                f"15 digits, so the spreadsheet has lost some of its digits; {_FIX_NUMBER}"
            )
        if note is CellNote.NUMBER and _rounded_by_excel(user_id):
            return (
                f"{where}: {user_id} was stored as a number with only its first digits "
                "followed by zeros: what a spreadsheet makes of an ID it showed as "
                f"{_scientific(user_id)} and saved; its digits are lost; {_FIX_NUMBER}"
            )
        # Checked before the pattern: a permissive pattern would let these through.
        if _formula_like(user_id):
            return (
                f"{where}: {_show(user_id)} is a formula, not a value (never evaluated, never "
                "sent); put the user ID itself in the cell"
            )
        if user_id in _ERROR_VALUES:
            return (
                f"{where}: {_show(user_id)} is a spreadsheet error value, not a user ID (a "
                "formula that failed before its values were pasted?)"
            )
        if _DATE_LIKE.match(user_id):
            # A date cell's text would pass most ID patterns; the ID it replaced is gone.
            return (
                f"{where}: {_show(user_id)} looks like a date or time: a spreadsheet may have "
                f"taken the ID for a date; {_FIX_NUMBER}"
            )
        why = check_user_id(user_id, self.pattern)
        if why is None:
            return None
        if not user_id:
            return f"{where}: empty"
        if _SCIENTIFIC.match(user_id):
            return (
                f"{where}: {_show(user_id)} is a number in scientific notation: a spreadsheet "
                f"turned the ID into a number and its digits are lost; {_FIX_NUMBER}"
            )
        if note is CellNote.NUMBER:
            hint = ""
            if _DIGITS.match(user_id):
                padded = _lost_zeros(user_id, self.pattern)
                hint = (
                    f"; it was probably {padded} with its leading zeros lost"
                    if padded
                    else "; leading zeros may have been lost"
                )
            return (
                f"{where}: {_show(user_id)} was stored as a number and {why}{hint}; {_FIX_NUMBER}"
            )
        if _DECIMAL_INTEGER.match(user_id):
            return (
                f"{where}: {_show(user_id)} looks like a number written with a decimal part "
                f"(the ID was a number somewhere on the way) and {why}; {_FIX_NUMBER}"
            )
        if _DIGITS.match(user_id) and (padded := _lost_zeros(user_id, self.pattern)):
            return (
                f"{where}: {_show(user_id)} {why}; it was probably {padded} with its leading "
                f"zeros lost (a spreadsheet that opened the file?); {_FIX_NUMBER}"
            )
        return f"{where}: {_show(user_id)} {why}"

    def check(self, row: SourceRow) -> tuple[Item, list[str]]:
        """Resolve the row's instruction (all but the user ID) and list what is wrong with it."""
        problems: list[str] = []
        columns, defaults, values = self.columns, self.defaults, row.values
        notes = row.notes
        action_text = values[columns.action] if columns.action is not None else ""
        status_text = values[columns.status] if columns.status is not None else ""

        # A formula cell is refused even when it is empty (never calculated), rather than
        # quietly falling back on the job's defaults.
        row_status: str | None = None
        if _is_formula(notes, columns.status, status_text):
            problems.append(f"{self.status_label}: a formula, not a value")
        elif status_text:
            row_status = _cached_word(status_text, self.statuses, read_status)
            if row_status is None:
                problems.append(
                    f"{self.status_label}: unknown status {_show(status_text)} "
                    f"(use {_ALLOWED_STATUSES})"
                )
        action: Action | None = None
        if _is_formula(notes, columns.action, action_text):
            problems.append(f"{self.action_label}: a formula, not a value")
        elif action_text:
            action = _cached_word(action_text, self.actions, read_action)
            if action is None:
                problems.append(
                    f"{self.action_label}: unknown action {_show(action_text)} "
                    f"(use {_ALLOWED_ACTIONS})"
                )
        # Without a readable action and status, further complaints would only be noise.
        decidable = not problems

        reason = defaults.reason
        if columns.reason is not None and values[columns.reason]:
            reason = values[columns.reason]
            if len(reason) > MAX_REASON_LENGTH:
                problems.append(
                    f"{self.label[columns.reason]}: too long ({len(reason)} characters; "
                    f"at most {MAX_REASON_LENGTH})"
                )
        updated_by = defaults.updated_by
        if columns.updated_by is not None and values[columns.updated_by]:
            updated_by = values[columns.updated_by]
            if len(updated_by) > MAX_UPDATED_BY_LENGTH:
                problems.append(
                    f"{self.label[columns.updated_by]}: too long ({len(updated_by)} characters; "
                    f"at most {MAX_UPDATED_BY_LENGTH})"
                )

        target: str | None = None
        if decidable:
            action = self._decide_action(action, row_status, problems)
            if action is Action.DEACTIVATE:
                target = DEACTIVATED_STATUS
                if row_status is not None and row_status != DEACTIVATED_STATUS:
                    problems.append(
                        f"{self.status_label}: {_show(status_text)} contradicts the "
                        f"action deactivate (a deactivated user ends {DEACTIVATED_STATUS!r})"
                    )
                if not updated_by:
                    problems.append(
                        "a deactivation needs updated_by: add an 'updated_by' column "
                        "or set updated_by in the job"
                    )
            elif action is Action.SET_STATUS:
                target = row_status or self.default_status
                if target is None:
                    problems.append(
                        self.default_status_problem
                        or "a status change needs a status: add a 'status' column or set "
                        f"status in the job (one of {', '.join(SETTABLE_STATUSES)})"
                    )
                elif target == DEACTIVATED_STATUS:
                    where = (
                        f"{self.status_label}: {_show(status_text)}"
                        if row_status is not None and columns.status is not None
                        else f"the job's status {defaults.status!r}"
                    )
                    problems.append(
                        f"{where} cannot be set by a status change; "
                        "use the action deactivate instead"
                    )
        item = Item(
            row.row, values[columns.user_id], action, target, reason, updated_by, values=values
        )
        return item, problems

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
