"""validate: which column is which, and what each row becomes (or why it cannot be used)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcxbatch.errors import InputError
from pcxbatch.model import Action, CellNote, Item, Outcome, RowDefaults, SourceRow
from pcxbatch.rules import DEFAULT_ID_PATTERN, check_user_id, compile_id_pattern
from pcxbatch.validate import Columns, check_rows, resolve_columns

HEADER = ("User ID", "Action", "Status", "Reason", "Updated By")
COLUMNS = resolve_columns(HEADER, "users.csv")
PATTERN = re.compile(DEFAULT_ID_PATTERN)
BY_OPS = RowDefaults(updated_by="ops@example.com")


def row(
    number: int,
    user_id: str,
    action: str = "",
    status: str = "",
    reason: str = "",
    updated_by: str = "",
    notes: dict[int, CellNote] | None = None,
) -> SourceRow:
    return SourceRow(number, (user_id, action, status, reason, updated_by), notes or {})


def check(
    *rows: SourceRow,
    defaults: RowDefaults = BY_OPS,
    columns: Columns = COLUMNS,
    id_pattern: str = DEFAULT_ID_PATTERN,
) -> list[Item]:
    return list(check_rows(rows, columns, defaults, id_pattern=id_pattern))


def one(source: SourceRow, defaults: RowDefaults = BY_OPS) -> Item:
    (item,) = check(source, defaults=defaults)
    return item


# --- columns -----------------------------------------------------------------------------------


def test_resolve_columns_finds_every_field() -> None:
    expected = Columns(user_id=0, action=1, status=2, reason=3, updated_by=4, names=HEADER)
    assert resolve_columns(HEADER, "users.csv") == expected


@pytest.mark.parametrize(
    "name", ["user_id", "User ID", "userId", "USERID", "user-id", " user ", "id", "UID", "User_Id"]
)
def test_user_id_aliases(name: str) -> None:
    assert resolve_columns(["note", name], "f.csv").user_id == 1


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("Status", "status"),
        ("target_status", "status"),
        ("New Status", "status"),
        ("target-status", "status"),
        ("Reason", "reason"),
        ("Updated By", "updated_by"),
        ("updatedBy", "updated_by"),
        ("updated_by", "updated_by"),
        ("ACTION", "action"),
    ],
)
def test_other_field_aliases(name: str, field: str) -> None:
    columns = resolve_columns(["user_id", name], "f.csv")
    assert getattr(columns, field) == 1


def test_unknown_columns_are_kept_but_unused() -> None:
    columns = resolve_columns(["Email", "user_id", "Notes"], "f.csv")
    assert (columns.user_id, columns.status, columns.reason) == (1, None, None)
    assert columns.names == ("Email", "user_id", "Notes")


def test_missing_user_id_column_lists_the_columns_found() -> None:
    with pytest.raises(InputError) as caught:
        resolve_columns(["Email", "Status"], "users.xlsx")
    message = str(caught.value)
    assert message.startswith("users.xlsx: no user ID column")
    assert "'Email', 'Status'" in message


def test_two_columns_for_one_field_are_named_with_the_flag_that_picks_one() -> None:
    with pytest.raises(InputError) as caught:
        resolve_columns(["user_id", "Status", "new_status"], "f.csv")
    assert str(caught.value) == (
        "f.csv: columns 'Status' and 'new_status' could both be the status column; say which "
        'one: --column status="new_status" (columns: {status: "new_status"} in the job)'
    )


def test_a_repeated_user_id_header_is_ambiguous() -> None:
    # read names the second of two identical headers "User ID (2)".
    with pytest.raises(InputError, match=r"'User ID' and 'User ID \(2\)' could both be the user"):
        resolve_columns(["User ID", "User ID (2)"], "f.csv")


# --- check_user_id -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "why"),
    [
        ("", "is empty"),
        ("a/b", "contains '/'"),
        ("a..b", "contains '..'"),
        ("a%2Fb", "contains '%'"),
        ("a b", "contains whitespace (U+0020)"),
        ("a\u00a0b", "contains whitespace (U+00A0)"),
        ("a\x07b", "contains a control character (U+0007)"),
        ("a\u200bb", "contains an invisible or unassigned character (U+200B)"),
        ("a.b", f"does not match the user ID pattern {DEFAULT_ID_PATTERN}"),
        ("-abc", f"does not match the user ID pattern {DEFAULT_ID_PATTERN}"),
        ("ü123", f"does not match the user ID pattern {DEFAULT_ID_PATTERN}"),
    ],
)
def test_check_user_id_says_what_is_wrong(user_id: str, why: str) -> None:
    assert check_user_id(user_id, PATTERN) == why


@pytest.mark.parametrize("user_id", ["u1", "USR_0001", "a-b-c", "0123456789", "x" * 128])
def test_check_user_id_accepts_ordinary_ids(user_id: str) -> None:
    assert check_user_id(user_id, PATTERN) is None


@given(st.from_regex(DEFAULT_ID_PATTERN, fullmatch=True))
def test_every_id_the_default_pattern_accepts_survives(user_id: str) -> None:
    assert check_user_id(user_id, PATTERN) is None
    assert check(row(2, user_id, "deactivate"))[0].outcome is None


@given(
    st.text(max_size=6),
    st.sampled_from(["/", "..", "%", " ", "\t", "\n", "\x00", "\x7f", "\u2028", "\u3000"]),
    st.text(max_size=6),
)
def test_no_pattern_lets_a_path_breaking_id_through(before: str, bad: str, after: str) -> None:
    anything = re.compile(r"(?s).*")
    assert check_user_id(before + bad + after, anything) is not None


def test_a_bad_id_pattern_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a valid regular expression"):
        compile_id_pattern("([a-z")


# --- one row, one item -------------------------------------------------------------------------


def test_a_deactivation_row() -> None:
    assert one(row(2, "u1", "deactivate", "", "fraud", "alice")) == Item(
        row=2,
        user_id="u1",
        action=Action.DEACTIVATE,
        target_status="inactive",
        reason="fraud",
        updated_by="alice",
        values=("u1", "deactivate", "", "fraud", "alice"),  # the row carries its own cells
    )


def test_a_status_change_row() -> None:
    item = one(row(2, "u1", "", "Pending Verification"), defaults=RowDefaults())
    assert (item.action, item.target_status, item.outcome) == (
        Action.SET_STATUS,
        "pending_verification",
        None,
    )


@pytest.mark.parametrize(
    ("status", "action", "target"),
    [
        ("inactive", Action.DEACTIVATE, "inactive"),
        ("Deactivated", Action.DEACTIVATE, "inactive"),
        ("deactivate", Action.DEACTIVATE, "inactive"),
        ("ACTIVE", Action.SET_STATUS, "active"),
        ("not-verified", Action.SET_STATUS, "not_verified"),
        (" Not Verified ", Action.SET_STATUS, "not_verified"),
        ("rejected", Action.SET_STATUS, "rejected"),
        ("pending_verification", Action.SET_STATUS, "pending_verification"),
    ],
)
def test_status_decides_the_action(status: str, action: Action, target: str) -> None:
    item = one(row(2, "u1", status=status.strip()))
    assert (item.action, item.target_status, item.outcome) == (action, target, None)


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("Deactivate", Action.DEACTIVATE),
        ("set_status", Action.SET_STATUS),
        ("status_change", Action.SET_STATUS),
        ("Set Status", Action.SET_STATUS),
        ("activate", Action.SET_STATUS),
    ],
)
def test_action_spellings(text: str, action: Action) -> None:
    item = one(row(2, "u1", text, "active" if action is Action.SET_STATUS else ""))
    assert (item.action, item.outcome) == (action, None)


def test_job_defaults_fill_empty_cells() -> None:
    defaults = RowDefaults(
        action=Action.DEACTIVATE, reason="annual review", updated_by="ops@example.com"
    )
    item = one(row(9, "u1"), defaults=defaults)
    assert item == Item(
        9,
        "u1",
        Action.DEACTIVATE,
        "inactive",
        "annual review",
        "ops@example.com",
        values=("u1", "", "", "", ""),
    )


def test_row_cells_win_over_job_defaults() -> None:
    defaults = RowDefaults(action=Action.DEACTIVATE, reason="job", updated_by="job")
    item = one(row(2, "u1", "", "", "row reason", "row person"), defaults=defaults)
    assert (item.reason, item.updated_by) == ("row reason", "row person")


def test_job_status_alone_decides_the_action() -> None:
    item = one(row(2, "u1"), defaults=RowDefaults(status="Rejected"))
    assert (item.action, item.target_status) == (Action.SET_STATUS, "rejected")


def test_no_reason_anywhere_is_none() -> None:
    assert one(row(2, "u1", "deactivate")).reason is None


# --- invalid rows ------------------------------------------------------------------------------


def invalid(source: SourceRow, defaults: RowDefaults = BY_OPS) -> str:
    item = one(source, defaults)
    assert item.outcome is Outcome.INVALID
    return item.message


def test_empty_user_id() -> None:
    assert invalid(row(7, "", "deactivate")) == "row 7, column 'User ID': empty"


@pytest.mark.parametrize(
    ("user_id", "said"),
    [
        ("a/b", "'a/b' contains '/'"),
        ("../x", "'../x' contains '/'"),
        ("a..b", "'a..b' contains '..'"),
        ("a%20b", "'a%20b' contains '%'"),
        ("a\tb", "'a\\tb' contains whitespace (U+0009)"),
        ("a\x00b", "'a\\x00b' contains a control character (U+0000)"),
        ("a#b", "'a#b' does not match the user ID pattern"),
    ],
)
def test_unsafe_or_malformed_user_ids(user_id: str, said: str) -> None:
    assert invalid(row(3, user_id, "deactivate")).startswith(f"row 3, column 'User ID': {said}")


@pytest.mark.parametrize("user_id", ["=", "=A1", "==x"])
def test_an_id_starting_with_equals_is_never_sent_whatever_the_pattern(user_id: str) -> None:
    (item,) = check(row(3, user_id, "deactivate"), id_pattern=r"^.+$")
    assert item.outcome is Outcome.INVALID
    assert "is a formula, not a value" in item.message


def test_scientific_notation_text_means_digits_were_lost() -> None:
    message = invalid(row(4, "1.23457E+14", "deactivate"))
    assert message.startswith("row 4, column 'User ID': '1.23457E+14' is a number in scientific")
    assert "digits are lost" in message
    assert "format the column as text" in message


def test_a_lossy_number_means_digits_were_lost() -> None:
    message = invalid(row(4, "123456789012345680", "deactivate", notes={0: CellNote.LOSSY_NUMBER}))
    assert "more than 15 digits" in message
    assert "format the column as text" in message


def test_an_exact_number_is_a_fine_id() -> None:
    item = one(row(4, "123456789012345", "deactivate", notes={0: CellNote.NUMBER}))
    assert (item.outcome, item.user_id) == (None, "123456789012345")


def test_a_number_that_fails_the_pattern_says_it_was_a_number() -> None:
    message = invalid(row(4, "1234.5", "deactivate", notes={0: CellNote.NUMBER}))
    assert message.startswith("row 4, column 'User ID': '1234.5' was stored as a number")


def test_a_csv_number_with_a_decimal_part_gets_a_hint() -> None:
    assert "looks like a number written with a decimal part" in invalid(
        row(4, "12345.0", "deactivate")
    )


def test_a_formula_user_id_is_not_a_value() -> None:
    message = invalid(row(5, "u1", "deactivate", notes={0: CellNote.FORMULA}))
    assert message.startswith("row 5, column 'User ID': a formula, not a value")


def test_a_formula_status_is_not_a_value() -> None:
    message = invalid(row(5, "u1", "", "active", notes={2: CellNote.FORMULA}))
    assert message == "row 5, column 'Status': a formula, not a value"


def test_a_formula_reason_is_fine() -> None:
    item = one(row(5, "u1", "deactivate", "", "why", notes={3: CellNote.FORMULA}))
    assert (item.outcome, item.reason) == (None, "why")


def test_unknown_status_lists_the_allowed_values() -> None:
    message = invalid(row(6, "u1", "", "suspended"))
    assert message == (
        "row 6, column 'Status': unknown status 'suspended' (use active, pending_verification, "
        "rejected, not_verified or inactive (to deactivate))"
    )


def test_unknown_action_lists_the_allowed_values() -> None:
    message = invalid(row(6, "u1", "delete"))
    assert message == (
        "row 6, column 'Action': unknown action 'delete' (use deactivate or set_status)"
    )


def test_a_deactivation_that_says_active_is_a_contradiction() -> None:
    message = invalid(row(8, "u1", "deactivate", "active"))
    assert message.startswith("row 8, column 'Status': 'active' contradicts the action deactivate")


def test_a_row_status_against_the_jobs_action_is_a_contradiction() -> None:
    defaults = RowDefaults(action=Action.DEACTIVATE, updated_by="ops")
    message = invalid(row(8, "u1", "", "active"), defaults)
    assert message.startswith(
        "row 8, column 'Status': status 'active' contradicts the job's action deactivate"
    )


def test_a_status_change_cannot_set_inactive() -> None:
    message = invalid(row(8, "u1", "set_status", "inactive"))
    assert "cannot be set by a status change; use the action deactivate" in message


def test_a_status_change_with_an_empty_status_cell() -> None:
    assert invalid(row(9, "u1", "set_status")) == (
        "row 9, column 'Status': empty; a status change needs the new status (one of active, "
        "pending_verification, rejected, not_verified): fill it in, or give --status (status: "
        "in the job) for rows that leave it empty"
    )


def test_a_status_change_without_a_status_column() -> None:
    columns = resolve_columns(["User ID", "Action"], "f.csv")
    (item,) = check(SourceRow(9, ("u1", "set_status")), columns=columns)
    assert item.message == (
        "row 9: a status change needs a status: add a 'Status' column, or give --status "
        "(status: in the job), one of active, pending_verification, rejected, not_verified"
    )


def test_a_deactivation_with_an_empty_updated_by_cell_names_the_flag_and_the_key() -> None:
    assert invalid(row(9, "u1", "deactivate"), RowDefaults()) == (
        "row 9, column 'Updated By': empty; a deactivation needs updated_by (who answers for "
        "the change): fill it in, or give --updated-by NAME (updated_by: in the job) for rows "
        "that leave it empty"
    )


def test_a_deactivation_without_an_updated_by_column_names_the_flag_and_the_key() -> None:
    columns = resolve_columns(["User ID", "Status"], "f.csv")
    (item,) = check(SourceRow(9, ("u1", "inactive")), columns=columns, defaults=RowDefaults())
    assert item.message == (
        "row 9: a deactivation needs updated_by (who answers for the change): add an "
        "'Updated By' column (Reviewed By, Approved By and Changed By are read too), or give "
        "--updated-by NAME (updated_by: in the job)"
    )


def test_empty_action_and_status_cells_say_the_cells_are_empty() -> None:
    assert invalid(row(9, "u1"), RowDefaults()) == (
        "row 9: columns 'Action' and 'Status' are both empty, so nothing says what to do: fill "
        "in one of them, or give --action (action: in the job) for rows that leave it empty"
    )


def test_an_empty_cell_in_the_only_status_column_says_so() -> None:
    # The analyst's file: a status column, no action column, one status left blank. Not "no
    # action column": the column is there, the cell is empty.
    columns = resolve_columns(["User ID", "New Status", "Reviewed By"], "f.xlsx")
    items = check(
        SourceRow(4, ("u1", "rejected", "j.doe")),
        SourceRow(5, ("u2", "", "j.doe")),
        columns=columns,
        defaults=RowDefaults(),
    )
    assert items[0].outcome is None
    assert items[1].message == (
        "row 5, column 'New Status': empty, so nothing says what to do: put the new status in "
        "the cell (active, pending_verification, rejected, not_verified or inactive (to "
        "deactivate)), or give --status (status: in the job) for rows that leave it empty"
    )


def test_nothing_anywhere_to_decide_the_rows_is_one_error_for_the_file() -> None:
    # 'Change To' names no field, so no row could say what to do: one message, naming the
    # column and the flag, instead of the same complaint on every row.
    columns = resolve_columns(["User ID", "Change To", "Reason"], "cases.csv")
    rows = (SourceRow(n, ("u1", "rejected", "x")) for n in range(2, 1000))
    with pytest.raises(InputError) as caught:
        list(check_rows(rows, columns, RowDefaults()))
    assert str(caught.value) == (
        "cases.csv: nothing says what to do with the rows: there is no status or action column, "
        "and the job sets no --action or --status (action: or status: in the job); if column "
        "'Change To' holds the new status, say so: --column status=\"Change To\" (columns: "
        '{status: "Change To"} in the job)'
    )
    columns = resolve_columns(["User ID", "Change To", "Ticket #"], "cases.csv")
    with pytest.raises(InputError, match=r"columns not read \('Change To', 'Ticket #'\)"):
        list(check_rows([], columns, RowDefaults()))
    assert list(check_rows([], columns, RowDefaults(action=Action.SET_STATUS))) == []


def test_an_unknown_job_status() -> None:
    message = invalid(row(9, "u1"), RowDefaults(status="frozen"))
    assert message.startswith("row 9: the job's status 'frozen' is not one of")


def test_overlong_reason_and_updated_by() -> None:
    message = invalid(row(9, "u1", "deactivate", "", "x" * 1001, "y" * 300))
    assert message == (
        "row 9, column 'Reason': too long (1001 characters; at most 1000); "
        "column 'Updated By': too long (300 characters; at most 256)"
    )


def test_every_problem_of_a_row_is_listed() -> None:
    message = invalid(row(3, "", "", "suspended"))
    assert message.startswith("row 3, column 'User ID': empty; column 'Status': unknown status")


def test_a_table_with_only_a_user_id_column() -> None:
    columns = resolve_columns(["uid"], "f.csv")
    items = check(SourceRow(2, ("u1",)), defaults=RowDefaults(status="active"), columns=columns)
    assert (items[0].action, items[0].target_status) == (Action.SET_STATUS, "active")


def test_a_custom_id_pattern() -> None:
    items = check(row(2, "USR-1", "deactivate"), row(3, "u2", "deactivate"), id_pattern=r"USR-\d+")
    assert [item.outcome for item in items] == [None, Outcome.INVALID]
    assert "does not match the user ID pattern USR-\\d+" in items[1].message


# --- duplicates and order ----------------------------------------------------------------------


def test_items_keep_row_order_and_numbers() -> None:
    numbers = [2, 3, 5, 9, 10]
    items = check(*(row(n, f"u{n}", "deactivate" if n % 2 else "bogus") for n in numbers))
    assert [item.row for item in items] == numbers
    assert [item.outcome for item in items] == [Outcome.INVALID, None, None, None, Outcome.INVALID]


def test_the_same_user_again_is_a_duplicate_of_the_first_row() -> None:
    items = check(
        row(2, "u1", "deactivate"), row(3, "u2", "deactivate"), row(4, "u1", "deactivate")
    )
    assert [item.outcome for item in items] == [None, None, Outcome.DUPLICATE]
    assert items[2].message == "same user as row 2"
    assert items[2].action is Action.DEACTIVATE


def test_a_duplicate_that_asks_for_something_else_says_so() -> None:
    items = check(row(2, "u1", "", "active"), row(3, "u1", "", "rejected"))
    assert items[1].outcome is Outcome.DUPLICATE
    assert items[1].message == (
        "same user as row 2, which asks for status active where this row asks for "
        "status rejected; only row 2 is acted on"
    )


def test_a_duplicate_of_an_invalid_row_points_at_it() -> None:
    items = check(row(2, "u1", "", "bogus"), row(3, "u1", "", "active"))
    assert [item.outcome for item in items] == [Outcome.INVALID, Outcome.DUPLICATE]
    assert items[1].message == "same user as row 2 (row 2 is invalid: fix it there)"


def test_rows_with_bad_ids_are_never_duplicates() -> None:
    items = check(row(2, "", "deactivate"), row(3, "", "deactivate"))
    assert [item.outcome for item in items] == [Outcome.INVALID, Outcome.INVALID]


def test_duplicate_ids_match_exactly() -> None:
    items = check(row(2, "u1", "deactivate"), row(3, "U1", "deactivate"))
    assert [item.outcome for item in items] == [None, None]


def test_an_uncalculated_formula_status_does_not_fall_back_on_the_job() -> None:
    message = invalid(row(5, "u1", notes={2: CellNote.FORMULA}), RowDefaults(status="active"))
    assert message == "row 5, column 'Status': a formula, not a value"


def test_a_too_long_reason_still_shows_the_rows_instruction() -> None:
    item = one(row(5, "u1", "deactivate", "", "x" * 2000))
    assert (item.outcome, item.action, item.target_status) == (
        Outcome.INVALID,
        Action.DEACTIVATE,
        "inactive",
    )


# --- mangled IDs: what probably happened to them -------------------------------------------------


def test_an_excel_rounded_number_is_caught_even_though_it_matches_the_pattern() -> None:
    # 123456789012345 shown as 1.23457E+14, saved as CSV, opened again and saved as XLSX.
    message = invalid(row(4, "123457000000000", "deactivate", notes={0: CellNote.NUMBER}))
    assert message.startswith("row 4, column 'User ID': 123457000000000 was stored as a number")
    assert "1.23457E+14" in message and "digits are lost" in message


@pytest.mark.parametrize("user_id", ["100000000001", "12345678901", "120000"])
def test_numbers_that_kept_their_digits_are_fine(user_id: str) -> None:
    item = one(row(4, user_id, "deactivate", notes={0: CellNote.NUMBER}))
    assert (item.outcome, item.user_id) == (None, user_id)


def test_round_numbers_typed_as_text_are_not_second_guessed() -> None:
    assert one(row(4, "500000000000", "deactivate")).outcome is None


def test_a_number_that_lost_its_leading_zeros_says_which_id_it_probably_was() -> None:
    items = check(
        row(4, "1234567", "deactivate", notes={0: CellNote.NUMBER}), id_pattern=r"^\d{8}$"
    )
    assert items[0].outcome is Outcome.INVALID
    assert "was stored as a number" in items[0].message
    assert "probably 01234567 with its leading zeros lost" in items[0].message


def test_a_number_failing_the_pattern_warns_about_leading_zeros() -> None:
    (item,) = check(
        row(4, "123456", "deactivate", notes={0: CellNote.NUMBER}), id_pattern=r"^[A-Z]\d+$"
    )
    assert item.message.startswith("row 4, column 'User ID': '123456' was stored as a number")
    assert "leading zeros may have been lost" in item.message
    decimal = invalid(row(4, "1234.5", "deactivate", notes={0: CellNote.NUMBER}))
    assert "leading zeros" not in decimal


def test_digits_in_a_csv_that_lost_their_zeros() -> None:
    (item,) = check(row(4, "42", "deactivate"), id_pattern=r"^[0-9]{6}$")
    assert item.outcome is Outcome.INVALID
    assert "probably 000042 with its leading zeros lost" in item.message


def test_an_id_not_matching_a_custom_pattern_quotes_the_pattern() -> None:
    (item,) = check(row(4, "abc", "deactivate"), id_pattern=r"^[0-9]{6}$")
    assert item.message == (
        "row 4, column 'User ID': 'abc' does not match the user ID pattern ^[0-9]{6}$"
    )


@pytest.mark.parametrize("text", ["=A1", '=HYPERLINK("http://x","u1")', "=1+1"])
def test_formula_text_in_the_id_column_is_flagged_never_sent(text: str) -> None:
    (item,) = check(row(4, text, "deactivate"), id_pattern=r"^.+$")
    assert item.outcome is Outcome.INVALID
    assert "is a formula, not a value" in item.message


@pytest.mark.parametrize("column", [1, 2])
def test_formula_text_in_the_action_or_status_column_is_flagged(column: int) -> None:
    cells = ["u1", "", "", "", ""]
    cells[column] = '=IF(A1,"inactive","active")'
    (item,) = check(SourceRow(4, tuple(cells)))
    assert item.outcome is Outcome.INVALID
    assert "a formula, not a value" in item.message


@pytest.mark.parametrize("value", ["#N/A", "#REF!", "#DIV/0!"])
def test_spreadsheet_error_values_say_so(value: str) -> None:
    assert "spreadsheet error value" in invalid(row(4, value, "deactivate"))


@pytest.mark.parametrize("value", ["2024-03-01", "2024-03-01T10:00:00", "10:30:00"])
def test_an_id_turned_into_a_date_is_caught(value: str) -> None:
    assert "looks like a date or time" in invalid(row(4, value, "deactivate"))


def test_lossy_numbers_say_digits_are_lost_whatever_the_pattern() -> None:
    (item,) = check(
        row(4, "1234567890123456", "deactivate", notes={0: CellNote.LOSSY_NUMBER}),
        id_pattern=r"^\d+$",
    )
    assert item.outcome is Outcome.INVALID and "more than 15 digits" in item.message


def test_column_names_in_messages_cannot_drive_the_terminal() -> None:
    with pytest.raises(InputError) as caught:
        resolve_columns(("Name", "Status\x1b[2J\x1b]0;pwned\x07"), "f.csv")
    message = str(caught.value)
    assert "\x1b" not in message and "\x07" not in message
    assert "'Status\\x1b[2J" in message


def test_a_missing_id_column_among_thousands_is_a_short_message() -> None:
    names = [f"col {i} " + "z" * 500 for i in range(5000)]
    with pytest.raises(InputError) as caught:
        resolve_columns(names, "wide.csv")
    message = str(caught.value)
    assert len(message) < 1500
    assert "and 4988 more (5000 columns)" in message


@given(
    user_id=st.text(max_size=40),
    note=st.sampled_from([None, CellNote.NUMBER, CellNote.LOSSY_NUMBER, CellNote.FORMULA]),
    pattern=st.sampled_from([DEFAULT_ID_PATTERN, r"^\d{8}$", r"^.+$", r"^[a-z]+-\d+$"]),
)
def test_every_id_is_either_safe_and_matching_or_invalid_with_a_reason(
    user_id: str, note: CellNote | None, pattern: str
) -> None:
    notes = {0: note} if note else {}
    (item,) = check(row(2, user_id, "deactivate", notes=notes), id_pattern=pattern)
    if item.outcome is None:
        assert check_user_id(user_id, re.compile(pattern)) is None
        assert note in (None, CellNote.NUMBER)
        assert not user_id.startswith("=")
    else:
        assert item.outcome is Outcome.INVALID
        assert item.message.startswith("row 2")
        assert "\x1b" not in item.message


# --- the analyst's files: columns named by the job, words misspelt, IDs a spreadsheet damaged ----


def test_the_job_maps_fields_to_headers_it_does_not_recognise() -> None:
    header = ("Customer ID", "Change To", "Why", "Who")
    mapping = {"user_id": "customer id", "status": "Change To", "reason": "Why"}
    columns = resolve_columns(header, "f.csv", mapping={**mapping, "updated_by": "WHO"})
    assert (columns.user_id, columns.status, columns.reason, columns.updated_by) == (0, 1, 2, 3)
    assert columns.notes == ()
    (item,) = check(SourceRow(2, ("c1", "inactive", "fraud", "j.doe")), columns=columns)
    assert (item.user_id, item.action, item.reason, item.updated_by, item.outcome) == (
        "c1",
        Action.DEACTIVATE,
        "fraud",
        "j.doe",
        None,
    )


def test_a_mapped_header_the_file_lacks_is_refused_with_a_suggestion() -> None:
    with pytest.raises(InputError) as caught:
        resolve_columns(["User ID", "New Status"], "f.csv", mapping={"status": "New Stat"})
    assert str(caught.value) == (
        "f.csv: has no column 'New Stat', which status is mapped to (columns: in the job, or "
        "--column); its columns are 'User ID', 'New Status'; did you mean 'New Status'?"
    )


def test_one_header_mapped_to_two_fields_is_refused() -> None:
    with pytest.raises(InputError, match="column 'Decision' is mapped to both status and action"):
        resolve_columns(
            ["User ID", "Decision"], "f.csv", mapping={"status": "Decision", "action": "decision"}
        )


def test_a_new_and_a_current_status_column_ask_for_the_mapping() -> None:
    header = ("User ID", "Customer Name", "Current Status", "New Status", "Reviewed By")
    with pytest.raises(InputError) as caught:
        resolve_columns(header, "cases.xlsx", sheet="Cases")
    assert str(caught.value) == (
        "cases.xlsx, sheet 'Cases': columns 'Current Status' and 'New Status' could both be the "
        'status column; say which one: --column status="New Status" (columns: {status: "New '
        'Status"} in the job)'
    )
    columns = resolve_columns(header, "cases.xlsx", mapping={"status": "New Status"})
    assert (columns.status, columns.updated_by, columns.unused) == (3, 4, (1, 2))
    assert columns.notes == (
        "columns not read: 'Customer Name', 'Current Status' (to read one as a field, map it: "
        '--column FIELD="HEADER", or columns: in the job; FIELD is one of user_id, status, '
        "action, reason, updated_by)",
    )


def test_a_status_date_column_is_not_a_second_status() -> None:
    columns = resolve_columns(["User ID", "Status", "Status Date", "Status Reason"], "f.csv")
    assert (columns.status, columns.reason, columns.unused) == (1, 3, (2,))


@pytest.mark.parametrize(
    "header", ["Reviewed By", "Updated By", "Changed By", "Approved By", "approver", "ActionedBy"]
)
def test_who_signed_the_change_is_the_updated_by_column(header: str) -> None:
    assert resolve_columns(["User ID", header], "f.csv").updated_by == 1


def test_two_signers_ask_which_one_is_updated_by() -> None:
    with pytest.raises(InputError, match=r'say which one: --column updated_by="Reviewed By"'):
        resolve_columns(["User ID", "Reviewed By", "Approved By"], "f.csv")


def test_a_column_the_mapping_replaces_is_noted_once() -> None:
    columns = resolve_columns(
        ["User ID", "Customer ID", "Stauts"], "f.csv", mapping={"user_id": "Customer ID"}
    )
    assert columns.user_id == 1
    assert columns.notes[0] == (
        "column 'User ID' is not read: user_id comes from 'Customer ID', as the job maps it"
    )
    assert columns.notes[1].startswith("columns not read: 'Stauts' (did you mean status?)")
    assert check_rows([], columns, RowDefaults(action=Action.SET_STATUS)).notes == columns.notes


def test_no_user_id_column_suggests_the_id_like_one_and_the_header_row() -> None:
    with pytest.raises(InputError) as caught:
        resolve_columns(["Customer ID", "Status"], "c.csv", header_row=1)
    assert str(caught.value) == (
        "c.csv: no user ID column; the columns are 'Customer ID', 'Status' (from row 1); if "
        "'Customer ID' holds the PCX user IDs, say so: --column user_id=\"Customer ID\" "
        '(columns: {user_id: "Customer ID"} in the job); if the header is not row 1, give its '
        "row number: --header-row N (header_row: in the job; without it the header is looked "
        "for in the first 20 rows)"
    )


def test_no_user_id_column_on_the_first_sheet_names_the_sheet_that_has_one() -> None:
    with pytest.raises(InputError) as caught:
        resolve_columns(
            ["Review summary"],
            "cases.xlsx",
            sheet="Summary",
            header_row=1,
            other_sheets=[("Cases", True), ("Lists", False)],
        )
    message = str(caught.value)
    assert message.startswith("cases.xlsx, sheet 'Summary': no user ID column; the columns are")
    assert (
        "the workbook's other sheets are 'Cases' (has one), 'Lists' (none): read 'Cases' with "
        '--sheet "Cases" (sheet: in the job)'
    ) in message


def test_a_misspelt_status_or_action_says_what_it_is_close_to() -> None:
    assert invalid(row(6, "u1", "", "Rejectd")) == (
        "row 6, column 'Status': unknown status 'Rejectd' (did you mean 'rejected'? use active, "
        "pending_verification, rejected, not_verified or inactive (to deactivate))"
    )
    assert invalid(row(7, "u1", "deactiavte")).startswith(
        "row 7, column 'Action': unknown action 'deactiavte' (did you mean 'deactivate'? use "
    )


def number(user_id: int, row_number: int) -> SourceRow:
    return row(row_number, str(user_id), "deactivate", notes={0: CellNote.NUMBER})


def text(user_id: str, row_number: int) -> SourceRow:
    return row(row_number, user_id, "deactivate")


def test_a_number_among_zero_padded_ids_lost_its_zeros_even_when_it_matches() -> None:
    # 12345 matches the ID pattern, and would have been sent: a 404 at best, someone else's
    # account at worst. The padded IDs below it are what show it.
    items = check(text("00012340", 4), number(12345, 5), text("00012346", 6))
    assert [item.outcome for item in items] == [None, Outcome.INVALID, None]
    assert items[1].message == (
        "row 5, column 'User ID': 12345 was stored as a number, but the column's other IDs are "
        "zero-padded to 8 digits (like '00012340'): it was probably 00012345 with its leading "
        "zeros lost; format the column as text in the source file and export it again"
    )


def test_a_number_shorter_than_every_text_id_lost_its_zeros() -> None:
    items = check(number(4512, 2), text("700100", 3), text("700101", 4))
    assert items[0].message.startswith(
        "row 2, column 'User ID': 4512 was stored as a number, and is shorter than every ID the "
        "column holds as text (6 digits or more, like '700100'): its leading zeros were "
        "probably lost"
    )
    assert [item.outcome for item in items[1:]] == [None, None]


def test_a_column_of_numbers_alone_is_not_second_guessed() -> None:
    items = check(number(7, 2), number(12345, 3), number(987654, 4), text("USR-1", 5))
    assert [item.outcome for item in items] == [None, None, None, None]


def test_text_digits_shorter_than_the_columns_padding_lost_their_zeros() -> None:
    # A CSV someone opened and saved in a spreadsheet, then pasted more rows into.
    items = check(text("000123", 2), text("4567", 3), text("045678", 4), text("456789", 5))
    assert [item.outcome for item in items] == [None, Outcome.INVALID, None, None]
    assert items[1].message.startswith(
        "row 3, column 'User ID': '4567' is shorter than the column's other IDs, which are "
        "zero-padded to 6 digits (like '000123'): it was probably 004567 with its leading zeros "
        "lost (a spreadsheet that opened the file?)"
    )


def test_the_padded_ids_that_show_the_damage_may_come_thousands_of_rows_later() -> None:
    rows = [number(12345, 2), *(text(f"u{n}", n) for n in range(3, 5000)), text("00099999", 5000)]
    items = check(*rows)
    assert items[0].outcome is Outcome.INVALID and "00012345" in items[0].message
    assert [item.row for item in items] == list(range(2, 5001))


@pytest.mark.parametrize(
    "value", ["2024-03-01T10:00:00+02:00", "01/03/2024", "1.3.24", "1-Mar-24", "2024/03/01"]
)
def test_more_dates_are_caught(value: str) -> None:
    message = invalid(row(2, value, "deactivate"))
    assert "looks like a date or time: a spreadsheet may have taken the ID for a date" in message


def test_a_fixed_updated_by_ignores_the_files_column_and_says_so(tmp_path: Path) -> None:
    from pcxbatch.config import load_job
    from pcxbatch.intake import check_table, read_input

    path = tmp_path / "cases.csv"
    path.write_text("User ID,Updated By\nu-1,mallory\nu-2,\n", encoding="utf-8")
    settings = {"action": "deactivate", "reason": "r", "updated_by": "ana"}
    free = list(check_table(read_input(load_job(path, settings)), load_job(path, settings)))
    assert [i.updated_by for i in free] == ["mallory", "ana"]  # the file's, else the job's
    job = load_job(path, {**settings, "fixed_updated_by": True})
    items = check_table(read_input(job), job)
    assert [i.updated_by for i in items] == ["ana", "ana"]
    assert any("'Updated By' is not read" in n for n in getattr(items, "notes", ()))
