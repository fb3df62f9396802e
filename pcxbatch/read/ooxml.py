"""The checks :mod:`pcxbatch.read` makes on a workbook's zip and XML directly, before and beside
openpyxl: standard library only.

In: the path of a file named ``.xlsx``/``.xlsm`` (and, for a sheet, its name and its zip member).
Out: what the package really is and how large each of its parts unpacks (:func:`package_parts`),
which zip member holds a sheet (:func:`sheet_part`), whether that sheet has formulas, which cells
it merges and which of its rows are hidden (:func:`scan_sheet`, :func:`merges_in_table`), and
where its formula cells are (:func:`formula_cells`).

Why not leave it all to openpyxl: it would unpack a zip bomb before noticing, it gives a cell's
formula or its cached value but never both (so finding formulas through it means reading the
sheet twice), and its read-only mode reports neither merged cells nor hidden rows. The XML is
parsed by expat with document type declarations refused, so no entity can expand.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.parsers import expat

from pcxbatch.errors import InputError
from pcxbatch.read.common import BLOCK, OLE_MAGIC, SAVE_AS, ZIP_MAGIC, damaged_workbook

# Office writes an encrypted workbook as an OLE file holding a stream of this (UTF-16) name.
_ENCRYPTED_STREAM = "EncryptedPackage".encode("utf-16-le")
# A formula element, with or without a namespace prefix; text cannot contain a raw "<".
_FORMULA_TAG = re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?f[\s/>]")
# A merged range in a sheet part: <mergeCell ref="B2:B5"/> (its only attribute).
_MERGE_REF = re.compile(
    rb"<(?:[A-Za-z_][\w.\-]*:)?mergeCell\s[^>]*?\bref\s*=\s*[\"']([A-Za-z]{1,3}[0-9]{1,7}"
    rb"(?::[A-Za-z]{1,3}[0-9]{1,7})?)[\"']"
)
_CELL_RANGE = re.compile(r"([A-Z]{1,3})([0-9]+)(?::([A-Z]{1,3})([0-9]+))?")
# A hidden row's start tag: hidden="1" (Excel, also for the rows a filter hides) or "true"
# (LibreOffice), or a height of zero, which shows nothing either. Group 1: its attributes.
_HIDDEN_ROW = re.compile(
    rb"<(?:[A-Za-z_][\w.\-]*:)?row(?=[\s/>])([^>]*?(?<![\w:.\-])"
    rb"(?:hidden\s*=\s*[\"']\s*(?:1|(?i:true))\s*[\"']"
    rb"|ht\s*=\s*[\"']\s*\+?(?:0+\.?0*|\.0+)(?:[eE][+-]?[0-9]+)?\s*[\"'])[^>]*)>"
)
_ROW_NUMBER = re.compile(rb"(?<![\w:.\-])r\s*=\s*[\"']\s*([0-9]{1,10})\s*[\"']")
# How much of a block is scanned again with the next: longer than any real tag, so that a tag cut
# by the end of a block is found whole in the next.
_OVERLAP = 1024


# --- what the package is -----------------------------------------------------------------------


def package_parts(path: Path) -> list[tuple[str, int]]:
    """Each part of the workbook with the size it unpacks to, as the zip's central directory
    says (nothing is unpacked: zipfile never unpacks a part past that size), once the file is
    known to be an Excel workbook: a file that only pretends to be one raises ``InputError``
    saying what it really is, and so does a damaged one."""
    try:
        _check_head(path)
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            _check_members(path, archive, {info.filename for info in infos})
            return [(info.filename, info.file_size) for info in infos]
    except InputError:
        raise
    except Exception as exc:  # zipfile, zlib and the OS meet damaged files in many ways
        raise damaged_workbook(path, exc) from exc


def _check_head(path: Path) -> None:
    """Refuse an OLE file (an old .xls, or an encrypted workbook) and anything else not a zip."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        if head.startswith(OLE_MAGIC):
            if _contains(handle, _ENCRYPTED_STREAM):
                raise InputError(
                    f"{path}: the workbook is password-protected; open it in Excel, "
                    "remove the password (File > Info > Protect Workbook) and save it again"
                )
            raise InputError(
                f"{path}: is an old-format Excel workbook (.xls) with an .xlsx name; {SAVE_AS}"
            )
    if not head.startswith(ZIP_MAGIC):
        raise InputError(
            f"{path}: is not an Excel workbook (an .xlsx file is a zip archive); "
            "if it is CSV text, give it a .csv extension"
        )


