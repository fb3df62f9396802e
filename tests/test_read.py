"""read: what a user's CSV or workbook turns into, and how unusable files are reported."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcxbatch.errors import InputError
from pcxbatch.model import CellNote, SourceRow
from pcxbatch.read import HIDDEN_ROW_CHOICES, Table, file_sha256, read_table
from pcxbatch.read.common import BLOCK


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


def rewrite_sheet(path: Path, out: Path, change: Callable[[bytes], bytes]) -> Path:
    """A copy of workbook ``path`` at ``out`` whose first sheet's XML went through ``change``."""
    with zipfile.ZipFile(path) as old, zipfile.ZipFile(out, "w") as new:
        for info in old.infolist():
            content = old.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                content = change(content)
            new.writestr(info, content)
    return out


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
    from pcxbatch.read import workbook as workbook_module

    monkeypatch.setattr(workbook_module, "_sheet_part", lambda path, title, sheet: None)
    path = workbook(tmp_path, {"S": [["user_id", "status"], ["u1", "=1+1"], ["u2", "x"]]})
    assert list(read_table(path, hidden_rows="include").rows) == [
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


# --- hidden and filtered rows ------------------------------------------------------------------

REVIEW = [
    ["user_id", "status", "review"],
    ["u1", "inactive", "OK"],
    ["u2", "inactive", "REJECTED - false positive"],
    ["u3", "inactive", "OK"],
    ["u4", "inactive", "REJECTED - false positive"],
    ["u5", "inactive", "OK"],
]


def filtered_by_xlsxwriter(tmp_path: Path) -> Path:
    """A review sheet filtered to "OK" the way Excel saves it: the filter, and the rows it hides
    written hidden (xlsxwriter, like Excel, stores the hiding in each row)."""
    path = tmp_path / "filtered.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Review")
    for number, row in enumerate(REVIEW):
        sheet.write_row(number, 0, row)
        if row[2].startswith("REJECTED"):
            sheet.set_row(number, None, None, {"hidden": True})
    sheet.autofilter(0, 0, len(REVIEW) - 1, 2)
    sheet.filter_column_list(2, ["OK"])
    book.close()
    return path


