"""The package's own vocabulary, shared by every pipeline stage.

Nothing here imports a third-party library: stages hand each other these types, so that pandas
stays in ``read``, httpx in ``client``, and so on.

In: nothing. Out: enums for actions, statuses and row outcomes; the row records that flow
``read -> validate -> plan -> execute -> report``; what a listed user and a page of the user
list come to (:class:`UserState`, :class:`UsersPage`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Action(StrEnum):
    """What a row asks PCX to do: which endpoint it goes to."""

    DEACTIVATE = "deactivate"  # PUT /users/{id}/deactivate
    SET_STATUS = "set_status"  # PUT /users/{id}/activate ("admin status change")


#: Statuses that ``PUT /users/{id}/activate`` accepts.
SETTABLE_STATUSES: tuple[str, ...] = ("active", "pending_verification", "rejected", "not_verified")

#: The status a user is assumed to end in after ``/deactivate``. PCX does not document it;
#: ``inactive`` is the only value of the ``/users/list`` enum that fits (pcxbatch/CONTRACT.md).
DEACTIVATED_STATUS = "inactive"


class Outcome(StrEnum):
    """One word per row, used in the report, the summary and the progress line."""

    APPLIED = "applied"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    NOT_FOUND = "not_found"  # the API has no such user (a 404, or not listed at the preview)
    NOT_ATTEMPTED = "not_attempted"
    PLANNED = "planned"


class Verdict(StrEnum):
    """A row's class in a preview: what applying the plan would do to it."""

    WILL_CHANGE = "will_change"
    UNCHANGED = "unchanged"
    NOT_FOUND = "not_found"
    INVALID = "invalid"
    DUPLICATE = "duplicate"


class CellNote(StrEnum):
    """What ``read`` noticed about a cell's original form, for ``validate`` to judge."""

    NUMBER = "number"  # stored as a number; turned back into its digits exactly
    LOSSY_NUMBER = (
        "lossy_number"  # stored as a number that may have lost digits (>15 digits, exponent)
    )
    FORMULA = "formula"  # a formula; its cached value was used, never evaluated


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One data row as it stands in the input file.

    ``row`` is the row number the spreadsheet shows (the header is row 1 when it is the first
    line). ``values`` holds one text per column of the table, stripped, ``""`` when empty.
    ``notes`` maps a column index to what ``read`` noticed about that cell.
    """

    row: int
    values: tuple[str, ...]
    notes: dict[int, CellNote] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RowDefaults:
    """Job-level values a row falls back on when its own cell is empty."""

    action: Action | None = None
    status: str | None = None
    reason: str | None = None
    updated_by: str | None = None


@dataclass(frozen=True, slots=True)
class Item:
    """A checked row: what will be sent for it, or why nothing will.

    ``outcome`` is ``INVALID`` or ``DUPLICATE`` when ``validate`` has already decided the row's
    fate, and ``None`` when the row is to be sent. ``target_status`` is the status the user should
    end in (``inactive`` for a deactivation).
    """

    row: int
    user_id: str
    action: Action | None
    target_status: str | None
    reason: str | None
    updated_by: str | None
    outcome: Outcome | None = None
    message: str = ""
    #: The input's own cells for this row, one per input column, in the input's column order.
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RowResult:
    """What happened to one row when it was sent (or why it was not)."""

    row: int
    outcome: Outcome
    http_status: int | None = None
    attempts: int = 0
    message: str = ""
    request_id: str | None = None
    throttled: int = 0  # attempts answered 429
    #: An attempt for this row may have been applied although no answer showed it (a 5xx, a
    #: dropped connection, an unread answer, a previous run's unanswered send): how, in words.
    #: Empty when none may have been. Kept through stops, resumes and retries of failed rows.
    earlier: str = ""
    #: False when the outcome is the likelier of two possibilities, not a proven fact (the
    #: message names both); such a row makes the run exit 5.
    confirmed: bool = True
    #: The answer leaves the truth open: a read of the user's status after the sends settles it
    #: (``pcxbatch.settle``); until then ``outcome``/``message`` say what is known.
    open: bool = False
    #: What kind of answer it was (``pcxbatch.answers.Kind``), and the answer in words: what a
    #: settling read needs to word its verdict.
    answer_kind: str | None = None
    answer_text: str = ""

    @property
    def uncertain(self) -> bool:
        """An attempt for this row may have been applied (see ``earlier``)."""
        return bool(self.earlier)


@dataclass(frozen=True, slots=True)
class ReportLine:
    """One line of ``results.csv``/``results.xlsx``: a row's result beside its input cells.

    ``values`` are the input's own cells, one per input column, in the input's column order.
    Fields that do not apply are ``""`` (texts) or ``None`` (numbers).
    """

    row: int
    user_id: str
    action: str
    target_status: str
    outcome: Outcome
    http_status: int | None
    attempts: int
    message: str
    request_id: str
    values: tuple[str, ...]
    seen_status: str = ""  # the user's status read before sending, "" when not read
    confirmed: bool = True  # False: the outcome is not proven (see RowResult.confirmed)
    reason: str = ""  # what is sent with the row (kept for plans and undo files)
    updated_by: str = ""


@dataclass(frozen=True, slots=True)
class PlanRow:
    """One row of a preview and of the plan file: what applying the plan does to it.

    ``seen_status`` is the user's status when previewed (``None``: not found, or not read for an
    ``invalid``/``duplicate`` row). ``values`` are the input's own cells, as in
    :class:`ReportLine`.
    """

    row: int
    user_id: str
    action: str
    target_status: str
    reason: str
    updated_by: str
    seen_status: str | None
    verdict: Verdict
    message: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UndoRow:
    """One line of ``undo.csv``: how to put one changed user back (``status`` empty: unknown)."""

    user_id: str
    status: str
    reason: str
    updated_by: str
    note: str
    changed_in_row: int


@dataclass(frozen=True)
class UserState:
    """What pcxbatch needs to know about a user (no personal data)."""

    user_id: str
    status: str
    org_id: str | None


class UsersPage(tuple[list[UserState], str | None]):
    """One page of ``GET /users/list``; unpacks as ``(users, next_key)`` (``None``: last page).
    ``total`` is how many users the API says match the filter, ``None`` when it does not say."""

    total: int | None

    def __new__(cls, users: list[UserState], next_key: str | None, total: int | None) -> UsersPage:
        page = super().__new__(cls, (users, next_key))
        page.total = total
        return page

    @property
    def users(self) -> list[UserState]:
        """The page's users."""
        return self[0]

    @property
    def key(self) -> str | None:
        """The next page's key (``None``: this is the last page)."""
        return self[1]