def _check_members(path: Path, archive: zipfile.ZipFile, members: set[str]) -> None:
    """Refuse a zip whose members show another kind of file: OpenDocument, Numbers, Word, ..."""
    if "mimetype" in members and _head_of(archive, "mimetype").startswith(
        b"application/vnd.oasis.opendocument"
    ):
        raise InputError(
            f"{path}: is an OpenDocument spreadsheet (.ods) with an .xlsx name; {SAVE_AS}"
        )
    if any(name.startswith("Index/") and name.endswith(".iwa") for name in members):
        raise InputError(
            f"{path}: is an Apple Numbers file (.numbers) with an .xlsx name; "
            "in Numbers, use File > Export To > Excel (or CSV)"
        )
    if "[Content_Types].xml" not in members:
        raise InputError(f"{path}: is a zip archive but not an Excel workbook")
    if not any(name.startswith("xl/") for name in members):
        raise InputError(f"{path}: is {_office_kind(members)}, not an Excel workbook")
    if "xl/workbook.bin" in members:
        raise InputError(
            f"{path}: is a binary Excel workbook (.xlsb) with an .xlsx name; {SAVE_AS}"
        )


def _head_of(archive: zipfile.ZipFile, member: str) -> bytes:
    """The first bytes of a part, unpacking no more of it, whatever size it claims."""
    with archive.open(member) as source:
        return source.read(64)


def _office_kind(members: set[str]) -> str:
    """What an Office package without a workbook in it is, as a person would say it."""
    if "word/document.xml" in members:
        return "a Word document"
    if "ppt/presentation.xml" in members:
        return "a PowerPoint presentation"
    return "an Office file"


def _contains(handle: io.BufferedReader, needle: bytes) -> bool:
    """Whether the rest of ``handle`` holds ``needle``, read in blocks (memory stays flat)."""
    tail = b""
    while block := handle.read(BLOCK):
        if needle in tail + block:
            return True
        tail = block[-len(needle) :]
    return False


# --- where a sheet is --------------------------------------------------------------------------


def sheet_part(path: Path, title: str) -> str | None:
    """The zip member holding sheet ``title``, found as the OOXML package says; ``None`` if not."""
    try:
        with zipfile.ZipFile(path) as archive:
            book_part = _relationship_targets(archive, "_rels/.rels", "", by="Type").get(
                "officeDocument"
            )
            if book_part is None:
                return None
            folder, name = posixpath.split(book_part)
            targets = _relationship_targets(
                archive, posixpath.join(folder, "_rels", name + ".rels"), folder, by="Id"
            )
            for tag, attributes in _xml_elements(archive.read(book_part)):
                if _local(tag) != "sheet" or attributes.get("name") != title:
                    continue
                for key, value in attributes.items():
                    if _local(key) == "id" and "}" in key:
                        return targets.get(value)
    except Exception:  # a damaged package: openpyxl's slower way still finds the formulas
        return None
    return None


def _relationship_targets(
    archive: zipfile.ZipFile, rels_part: str, folder: str, *, by: str
) -> dict[str, str]:
    """Targets of a .rels part keyed by Id, or by the last word of their Type."""
    targets: dict[str, str] = {}
    for tag, attributes in _xml_elements(archive.read(rels_part)):
        target = attributes.get("Target", "")
        if _local(tag) != "Relationship" or attributes.get("TargetMode") == "External":
            continue
        if not target:
            continue
        if target.startswith("/"):
            member = target.lstrip("/")
        else:
            member = posixpath.normpath(posixpath.join(folder, target))
        key = attributes.get(by, "")
        targets[key.rsplit("/", 1)[-1] if by == "Type" else key] = member
    return targets


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml_parser() -> expat.XMLParserType:
    """An expat parser that names elements ``{namespace}local`` and refuses any DTD: OOXML parts
    never have one, and refusing it rules out entity-expansion attacks."""
    parser = expat.ParserCreate(namespace_separator="}")

    def no_dtd(*_: object) -> None:
        raise expat.ExpatError("a document type declaration is not allowed here")

    parser.StartDoctypeDeclHandler = no_dtd
    parser.EntityDeclHandler = no_dtd
    return parser


def _xml_elements(data: bytes) -> list[tuple[str, dict[str, str]]]:
    """Every start tag of a small XML document, in order, with its attributes."""
    elements: list[tuple[str, dict[str, str]]] = []
    parser = _xml_parser()
    parser.StartElementHandler = lambda tag, attributes: elements.append((tag, attributes))
    parser.Parse(data, True)
    return elements


# --- what a sheet holds ------------------------------------------------------------------------


@dataclass(frozen=True)
class SheetScan:
    """What one quick pass over a sheet's XML found.

    ``formulas``: whether the sheet may have formulas. ``merged``: its merged ranges
    (``"B2:B5"``). ``hidden``: the numbers, in sheet order, of its hidden rows (those written
    without cells may be left out: they are blank), or ``None`` when the pass could not tell.
    """

    formulas: bool
    merged: tuple[str, ...]
    hidden: tuple[int, ...] | None


