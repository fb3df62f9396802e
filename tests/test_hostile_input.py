"""Hostile input files: whatever a file holds, reading and checking it ends in rows or in one
clear ``InputError``; never another exception (which the command line would show as a
traceback), and never a request (nothing here has a client to send one with).

The files are random bytes, mutated real CSV and XLSX files, and spreadsheets with the quirks
people send: odd encodings, huge cells, thousands of columns, repeated or empty headers, merged
cells, hidden sheets, encrypted workbooks, other formats renamed to ``.xlsx``.
"""

from __future__ import annotations

import codecs
import io
import os
import random
import zipfile
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcxbatch import read as read_module
from pcxbatch.errors import InputError
from pcxbatch.model import Item, RowDefaults
from pcxbatch.read import read_table
from pcxbatch.validate import check_rows, resolve_columns

DEFAULTS = RowDefaults(updated_by="ops")
# PCX_FUZZ_EXAMPLES=2000 makes a long bug hunt; the default keeps the suite quick.
FUZZ = settings(
    max_examples=int(os.environ.get("PCX_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def consume(path: Path, sheet: str | int | None = None) -> list[Item] | InputError:
    """Read and check ``path`` as a run would; return the items, or the InputError it raised.

    Any other exception fails the test: it is what a user would see as a traceback.
    """
    try:
        table = read_table(path, sheet=sheet)
        columns = resolve_columns(table.columns, str(path))
        items = list(check_rows(table.rows, columns, DEFAULTS))
    except InputError as exc:
        assert_clear(exc, path)
        return exc
    for item in items:
        assert item.row > table.header_row
    assert [i.row for i in items] == sorted({i.row for i in items})
    return items


def assert_clear(exc: InputError, path: Path) -> None:
    """One line, for a person: names the file, not a dump of its contents."""
    message = str(exc)
    assert message.startswith(str(path)), message
    assert "\n" not in message and "\r" not in message, message
    assert len(message) < 1200, message[:300]


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- sample files to mutate --------------------------------------------------------------------

CSV_SAMPLE = (
    b"User ID;Status;Reason;Updated By\r\n"
    b"00123;inactive;fraud;ops\r\n"
    b'1.23457E+14;active;"multi\nline";\r\n'
    b'u-9;rejected;=HYPERLINK("x");ops\r\n'
)


def _openpyxl_book() -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Hits"
    sheet.append(["User ID", "Status", "Reason"])
    sheet.append(["u1", "inactive", "fraud"])
    sheet.append([123456789012345678, "active", None])
    sheet.append(['=CONCAT("u",2)', "=A1", 3.5])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _xlsxwriter_book() -> bytes:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    sheet = book.add_worksheet("Data")
    sheet.write_row(0, 0, ["user_id", "status", "updated_by"])
    for n in range(1, 30):
        sheet.write_row(n, 0, [f"user-{n}", "inactive", "ops"])
    sheet.write_formula(30, 0, '="u"&"x"', None, "ux")
    sheet.write_number(31, 0, 1234567)
    sheet.merge_range(32, 1, 33, 1, "inactive")
    book.close()
    return buffer.getvalue()


def _plain_book() -> bytes:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    sheet = book.add_worksheet("Plain")
    sheet.write_row(0, 0, ["user_id", "status"])
    sheet.write_row(1, 0, ["u1", "inactive"])
    book.close()
    return buffer.getvalue()


XLSX_SAMPLES = (_openpyxl_book(), _xlsxwriter_book())
PLAIN_XLSX = _plain_book()


def _rezip(data: bytes, change: Callable[[str, bytes], bytes]) -> bytes:
    """``data`` (a zip) with every member passed through ``change(name, content)``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as old, zipfile.ZipFile(out, "w") as new:
        for info in old.infolist():
            new.writestr(info, change(info.filename, old.read(info.filename)))
    return out.getvalue()


def _mutate(data: bytes, seed: int, edits: int) -> bytes:
    """Flip, insert or delete a few bytes at random places."""
    rng = random.Random(seed)
    buffer = bytearray(data)
    for _ in range(edits):
        if not buffer:
            break
        at = rng.randrange(len(buffer))
        kind = rng.randrange(3)
        if kind == 0:
            buffer[at] = rng.randrange(256)
        elif kind == 1:
            buffer[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        else:
            del buffer[at : at + rng.randrange(1, 8)]
    return bytes(buffer)


EXTENSIONS = st.sampled_from([".csv", ".txt", ".tsv", ".xlsx", ".xlsm", ".CSV", ".XLSX"])


# --- random and mutated bytes ------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=2000), suffix=EXTENSIONS)
def test_random_bytes_under_any_name(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, suffix: str
) -> None:
    consume(write(tmp_path_factory.mktemp("f"), "in" + suffix, data))


@FUZZ
@given(
    seed=st.integers(0, 2**32),
    edits=st.integers(1, 12),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16", "latin-1", "utf-32"]),
    cut=st.none() | st.integers(0, len(CSV_SAMPLE) * 2),
)
def test_mutated_csv(
    tmp_path_factory: pytest.TempPathFactory, seed: int, edits: int, encoding: str, cut: int | None
) -> None:
    data = CSV_SAMPLE.decode().encode(encoding, errors="replace")
    data = _mutate(data, seed, edits)[:cut]
    consume(write(tmp_path_factory.mktemp("f"), "in.csv", data))


@FUZZ
@given(
    sample=st.sampled_from(XLSX_SAMPLES),
    seed=st.integers(0, 2**32),
    edits=st.integers(0, 6),
    cut=st.none() | st.integers(0, 20_000),
)
def test_mutated_xlsx_bytes(
    tmp_path_factory: pytest.TempPathFactory,
    sample: bytes,
    seed: int,
    edits: int,
    cut: int | None,
) -> None:
    data = _mutate(sample, seed, edits)[:cut]
    consume(write(tmp_path_factory.mktemp("f"), "in.xlsx", data))


@FUZZ
@given(
    sample=st.sampled_from(XLSX_SAMPLES),
    seed=st.integers(0, 2**32),
    edits=st.integers(1, 10),
    target=st.sampled_from(["sheet", "workbook.xml", "sharedStrings", "rels", "Content_Types"]),
)
def test_mutated_xml_inside_a_valid_zip(
    tmp_path_factory: pytest.TempPathFactory, sample: bytes, seed: int, edits: int, target: str
) -> None:
    def change(name: str, content: bytes) -> bytes:
        return _mutate(content, seed, edits) if target in name else content

    consume(write(tmp_path_factory.mktemp("f"), "in.xlsx", _rezip(sample, change)))


# --- structured hostile content ----------------------------------------------------------------

CELL_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(list(',;\t"\r\n =+-@\x00\x1b\ufeff\u202e')),
    ),
    max_size=30,
)
HEADER_NAMES = st.one_of(
    st.sampled_from(["user_id", "User ID", "status", "Status", "", "  ", "reason", "action"]),
    CELL_TEXT,
)


@FUZZ
@given(
    header=st.lists(HEADER_NAMES, min_size=1, max_size=8),
    body=st.lists(st.lists(CELL_TEXT, max_size=10), max_size=12),
    separator=st.sampled_from([",", ";", "\t", "|"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]),
    line_end=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_arbitrary_csv_grids(
    tmp_path_factory: pytest.TempPathFactory,
    header: list[str],
    body: list[list[str]],
    separator: str,
    encoding: str,
    line_end: str,
) -> None:
    lines = [separator.join(cells) for cells in [header, *body]]
    data = line_end.join(lines).encode(encoding, errors="replace")
    result = consume(write(tmp_path_factory.mktemp("f"), "in.csv", data))
    if not isinstance(result, InputError):
        assert all(isinstance(item.user_id, str) for item in result)


_XML_UNSAFE = {chr(c) for c in range(32) if chr(c) not in "\t\n\r"} | {"\ufffe", "\uffff"}
XLSX_CELL = st.one_of(
    CELL_TEXT.map(
        lambda s: "".join(c for c in s if c not in _XML_UNSAFE and not 0xD800 <= ord(c) <= 0xDFFF)
    ),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.sampled_from(["=1/0", "=A1", "=NOW()", '="u"&1', "#N/A"]),
)


@FUZZ
@given(
    header=st.lists(HEADER_NAMES, min_size=1, max_size=6),
    body=st.lists(st.lists(XLSX_CELL, max_size=8), max_size=10),
)
def test_arbitrary_xlsx_grids(
    tmp_path_factory: pytest.TempPathFactory, header: list[str], body: list[list[object]]
) -> None:
    path = tmp_path_factory.mktemp("f") / "in.xlsx"
    book = xlsxwriter.Workbook(str(path), {"nan_inf_to_errors": True})
    sheet = book.add_worksheet()
    clean_header = [
        "".join(c for c in h if c not in _XML_UNSAFE and not 0xD800 <= ord(c) <= 0xDFFF)
        for h in header
    ]
    sheet.write_row(0, 0, clean_header)
    for number, cells in enumerate(body, start=1):
        for column, value in enumerate(cells):
            if isinstance(value, str) and value.startswith("="):
                sheet.write_formula(number, column, value)
            elif isinstance(value, str):
                sheet.write_string(number, column, value)
            elif value is not None:
                sheet.write(number, column, value)
    book.close()
    consume(path)


# --- shapes that stress size -------------------------------------------------------------------


def test_thousands_of_columns_and_a_huge_cell(tmp_path: Path) -> None:
    header = ["user_id", *(f"c{i}" for i in range(5000))]
    row = ["u1", *("x" for _ in range(5000))]
    huge = "y" * 2_000_000
    text = ",".join(header) + "\n" + ",".join(row) + "\n" + f"u2,{huge}\n"
    items = consume(write(tmp_path, "wide.csv", text.encode()))
    assert not isinstance(items, InputError)
    assert [i.user_id for i in items] == ["u1", "u2"]


def test_a_huge_user_id_cell_is_invalid_with_a_short_message(tmp_path: Path) -> None:
    items = consume(write(tmp_path, "big.csv", b"user_id,status\n" + b"9" * 500_000 + b",active\n"))
    assert not isinstance(items, InputError)
    (item,) = items
    assert item.outcome == "invalid"
    assert len(item.message) < 400


def test_a_huge_header_cell_is_one_clear_error_or_a_column(tmp_path: Path) -> None:
    data = b"user_id," + b"h" * 300_000 + b"\nu1,x\n"
    result = consume(write(tmp_path, "hdr.csv", data))
    assert not isinstance(result, InputError) or "h" * 1000 not in str(result)


def test_no_user_id_column_among_thousands_lists_only_a_few(tmp_path: Path) -> None:
    header = ",".join(f"column number {i} " + "z" * 200 for i in range(3000))
    result = consume(write(tmp_path, "none.csv", (header + "\n1\n").encode()))
    assert isinstance(result, InputError)
    assert "no user ID column" in str(result)
    assert "3000 columns" in str(result)


def test_thousands_of_columns_in_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "wide.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, ["user_id", *(f"c{i}" for i in range(3000))])
    sheet.write_row(1, 0, ["u1", *(str(i) for i in range(3000))])
    book.close()
    items = consume(path)
    assert not isinstance(items, InputError)
    assert [i.user_id for i in items] == ["u1"]


@pytest.mark.parametrize(
    "header",
    [
        "user_id,user_id\nu1,u2\n",
        "User ID,userId\nu1,u2\n",
        ",,\nu1,u2,u3\n",
        "status,status\nactive,inactive\n",
        ",,user_id,,\n,,u1,,\n",
    ],
)
def test_duplicate_and_empty_headers(tmp_path: Path, header: str) -> None:
    consume(write(tmp_path, "h.csv", header.encode()))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252", "utf-16", "utf-32"])
def test_odd_encodings_are_read(tmp_path: Path, encoding: str) -> None:
    text = "user_id,reason\nu1,Müller \u2013 café\nu2,naïve\n"
    result = consume(write(tmp_path, "enc.csv", text.encode(encoding)))
    assert not isinstance(result, InputError), result
    assert [i.user_id for i in result] == ["u1", "u2"]
    assert result[0].reason == "Müller \u2013 café"


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le"])
def test_text_without_a_byte_order_mark_is_refused_with_a_hint(
    tmp_path: Path, encoding: str
) -> None:
    result = consume(write(tmp_path, "enc.csv", "user_id\nu1\n".encode(encoding)))
    assert isinstance(result, InputError)
    assert "UTF-16" in str(result) and "CSV UTF-8" in str(result)


# --- workbooks with features ---------------------------------------------------------------------


def test_a_hidden_first_sheet_is_not_read_by_default(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    hidden = book.active
    hidden.title = "old list"
    hidden.append(["user_id"])
    hidden.append(["someone-else"])
    hidden.sheet_state = "hidden"
    shown = book.create_sheet("Hits")
    shown.append(["user_id"])
    shown.append(["u1"])
    book.active = 1
    path = tmp_path / "hidden.xlsx"
    book.save(path)
    table = read_table(path)
    assert table.sheet == "Hits"
    assert [r.values for r in table.rows] == [("u1",)]


def test_a_hidden_sheet_named_on_purpose_is_read(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    book.active.title = "Front"
    book.active.append(["user_id"])
    secret = book.create_sheet("Back")
    secret.append(["user_id"])
    secret.append(["u2"])
    secret.sheet_state = "veryHidden"
    path = tmp_path / "hidden.xlsx"
    book.save(path)
    assert [r.values for r in read_table(path, sheet="Back").rows] == [("u2",)]


def test_a_workbook_whose_sheets_are_all_hidden(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    book.active.append(["user_id"])
    book.active.append(["u1"])
    buffer = io.BytesIO()
    book.save(buffer)

    def hide(name: str, content: bytes) -> bytes:
        # Excel and openpyxl refuse to hide the last visible sheet; a crafted file does not.
        if name == "xl/workbook.xml":
            return content.replace(b"<sheet ", b'<sheet state="hidden" ')
        return content

    path = write(tmp_path, "allhidden.xlsx", _rezip(buffer.getvalue(), hide))
    result = consume(path)
    assert isinstance(result, InputError) and "hidden" in str(result)


def test_merged_cells_in_the_data_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "merged.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Hits")
    sheet.write_row(0, 0, ["user_id", "status"])
    for n in range(1, 5):
        sheet.write_string(n, 0, f"u{n}")
    sheet.merge_range(1, 1, 4, 1, "inactive")  # one "inactive" shown beside four users
    book.close()
    result = consume(path)
    assert isinstance(result, InputError)
    assert "merged" in str(result) and "B2:B5" in str(result)


def test_merged_cells_above_the_header_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "title.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Hits")
    sheet.merge_range(0, 0, 0, 3, "Sanctions hits, March")
    sheet.write_row(2, 0, ["user_id", "status"])
    sheet.write_row(3, 0, ["u1", "inactive"])
    sheet.merge_range(3, 5, 6, 6, "a remark far right of the table")
    book.close()
    # The title row is the first non-blank row, so it is the header: a clear error, not rows
    # that mean something else.
    result = consume(path)
    assert isinstance(result, InputError)


def test_merged_cells_right_of_the_table_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "side.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Hits")
    sheet.write_row(0, 0, ["user_id", "status"])
    sheet.write_row(1, 0, ["u1", "inactive"])
    sheet.write_row(2, 0, ["u2", "inactive"])
    sheet.merge_range(1, 4, 2, 5, "a remark beside the table")
    book.close()
    items = consume(path)
    assert not isinstance(items, InputError)
    assert [i.user_id for i in items] == ["u1", "u2"]


def _ole(stream: str) -> bytes:
    return b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600 + stream.encode("utf-16-le")


def _numbers_file() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("Index/Document.iwa", b"\x00\x01")
        archive.writestr("Metadata/Properties.plist", b"bplist00")
        archive.writestr("preview.jpg", b"\xff\xd8")
    return out.getvalue()


def _ods_file() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", "<x/>")
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (_ole("EncryptedPackage"), "password-protected"),
        (_ole("Workbook"), "old-format Excel workbook (.xls)"),
        (_ods_file(), "OpenDocument"),
        (_numbers_file(), "Apple Numbers"),
        (b"%PDF-1.7\n...", "not an Excel workbook"),
        (codecs.BOM_UTF8 + b"user_id\nu1\n", "not an Excel workbook"),
    ],
)
def test_other_formats_renamed_to_xlsx_say_what_they_are(
    tmp_path: Path, data: bytes, said: str
) -> None:
    result = consume(write(tmp_path, "renamed.xlsx", data))
    assert isinstance(result, InputError)
    assert said in str(result)


def test_a_sheet_protected_with_a_password_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "protected.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, ["user_id"])
    sheet.write_row(1, 0, ["u1"])
    sheet.protect("secret")
    book.close()
    items = consume(path)
    assert not isinstance(items, InputError)
    assert [i.user_id for i in items] == ["u1"]


# --- size limit ----------------------------------------------------------------------------------


def test_a_file_over_the_size_limit_is_refused_saying_how_to_raise_it(tmp_path: Path) -> None:
    path = write(tmp_path, "big.csv", b"user_id\n" + b"u1\n" * 1000)
    with pytest.raises(InputError) as caught:
        read_table(path, max_bytes=1000)
    message = str(caught.value)
    assert "3.0 kB" in message or "3,008 bytes" in message, message
    assert "max_bytes" in message


def test_the_default_size_limit(tmp_path: Path) -> None:
    assert read_module.MAX_INPUT_BYTES == 200 * 1000 * 1000
    path = write(tmp_path, "ok.csv", b"user_id\nu1\n")
    assert [r.values for r in read_table(path, max_bytes=None).rows] == [("u1",)]


def test_a_workbook_that_unpacks_past_the_limit_is_refused(tmp_path: Path) -> None:
    def pad(name: str, content: bytes) -> bytes:
        # Whitespace between elements is valid XML and compresses about a thousand times.
        if name == "xl/worksheets/sheet1.xml":
            return content.replace(b"<sheetData>", b"<sheetData>" + b" " * 5_000_000)
        return content

    path = write(tmp_path, "bomb.xlsx", _rezip(XLSX_SAMPLES[0], pad))
    size = path.stat().st_size
    assert size < 100_000
    with pytest.raises(InputError) as caught:
        read_table(path, max_bytes=size * 2)  # the file fits, what it unpacks to does not
    assert "unpacks to 5.0 MB" in str(caught.value)
    assert "max_bytes" in str(caught.value)
    assert [r.values[0] for r in read_table(path).rows][:1] == ["u1"]


def _with_part(tmp_path: Path, name: str, unpacked: int, padding: int = 0) -> Path:
    """PLAIN_XLSX, whose one visible row is intact, with part ``name`` made to unpack to
    ``unpacked`` more bytes of one letter (a thousand times what they take in the file): in a
    shared string added to the shared strings, which stay valid XML, or as the whole of any other
    part. ``padding`` bytes of noise in a picture make the file larger, as pictures do."""
    path = tmp_path / "parts.xlsx"
    with zipfile.ZipFile(io.BytesIO(PLAIN_XLSX)) as old, zipfile.ZipFile(path, "w") as new:
        contents = {info.filename: old.read(info) for info in old.infolist()}
        strings = name == "xl/sharedStrings.xml"
        head, end = contents.pop(name).rsplit(b"</sst>", 1) if strings else (b"", b"")
        for member, content in contents.items():
            new.writestr(member, content)
        if padding:
            new.writestr("xl/media/image1.png", random.Random(0).randbytes(padding))
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with new.open(info, "w") as part:
            part.write(head + b"<si><t>" if strings else b"")
            chunk = b"A" * (1 << 20)
            for _ in range(unpacked // len(chunk)):
                part.write(chunk)
            part.write(b"</t></si></sst>" + end if strings else b"")
    return path


def test_a_part_that_unpacks_far_past_the_file_is_refused_before_anything_is_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A user's file: 2.4 MB on disk, one visible row, shared strings unpacking to 1 GB; this
    # one is the same at a smaller scale. Nothing of it may be parsed: openpyxl holds the shared
    # strings in memory whole.
    path = _with_part(tmp_path, "xl/sharedStrings.xml", 120 << 20)
    size = path.stat().st_size
    assert size < 1_000_000
    whole = read_module.MAX_INPUT_BYTES * read_module.UNPACKED_PER_BYTE
    assert whole > 130 << 20  # the package in all is within bounds: only the part is not

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the workbook was opened")

    monkeypatch.setattr(openpyxl, "load_workbook", never)
    with pytest.raises(InputError) as caught:
        read_table(path)
    message = str(caught.value)
    assert_clear(caught.value, path)
    assert "part xl/sharedStrings.xml unpacks to 125.8 MB" in message, message
    assert "more than the 50.0 MB any one part" in message


def test_the_bound_on_a_part_grows_with_the_file(tmp_path: Path) -> None:
    # A 2 MB file (of pictures, mostly) may have a part of up to 50 times that. The large part
    # here is one nothing parses, so that only the bound is tried.
    assert read_module.PART_PER_FILE_BYTE * 2_000_000 == 2 * read_module.PART_FLOOR_BYTES
    fits = _with_part(tmp_path, "xl/media/image2.bmp", 80 << 20, padding=2_000_000)
    assert [r.values for r in read_table(fits).rows] == [("u1", "inactive")]
    path = _with_part(tmp_path, "xl/media/image2.bmp", 120 << 20, padding=2_000_000)
    limit = read_module.PART_PER_FILE_BYTE * path.stat().st_size
    with pytest.raises(InputError) as caught:
        read_table(path)
    assert f"unpacks to 125.8 MB, more than the {limit / 1e6:.1f} MB" in str(caught.value)


def test_a_part_claiming_to_unpack_to_a_gigabyte_is_refused_from_the_zip_directory(
    tmp_path: Path,
) -> None:
    # The zip's directory is believed (zipfile stops unpacking a part at the size it declares),
    # so a part is judged by it without being unpacked at all.
    data = bytearray(PLAIN_XLSX)
    name = b"xl/sharedStrings.xml"
    entry = data.find(b"PK\x01\x02")  # the central directory's entries, one after another
    while data[entry + 46 : entry + 46 + len(name)] != name:
        entry = data.find(b"PK\x01\x02", entry + 4)
        assert entry != -1
    data[entry + 24 : entry + 28] = (1 << 30).to_bytes(4, "little")  # its unpacked size
    path = write(tmp_path, "claims.xlsx", bytes(data))
    with pytest.raises(InputError, match=r"part xl/sharedStrings\.xml unpacks to 1\.1 GB"):
        read_table(path)


def test_dense_real_workbooks_are_well_inside_the_bound_on_a_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The densest sheets spreadsheets write (the same text in every cell of many rows) unpack
    # to some 20 times the file. With the floor out of the way, the ratio alone must admit them.
    monkeypatch.setattr(read_module, "PART_FLOOR_BYTES", 100_000)
    path = tmp_path / "dense.xlsx"
    book = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    sheet = book.add_worksheet("Users")
    sheet.write_row(0, 0, ["user_id", "status"] + [f"flag {n}" for n in range(28)])
    for row in range(1, 8000):
        sheet.write_row(row, 0, [f"u{row:07d}", "inactive"] + ["x"] * 28)
    book.close()
    with zipfile.ZipFile(path) as archive:
        largest = max(info.file_size for info in archive.infolist())
    ratio = largest / path.stat().st_size
    assert 10 < ratio < read_module.PART_PER_FILE_BYTE / 2, ratio
    table = read_table(path)
    assert next(table.rows).values[:2] == ("u0000001", "inactive")


# --- crafted workbook XML ------------------------------------------------------------------------

_LAUGHS = b"".join(
    [
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "lollollollollollollollollollol">',
        *(f'<!ENTITY {chr(98 + n)} "{("&" + chr(97 + n) + ";") * 10}">'.encode() for n in range(8)),
        b"]>",
    ]
)


@pytest.mark.parametrize("part", ["sharedStrings", "sheet1"])
def test_entity_expansion_is_refused_quickly(tmp_path: Path, part: str) -> None:
    def explode(name: str, content: bytes) -> bytes:
        if part not in name:
            return content
        body = content.split(b"?>", 1)[1]
        return _LAUGHS + body.replace(b"<t>user_id</t>", b"<t>&i;</t>", 1).replace(
            b"<sheetData>",
            b'<sheetData><row r="1"><c r="D1" t="inlineStr"><is><t>&i;</t></is></c></row>',
            1,
        )

    path = write(tmp_path, "laughs.xlsx", _rezip(PLAIN_XLSX, explode))
    result = consume(path)
    assert isinstance(result, InputError)
    assert "damaged" in str(result) or "cannot be read" in str(result)


def test_a_row_number_past_the_last_row_of_a_sheet_is_refused(tmp_path: Path) -> None:
    def far(name: str, content: bytes) -> bytes:
        if name == "xl/worksheets/sheet1.xml":
            far_row = (
                b'<row r="2000000000"><c r="A2000000000" t="inlineStr"><is><t>u9</t></is></c></row>'
            )
            return content.replace(b"</sheetData>", far_row + b"</sheetData>")
        return content

    assert [r.values for r in read_table(write(tmp_path, "ok.xlsx", PLAIN_XLSX)).rows] == [
        ("u1", "inactive")
    ]
    result = consume(write(tmp_path, "far.xlsx", _rezip(PLAIN_XLSX, far)))
    assert isinstance(result, InputError)
    assert "past row 1,048,576" in str(result)
