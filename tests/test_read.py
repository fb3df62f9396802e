"""read: what a user's CSV or workbook turns into, and how unusable files are reported."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import subprocess
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcxbatch.errors import InputError
from pcxbatch.model import CellNote, SourceRow
from pcxbatch.read import Table, file_sha256, read_table


def write(tmp_path: Path, name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode(encoding) if isinstance(content, str) else content)
    return path


def rows_of(table: Table) -> list[tuple[int, tuple[str, ...]]]:
    return [(row.row, row.values) for row in table.rows]


def workbook(
    tmp_path: Path, sheets: Mapping[str, Sequence[Sequence[object]]], name: str = "in.xlsx"
) -> Path:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    path = tmp_path / name
    book.save(path)
    return path


# --- CSV ---------------------------------------------------------------------------------------


def test_csv_cells_are_text_stripped_with_spreadsheet_row_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "users.csv",
        " User ID , Status ,Reason\n00123 , inactive,  fraud \n1.23457E+14,active,NA\n",
    )
    table = read_table(path)
    assert table.columns == ("User ID", "Status", "Reason")
    assert table.sheet is None
    assert table.header_row == 1
    assert rows_of(table) == [
        (2, ("00123", "inactive", "fraud")),
        (3, ("1.23457E+14", "active", "NA")),
    ]


def test_csv_rows_carry_no_notes(tmp_path: Path) -> None:
    table = read_table(write(tmp_path, "u.csv", "user_id\n123\n=1+1\n"))
    assert [row.notes for row in table.rows] == [{}, {}]


def test_blank_rows_are_skipped_without_shifting_row_numbers(tmp_path: Path) -> None:
    text = "user_id,status\n\nu1,active\n,\n  ,  \nu2,inactive\n\n\n,\n"
    assert rows_of(read_table(write(tmp_path, "u.csv", text))) == [
        (3, ("u1", "active")),
        (6, ("u2", "inactive")),
    ]


def test_blank_lines_before_the_header_move_the_header_row(tmp_path: Path) -> None:
    table = read_table(write(tmp_path, "u.csv", "\n,,\nuser_id,status\nu1,active\n"))
    assert table.header_row == 3
    assert table.columns == ("user_id", "status")
    assert rows_of(table) == [(4, ("u1", "active"))]


def test_a_quoted_cell_spanning_lines_is_one_row_as_a_spreadsheet_shows_it(tmp_path: Path) -> None:
    text = 'user_id,reason\nu1,"line one\nline two"\nu2,plain\n'
    assert rows_of(read_table(write(tmp_path, "u.csv", text))) == [
        (2, ("u1", "line one\nline two")),
        (3, ("u2", "plain")),
    ]


def test_short_rows_are_padded_with_empty_cells(tmp_path: Path) -> None:
    assert rows_of(read_table(write(tmp_path, "u.csv", "user_id,status,reason\nu1\n"))) == [
        (2, ("u1", "", ""))
    ]


def test_utf8_bom_is_not_part_of_the_first_header(tmp_path: Path) -> None:
    table = read_table(write(tmp_path, "u.csv", "\ufeffuser_id,reason\nu1,Müller\n"))
    assert table.columns == ("user_id", "reason")
    assert table.encoding == "utf-8-sig"
    assert rows_of(table) == [(2, ("u1", "Müller"))]


def test_windows_1252_is_detected(tmp_path: Path) -> None:
    path = write(tmp_path, "u.csv", "user_id;reason\nu1;José \u2013 café €\n", encoding="cp1252")
    table = read_table(path)
    assert table.encoding == "cp1252"
    assert rows_of(table) == [(2, ("u1", "José \u2013 café €"))]


def test_utf16_tab_separated_unicode_text_from_excel(tmp_path: Path) -> None:
    path = write(tmp_path, "u.txt", "User ID\tStatus\r\nu1\tactive\r\n", encoding="utf-16")
    table = read_table(path)
    assert table.columns == ("User ID", "Status")
    assert table.separator == "\t"
    assert rows_of(table) == [(2, ("u1", "active"))]


@pytest.mark.parametrize(
    ("text", "separator"),
    [
        ("user_id;status;reason\nu1;inactive;fraud, confirmed\nu2;active;ok\n", ";"),
        ("user_id\tstatus\treason\nu1\tinactive\tfraud, confirmed\nu2\tactive\tok\n", "\t"),
        ('user_id,status,reason\nu1,inactive,"fraud; confirmed"\nu2,active,ok\n', ","),
    ],
)
def test_separator_is_sniffed(tmp_path: Path, text: str, separator: str) -> None:
    table = read_table(write(tmp_path, "u.csv", text))
    assert table.separator == separator
    assert table.columns == ("user_id", "status", "reason")
    assert [row.values[0] for row in table.rows] == ["u1", "u2"]


def test_a_single_column_file_works(tmp_path: Path) -> None:
    table = read_table(write(tmp_path, "u.csv", "user_id\nu1\nu2\n"))
    assert table.columns == ("user_id",)
    assert rows_of(table) == [(2, ("u1",)), (3, ("u2",))]


def test_empty_and_repeated_headers_get_unique_stable_names(tmp_path: Path) -> None:
    table = read_table(write(tmp_path, "u.csv", "user_id,,Status,status,\nu1,x,a,b,y\n"))
    assert table.columns == ("user_id", "column 2", "Status", "status (2)", "column 5")


def test_header_whitespace_runs_become_one_space(tmp_path: Path) -> None:
    table = read_table(write(tmp_path, "u.csv", '"User\nID",Updated   By\nu1,me\n'))
    assert table.columns == ("User ID", "Updated By")


def test_header_without_data_rows_is_not_an_error(tmp_path: Path) -> None:
    table = read_table(write(tmp_path, "u.csv", "user_id,status\n\n\n"))
    assert table.columns == ("user_id", "status")
    assert list(table.rows) == []


def test_many_rows_across_chunks_keep_their_numbers(tmp_path: Path) -> None:
    lines = ["user_id"] + [f"u{i}" if i % 1000 else "" for i in range(120_000)]
    table = read_table(write(tmp_path, "u.csv", "\n".join(lines) + "\n"))
    seen = {row.values[0]: row.row for row in table.rows}
    assert seen["u1"] == 3
    assert seen["u119999"] == 120_001
    assert len(seen) == 120_000 - 120


def test_too_many_cells_in_a_row_names_the_file_and_row(tmp_path: Path) -> None:
    path = write(tmp_path, "u.csv", "user_id,reason\nu1,fine\nu2,fraud, confirmed\n")
    table = read_table(path)
    with pytest.raises(InputError) as caught:
        list(table.rows)
    message = str(caught.value)
    assert str(path) in message
    assert "row 3 has more cells than the header's 2" in message
    assert "\n" not in message


def test_an_unclosed_quote_names_the_row(tmp_path: Path) -> None:
    path = write(tmp_path, "u.csv", 'user_id,reason\nu1,ok\nu2,"never closed\nu3,x\n')
    with pytest.raises(InputError, match=r'u\.csv: row 3 opens a double quote \("\)'):
        list(read_table(path).rows)


@given(
    st.lists(
        st.lists(
            st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=12),
            min_size=3,
            max_size=3,
        ),
        max_size=8,
    )
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_text_written_by_a_csv_writer_reads_back_stripped(
    tmp_path: Path, records: list[list[str]]
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["user_id", "status", "reason"])
    writer.writerows(records)
    table = read_table(write(tmp_path, "p.csv", buffer.getvalue()))
    expected = [
        (number, tuple(cell.strip() for cell in record))
        for number, record in enumerate(records, start=2)
        if any(cell.strip() for cell in record)
    ]
    assert rows_of(table) == expected


# --- unusable files ----------------------------------------------------------------------------


def assert_input_error(path: Path, fragment: str, sheet: str | int | None = None) -> None:
    with pytest.raises(InputError) as caught:
        read_table(path, sheet=sheet)
    message = str(caught.value)
    assert str(path) in message
    assert fragment in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    assert_input_error(tmp_path / "nope.csv", "file not found")


def test_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    assert_input_error(folder, "is a folder")


def test_unsupported_extension_names_the_supported_ones(tmp_path: Path) -> None:
    assert_input_error(write(tmp_path, "u.json", "{}"), ".csv, .tsv, .txt, .xlsx, .xlsm")


@pytest.mark.parametrize(("name", "what"), [("u.xls", ".xls"), ("u.ods", ".ods")])
def test_other_spreadsheet_formats_say_what_to_do(tmp_path: Path, name: str, what: str) -> None:
    assert_input_error(write(tmp_path, name, b"x"), f"{what}), which is not supported")


def test_empty_file(tmp_path: Path) -> None:
    assert_input_error(write(tmp_path, "u.csv", b""), "empty")


def test_blank_file_has_no_header(tmp_path: Path) -> None:
    assert_input_error(write(tmp_path, "u.csv", "\n ,, \n\n"), "no header row")


def test_workbook_renamed_to_csv(tmp_path: Path) -> None:
    source = workbook(tmp_path, {"S": [["user_id"], ["u1"]]})
    assert_input_error(write(tmp_path, "u.csv", source.read_bytes()), "an Excel .xlsx workbook?")


def test_binary_data_in_a_csv(tmp_path: Path) -> None:
    assert_input_error(write(tmp_path, "u.csv", b"user_id\nu1\x00\x01\n"), "binary data")


def test_a_sheet_name_for_a_csv(tmp_path: Path) -> None:
    assert_input_error(write(tmp_path, "u.csv", "user_id\nu1\n"), "no sheets", sheet="Users")


# --- workbooks ---------------------------------------------------------------------------------


def test_numbers_become_their_digits_with_notes(tmp_path: Path) -> None:
    path = workbook(
        tmp_path,
        {
            "Users": [
                ["User ID", "Amount", "Flag", "When", "Day", "Time"],
                [
                    123456789012345,
                    1.5,
                    True,
                    dt.datetime(2024, 3, 1, 14, 30),
                    dt.date(2024, 3, 1),
                    dt.time(9, 5),
                ],
                [1234567890123456789.0, 0.1, False, None, None, None],
                [42.0, -7, None, None, None, None],
            ]
        },
    )
    table = read_table(path)
    assert table.sheet == "Users"
    rows = list(table.rows)
    assert rows[0] == SourceRow(
        2,
        ("123456789012345", "1.5", "TRUE", "2024-03-01T14:30:00", "2024-03-01", "09:05:00"),
        {0: CellNote.NUMBER, 1: CellNote.NUMBER},
    )
    # Digits past the 15th were gone the moment the ID became a number.
    assert rows[1].values[0].startswith("12345678901234")
    assert rows[1].values[0] != "1234567890123456789"
    assert rows[1].values[1:3] == ("0.1", "FALSE")
    assert rows[1].notes == {0: CellNote.LOSSY_NUMBER, 1: CellNote.NUMBER}
    assert rows[2].values[:2] == ("42", "-7")
    assert rows[2].notes == {0: CellNote.NUMBER, 1: CellNote.NUMBER}


def test_text_cells_are_stripped_and_carry_no_note(tmp_path: Path) -> None:
    path = workbook(tmp_path, {"S": [[" user_id "], ["  00123  "]]})
    table = read_table(path)
    assert table.columns == ("user_id",)
    assert list(table.rows) == [SourceRow(2, ("00123",), {})]


def test_formula_cells_give_their_cached_value_and_a_note(tmp_path: Path) -> None:
    path = tmp_path / "f.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("S")
    sheet.write_row(0, 0, ["user_id", "status"])
    sheet.write_string(1, 0, "u1")
    sheet.write_formula(1, 1, '=LOWER("ACTIVE")', None, "active")
    sheet.write_formula(2, 0, '="u"&"2"', None, "u2")
    sheet.write_string(2, 1, "=not a formula")
    book.close()
    assert list(read_table(path).rows) == [
        SourceRow(2, ("u1", "active"), {1: CellNote.FORMULA}),
        SourceRow(3, ("u2", "=not a formula"), {0: CellNote.FORMULA}),
    ]


def test_a_formula_never_calculated_reads_as_empty(tmp_path: Path) -> None:
    # openpyxl writes formulas without a cached value; nothing evaluates them.
    path = workbook(tmp_path, {"S": [["user_id", "status"], ["u1", "=1+1"]]})
    assert list(read_table(path).rows) == [SourceRow(2, ("u1", ""), {1: CellNote.FORMULA})]


def test_sheet_by_name_index_and_default(tmp_path: Path) -> None:
    path = workbook(
        tmp_path, {"First": [["user_id"], ["a"]], "Second": [["user_id"], ["b"], ["c"]]}
    )
    assert read_table(path).sheet == "First"
    assert [r.values for r in read_table(path, sheet=1).rows] == [("b",), ("c",)]
    assert read_table(path, sheet="Second").sheet == "Second"
    assert read_table(path, sheet="second").sheet == "Second"


def test_unknown_sheet_name_lists_the_sheets(tmp_path: Path) -> None:
    path = workbook(tmp_path, {"First": [["user_id"]], "Second": [["user_id"]]})
    assert_input_error(path, "no sheet named 'Users'; its sheets are 'First', 'Second'", "Users")


def test_sheet_index_out_of_range(tmp_path: Path) -> None:
    path = workbook(tmp_path, {"Only": [["user_id"]]})
    assert_input_error(path, "no sheet number 3 (numbered from 0; it has 1: 'Only')", 3)


def test_header_is_the_first_non_blank_row_and_row_numbers_are_the_sheets(tmp_path: Path) -> None:
    path = workbook(
        tmp_path,
        {"S": [[], [None, None], ["user_id", "status", None], ["u1", "active"], [], ["u2"]]},
    )
    table = read_table(path)
    assert table.header_row == 3
    assert table.columns == ("user_id", "status")
    assert rows_of(table) == [(4, ("u1", "active")), (6, ("u2", ""))]


def test_cells_right_of_the_header_are_ignored(tmp_path: Path) -> None:
    path = workbook(tmp_path, {"S": [["user_id", None, "status"], ["u1", "x", "active", "note"]]})
    table = read_table(path)
    assert table.columns == ("user_id", "column 2", "status")
    assert rows_of(table) == [(2, ("u1", "x", "active"))]


def test_a_row_with_values_only_right_of_the_header_is_blank(tmp_path: Path) -> None:
    path = workbook(tmp_path, {"S": [["user_id"], [None, "stray"], ["u1"]]})
    assert rows_of(read_table(path)) == [(3, ("u1",))]


def test_blank_sheet_has_no_header(tmp_path: Path) -> None:
    assert_input_error(workbook(tmp_path, {"Empty": []}), "sheet 'Empty' has no header row")


def test_header_only_sheet_has_zero_rows(tmp_path: Path) -> None:
    assert list(read_table(workbook(tmp_path, {"S": [["user_id"]]})).rows) == []


def test_uppercase_extension_is_fine(tmp_path: Path) -> None:
    path = workbook(tmp_path, {"S": [["user_id"], ["u1"]]}, name="IN.XLSX")
    assert rows_of(read_table(path)) == [(2, ("u1",))]


def test_text_file_named_xlsx(tmp_path: Path) -> None:
    assert_input_error(write(tmp_path, "u.xlsx", "user_id\nu1\n"), "give it a .csv extension")


def test_truncated_workbook(tmp_path: Path) -> None:
    data = workbook(tmp_path, {"S": [["user_id"], ["u1"]]}).read_bytes()
    assert_input_error(write(tmp_path, "cut.xlsx", data[: len(data) // 2]), "damaged")


def test_old_xls_renamed(tmp_path: Path) -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600 + "Workbook".encode("utf-16-le")
    assert_input_error(write(tmp_path, "u.xlsx", ole), "old-format Excel workbook (.xls)")


def test_password_protected_workbook(tmp_path: Path) -> None:
    ole = (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600 + "EncryptedPackage".encode("utf-16-le")
    )
    assert_input_error(write(tmp_path, "u.xlsx", ole), "password-protected")


def test_ods_renamed(tmp_path: Path) -> None:
    path = tmp_path / "u.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", "<x/>")
    assert_input_error(path, "OpenDocument spreadsheet (.ods)")


def test_a_zip_that_is_not_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "u.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "hi")
    assert_input_error(path, "not an Excel workbook")


def test_a_sheet_damaged_part_way_fails_while_reading_rows(tmp_path: Path) -> None:
    source = workbook(tmp_path, {"S": [["user_id"]] + [[f"u{i}"] for i in range(50)]})
    path = tmp_path / "broken.xlsx"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(path, "w") as new:
        for info in old.infolist():
            data = old.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = data[: len(data) // 2]
            new.writestr(info, data)
    table = read_table(path)
    with pytest.raises(InputError) as caught:
        list(table.rows)
    assert str(path) in str(caught.value)
    assert "sheet 'S' near row" in str(caught.value)


# --- hashing -----------------------------------------------------------------------------------


def test_file_sha256(tmp_path: Path) -> None:
    path = write(tmp_path, "u.csv", "user_id\nu1\n")
    assert file_sha256(path) == hashlib.sha256(b"user_id\nu1\n").hexdigest()


def test_file_sha256_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.csv"):
        file_sha256(tmp_path / "nope.csv")


def test_empty_trailing_cells_past_the_header_are_ignored(tmp_path: Path) -> None:
    text = ",,,,\nuser_id,status\nu1,active,,\nu2,inactive, ,\n,,,,,\n"
    assert rows_of(read_table(write(tmp_path, "u.csv", text))) == [
        (3, ("u1", "active")),
        (4, ("u2", "inactive")),
    ]


def test_far_too_many_cells_names_the_row(tmp_path: Path) -> None:
    path = write(tmp_path, "u.csv", "\nuser_id\nu1\n" + "u2" + "," * 20 + "x\n")
    with pytest.raises(InputError, match=r"row 4 has more cells than the header's 1"):
        list(read_table(path).rows)


def test_an_unclosed_quote_after_blank_lines_names_the_row(tmp_path: Path) -> None:
    path = write(tmp_path, "u.csv", '\n\nuser_id,reason\nu1,ok\nu2,"never closed\nu3,x\n')
    with pytest.raises(InputError, match=r"row 5 opens a double quote"):
        list(read_table(path).rows)


def test_excels_separator_hint_line_is_used_and_not_counted(tmp_path: Path) -> None:
    table = read_table(
        write(tmp_path, "u.csv", "sep=;\r\nuser_id;reason\r\nu1;a, b\r\n\r\nu2;c\r\n")
    )
    assert table.separator == ";"
    assert table.header_row == 1
    assert rows_of(table) == [(2, ("u1", "a, b")), (4, ("u2", "c"))]


def test_a_header_only_file_without_a_final_newline(tmp_path: Path) -> None:
    table = read_table(write(tmp_path, "u.csv", "user_id,status"))
    assert table.columns == ("user_id", "status")
    assert list(table.rows) == []


def test_sheet_index_given_as_text(tmp_path: Path) -> None:
    path = workbook(tmp_path, {"A": [["user_id"]], "B": [["user_id"]], "7": [["user_id"]]})
    assert read_table(path, sheet="1").sheet == "B"
    assert read_table(path, sheet="7").sheet == "7"


def test_formulas_are_found_even_when_the_sheet_part_cannot_be_located(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unusual package layout falls back to a slower second pass; the result is the same.
    from pcxbatch.read import ooxml

    monkeypatch.setattr(ooxml, "sheet_part", lambda path, title: None)
    path = workbook(tmp_path, {"S": [["user_id", "status"], ["u1", "=1+1"], ["u2", "x"]]})
    assert list(read_table(path).rows) == [
        SourceRow(2, ("u1", ""), {1: CellNote.FORMULA}),
        SourceRow(3, ("u2", "x"), {}),
    ]


def test_formulas_on_a_later_sheet_and_far_down(tmp_path: Path) -> None:
    book = xlsxwriter.Workbook(str(tmp_path / "f.xlsx"))
    book.add_worksheet("Notes").write_formula(0, 0, "=1", None, 1)
    sheet = book.add_worksheet("Users")
    sheet.write_row(0, 0, ["user_id", "status"])
    sheet.write_row(1, 0, ["u1", "active"])
    sheet.write_formula(4000, 27, "=1", None, 1)  # column AB, outside the table
    sheet.write_string(4000, 0, "u2")
    sheet.write_formula(4000, 1, '="active"', None, "active")
    book.close()
    rows = list(read_table(tmp_path / "f.xlsx", sheet="Users").rows)
    assert rows == [
        SourceRow(2, ("u1", "active"), {}),
        SourceRow(4001, ("u2", "active"), {1: CellNote.FORMULA}),
    ]


def test_importing_read_loads_neither_pandas_nor_openpyxl() -> None:
    # Every command imports the reader; only one that reads a file should pay for pandas and
    # openpyxl, so that `pcxbatch --help` answers at once. A fresh interpreter shows what the
    # import alone loads (this one has both loaded already).
    probe = "import sys, pcxbatch.read; print(sorted({'pandas', 'openpyxl'} & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


# --- which sheet ---------------------------------------------------------------------------------


def test_a_sheet_named_by_digits_wins_over_the_sheet_at_that_number(tmp_path: Path) -> None:
    path = workbook(tmp_path, {"1": [["user_id"], ["a"]], "2": [["user_id"], ["b"]], "3": [["x"]]})
    assert read_table(path, sheet="2").sheet == "2"
    assert [r.values for r in read_table(path, sheet="2").rows] == [("b",)]
    assert read_table(path, sheet=2).sheet == "3"  # a number stays a position
    assert read_table(path, sheet="0").sheet == "1"  # no sheet named "0": the first sheet
    assert read_table(path, sheet=" 2 ").sheet == "2"


def test_digits_naming_no_sheet_and_past_the_last_say_both(tmp_path: Path) -> None:
    path = workbook(tmp_path, {"1": [["user_id"]], "2": [["user_id"]]})
    assert_input_error(
        path,
        "has no sheet named '5' and no sheet number 5 (numbered from 0; it has 2: '1', '2')",
        "5",
    )


def test_digits_that_are_not_ascii_are_a_name(tmp_path: Path) -> None:
    path = workbook(tmp_path, {"A": [["user_id"]], "B": [["user_id"]]})
    assert_input_error(path, "has no sheet named '²'; its sheets are 'A', 'B'", "²")
    arabic_one = "\u0661"  # int() reads it as 1; a person typing it did not mean a position
    assert_input_error(path, f"has no sheet named '{arabic_one}'; its sheets are", arabic_one)


def test_a_hidden_sheet_named_by_digits_is_read_when_named(tmp_path: Path) -> None:
    path = workbook(tmp_path, {"1": [["user_id"], ["h"]], "A": [["user_id"]], "B": [["user_id"]]})
    book = openpyxl.load_workbook(path)
    book["1"].sheet_state = "hidden"
    book.save(path)
    assert read_table(path, sheet="1").sheet == "1"
    assert read_table(path, sheet=1).sheet == "B"  # positions count the visible sheets


def test_a_text_file_accepts_sheet_zero_as_text(tmp_path: Path) -> None:
    path = write(tmp_path, "u.csv", "user_id\nu1\n")
    assert rows_of(read_table(path, sheet="0")) == [(2, ("u1",))]
    assert_input_error(path, "is a text file with no sheets", "1")