def hidden_by_openpyxl(
    tmp_path: Path, hide: Sequence[int], rows: Sequence[Sequence[object]]
) -> Path:
    """A sheet whose rows ``hide`` (spreadsheet numbers) were hidden by hand (Format > Hide)."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Users"
    for row in rows:
        sheet.append(list(row))
    for number in hide:
        sheet.row_dimensions[number].hidden = True
    path = tmp_path / "hidden.xlsx"
    book.save(path)
    return path


def test_rows_hidden_by_a_filter_refuse_the_file_naming_them_and_the_way_out(
    tmp_path: Path,
) -> None:
    path = filtered_by_xlsxwriter(tmp_path)
    with pytest.raises(InputError) as caught:
        read_table(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: sheet 'Review' has 2 hidden rows"), message
    assert "(rows 3, 5)" in message
    assert "hidden_rows: skip" in message and "include" in message
    assert "--hidden-rows" in message
    assert "\n" not in message


def test_rows_hidden_by_hand_refuse_the_file(tmp_path: Path) -> None:
    path = hidden_by_openpyxl(tmp_path, [4], REVIEW)
    with pytest.raises(InputError, match=r"sheet 'Users' has 1 hidden row in the table \(row 4\)"):
        read_table(path)


def test_skipping_hidden_rows_reads_the_visible_ones_and_lists_the_skipped(
    tmp_path: Path,
) -> None:
    table = read_table(filtered_by_xlsxwriter(tmp_path), hidden_rows="skip")
    assert table.skipped_rows == (3, 5)
    assert rows_of(table) == [
        (2, ("u1", "inactive", "OK")),
        (4, ("u3", "inactive", "OK")),
        (6, ("u5", "inactive", "OK")),
    ]


def test_including_hidden_rows_reads_them_like_any_other(tmp_path: Path) -> None:
    table = read_table(filtered_by_xlsxwriter(tmp_path), hidden_rows="include")
    assert table.skipped_rows == ()
    assert [row.row for row in table.rows] == [2, 3, 4, 5, 6]


def test_hidden_rows_outside_the_table_are_no_problem(tmp_path: Path) -> None:
    # Hidden: blank rows above the header, the header itself, a blank row in the table, a row
    # with text only right of the header, and blank rows after the last data row.
    rows: list[list[object]] = [[], [], ["user_id", "status"], ["u1", "inactive"], [], ["u2"]]
    rows += [[None, None, "x"], ["u3"], *([] for _ in range(5))]
    path = hidden_by_openpyxl(tmp_path, [1, 2, 3, 5, 7, 9, 10, 11, 200], rows)
    table = read_table(path)
    assert table.skipped_rows == ()
    assert rows_of(table) == [(4, ("u1", "inactive")), (6, ("u2", "")), (8, ("u3", ""))]


def test_a_hidden_last_data_row_is_still_a_data_row(tmp_path: Path) -> None:
    path = hidden_by_openpyxl(tmp_path, [6], REVIEW)
    with pytest.raises(InputError, match=r"\(row 6\)"):
        read_table(path)


def test_many_hidden_rows_are_counted_and_the_first_ten_named(tmp_path: Path) -> None:
    rows = [["user_id"], *([f"u{n}"] for n in range(2, 40))]
    path = hidden_by_openpyxl(tmp_path, range(10, 40, 2), rows)
    with pytest.raises(InputError) as caught:
        read_table(path)
    message = str(caught.value)
    assert "has 15 hidden rows in the table (rows 10, 12, 14, 16, 18, 20, 22, 24, 26, 28" in message
    assert "28 and 5 more)" in message


def test_a_row_of_zero_height_is_hidden(tmp_path: Path) -> None:
    # Excel and xlsxwriter write a row given no height as hidden; other writers may leave it at
    # ht="0", which shows nothing either.
    def flatten(sheet: bytes) -> bytes:
        sheet = sheet.replace(b'<row r="3">', b'<row r="3" ht="0.0" customHeight="1">')
        return sheet.replace(b'<row r="4">', b'<row r="4" ht="0.5">')

    flat = rewrite_sheet(hidden_by_openpyxl(tmp_path, [], REVIEW), tmp_path / "flat.xlsx", flatten)
    assert read_table(flat, hidden_rows="skip").skipped_rows == (3,)


def test_hidden_rows_far_down_a_large_filtered_sheet_are_all_found(tmp_path: Path) -> None:
    # Enough rows that the sheet's XML is scanned in several blocks: none is missed or doubled.
    path = tmp_path / "large.xlsx"
    book = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    sheet = book.add_worksheet("Users")
    sheet.write_row(0, 0, ["user_id", "status", "review"])
    hidden = []
    for index in range(1, 12_000):
        reject = index % 7 == 0
        if reject:
            hidden.append(index + 1)
            sheet.set_row(index, None, None, {"hidden": True})
        sheet.write_row(index, 0, [f"u{index}", "inactive", "REJECTED" if reject else "OK"])
    sheet.autofilter(0, 0, 11_999, 2)
    book.close()
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("xl/worksheets/sheet1.xml").file_size > 2 * BLOCK
    table = read_table(path, hidden_rows="skip")
    assert table.skipped_rows == tuple(hidden)
    numbers = [row.row for row in table.rows]
    assert len(numbers) == 11_999 - len(hidden)
    assert not set(numbers) & set(hidden)


def test_hidden_rows_are_numbered_even_when_rows_carry_no_numbers(tmp_path: Path) -> None:
    # Some writers leave out the row and cell references ("r"); rows are then counted.
    def unnumber(sheet: bytes) -> bytes:
        head, rows = sheet.split(b"<sheetData>")
        return head + b"<sheetData>" + re.sub(rb' r="[A-Z]*[0-9]+"', b"", rows)

    bare = rewrite_sheet(filtered_by_xlsxwriter(tmp_path), tmp_path / "bare.xlsx", unnumber)
    with zipfile.ZipFile(bare) as archive:
        assert b' r="' not in archive.read("xl/worksheets/sheet1.xml").split(b"<sheetData>")[1]
    assert read_table(bare, hidden_rows="skip").skipped_rows == (3, 5)


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")
def test_rows_filtered_out_in_a_libreoffice_export_are_found(tmp_path: Path) -> None:
    # LibreOffice writes hidden="true" (and hidden="false" on every visible row) and hidden empty
    # rows as <row ...></row>.
    source = hidden_by_openpyxl(tmp_path, [3, 5, 12], REVIEW)
    out = tmp_path / "out"
    subprocess.run(
        ["soffice", "--headless", "--convert-to", "xlsx", "--outdir", str(out), str(source)],
        capture_output=True,
        check=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    exported = out / source.name
    with zipfile.ZipFile(exported) as archive:
        assert b'hidden="true"' in archive.read("xl/worksheets/sheet1.xml")
    assert read_table(exported, hidden_rows="skip").skipped_rows == (3, 5)
    with pytest.raises(InputError, match=r"\(rows 3, 5\)"):
        read_table(exported)


def test_hidden_rows_must_be_one_of_the_choices(tmp_path: Path) -> None:
    assert HIDDEN_ROW_CHOICES == ("refuse", "skip", "include")
    with pytest.raises(ValueError, match="hidden_rows"):
        read_table(write(tmp_path, "u.csv", "user_id\nu1\n"), hidden_rows="hide")


def test_a_text_file_has_no_hidden_rows(tmp_path: Path) -> None:
    table = read_table(write(tmp_path, "u.csv", "user_id\nu1\n"), hidden_rows="skip")
    assert table.skipped_rows == ()
    assert rows_of(table) == [(2, ("u1",))]


def test_a_sheet_whose_hidden_rows_cannot_be_told_is_refused_unless_included(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pcxbatch.read import workbook as workbook_module

    monkeypatch.setattr(workbook_module, "_sheet_part", lambda path, title, sheet: None)
    path = workbook(tmp_path, {"S": [["user_id"], ["u1"]]})
    with pytest.raises(InputError, match="cannot tell which rows of sheet 'S' are hidden"):
        read_table(path)
    assert rows_of(read_table(path, hidden_rows="include")) == [(2, ("u1",))]


def test_hidden_rows_are_found_where_openpyxl_found_the_sheet_if_the_package_is_unusual(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pcxbatch.read import ooxml

    monkeypatch.setattr(ooxml, "sheet_part", lambda path, title: None)
    assert read_table(filtered_by_xlsxwriter(tmp_path), hidden_rows="skip").skipped_rows == (3, 5)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    grid=st.lists(
        st.lists(st.sampled_from(["", " ", "u1", "x", None, 7]), max_size=5),
        min_size=1,
        max_size=14,
    ),
    hidden=st.sets(st.integers(1, 16)),
)
def test_skipped_rows_are_exactly_the_hidden_data_rows(
    tmp_path: Path, grid: list[list[object]], hidden: set[int]
) -> None:
    # Whatever the grid and whichever rows are hidden (blank, styled, right of the header, above
    # it, past the end): skipping leaves out exactly the hidden rows that including reads.
    path = tmp_path / "grid.xlsx"
    book = xlsxwriter.Workbook(str(path))
    styled = book.add_format({"bold": True})
    sheet = book.add_worksheet("Grid")
    for index, cells in enumerate(grid):
        for column, value in enumerate(cells):
            if value is None:
                sheet.write_blank(index, column, None, styled)
            else:
                sheet.write(index, column, value)
    for number in hidden:
        sheet.set_row(number - 1, None, None, {"hidden": True})
    book.close()
    try:
        everything = list(read_table(path, hidden_rows="include").rows)
    except InputError:
        return  # a blank sheet
    expected = tuple(row.row for row in everything if row.row in hidden)
    table = read_table(path, hidden_rows="skip")
    assert table.skipped_rows == expected
    assert list(table.rows) == [row for row in everything if row.row not in hidden]
    if expected:
        with pytest.raises(InputError, match="hidden row"):
            read_table(path)
    else:
        assert list(read_table(path).rows) == everything


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