def scan_sheet(path: Path, part: str | None) -> SheetScan:
    """One quick pass over the sheet's XML, by regular expressions rather than a parser: merges
    are listed after the cells, so the pass reads the whole part."""
    if part is None:  # cannot tell; openpyxl finds the formulas (merges, hidden rows stay unknown)
        return SheetScan(True, (), None)
    formulas = unnumbered = False
    merged: dict[str, None] = {}  # ordered and unique: a match in the overlap is found twice
    hidden: dict[int, None] = {}
    try:
        with zipfile.ZipFile(path) as archive, archive.open(part) as source:
            tail = b""
            while block := source.read(BLOCK):
                text = tail + block
                formulas = formulas or bool(_FORMULA_TAG.search(text))
                if b"mergeCell" in text:  # a plain search first: most blocks have none
                    for match in _MERGE_REF.finditer(text):
                        merged[match.group(1).decode("ascii").upper()] = None
                if b"hidden" in text or b"ht=" in text:  # most blocks hide no row
                    unnumbered = not _hidden_rows(text, hidden) or unnumbered
                tail = block[-_OVERLAP:]
            rows = _hidden_rows_counted(archive, part) if unnumbered else tuple(hidden)
    except Exception:
        # Cannot tell; the full pass will find out (or the damage).
        return SheetScan(True, tuple(merged), None)
    return SheetScan(formulas, tuple(merged), rows)


def _hidden_rows(text: bytes, found: dict[int, None]) -> bool:
    """Add to ``found`` the numbers of the hidden rows in ``text`` that hold cells; ``False`` when
    one of them carries no number (``r``), so that the rows must be counted instead."""
    numbered = True
    for match in _HIDDEN_ROW.finditer(text):
        attributes = match.group(1)
        if attributes.rstrip().endswith(b"/") or text.startswith(b"</", match.end()):
            continue  # <row .../> or <row ...></row>: a row without cells
        number = _ROW_NUMBER.search(attributes)
        if number is None:
            numbered = False
        else:
            found[int(number.group(1))] = None
    return numbered


def _hidden_rows_counted(archive: zipfile.ZipFile, part: str) -> tuple[int, ...]:
    """The numbers of the sheet's hidden rows found by parsing it, a row without a number being
    the one after the row before, as openpyxl counts them: slower, for the rare sheet whose
    rows carry no numbers."""
    found: list[int] = []
    row = 0

    def start(name: str, attributes: dict[str, str]) -> None:
        nonlocal row
        if name[name.rfind("}") + 1 :] == "row":
            number = attributes.get("r")
            row = int(number) if number is not None else row + 1
            if _is_hidden(attributes):
                found.append(row)

    parser = _xml_parser()
    parser.StartElementHandler = start
    with archive.open(part) as source:
        while block := source.read(BLOCK):
            parser.Parse(block, False)
        parser.Parse(b"", True)
    return tuple(dict.fromkeys(found))


def _is_hidden(attributes: dict[str, str]) -> bool:
    """Whether a parsed row's attributes hide it: ``hidden`` true, or a height of zero."""
    if attributes.get("hidden", "").strip().lower() in ("1", "true"):
        return True
    try:
        return float(attributes.get("ht", "")) == 0
    except ValueError:
        return False


def merges_in_table(merged: tuple[str, ...], header_row: int, width: int) -> list[str]:
    """The merged ranges that cover a data row (below ``header_row``) in one of the table's
    ``width`` columns; a range that cannot be read counts as inside."""
    return [ref for ref in merged if _merge_in_table(ref, header_row, width)]


def _merge_in_table(ref: str, header_row: int, width: int) -> bool:
    """Whether merged range ``ref`` covers a data row in one of the table's columns."""
    match = _CELL_RANGE.fullmatch(ref)
    if match is None:
        return True  # a range we cannot read: assume the worst
    first_col = min(_column_number(match.group(1)), _column_number(match.group(3) or "ZZZ"))
    last_row = max(int(match.group(2)), int(match.group(4) or 0))
    return last_row > header_row and first_col <= width


def _column_number(reference: str) -> int:
    """The column number (``A`` is 1) of a cell reference such as ``AB12``, or of its letters."""
    number = 0
    for char in reference:
        if char.isdigit():
            break
        number = number * 26 + ord(char.upper()) - 64
    return number


def formula_cells(path: Path, part: str) -> Iterator[tuple[int, int]]:
    """(row, column) of every formula cell in sheet part ``part``, both from 1, in sheet order,
    found by a lean expat pass that holds the zip open until the iterator is done or closed."""
    found: list[tuple[int, int]] = []
    row = column = 0

    def start(name: str, attributes: dict[str, str]) -> None:
        nonlocal row, column
        local = name[name.rfind("}") + 1 :]
        if local == "c":
            reference = attributes.get("r")
            column = _column_number(reference) if reference else column + 1
        elif local == "f":
            found.append((row, column))
        elif local == "row":
            number = attributes.get("r")
            row = int(number) if number else row + 1
            column = 0

    parser = _xml_parser()
    parser.StartElementHandler = start
    with zipfile.ZipFile(path) as archive, archive.open(part) as source:
        while block := source.read(BLOCK):
            parser.Parse(block, False)
            yield from found
            found.clear()
        parser.Parse(b"", True)
        yield from found
