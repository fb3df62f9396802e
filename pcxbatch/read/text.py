"""Read a text file (``.csv``, ``.tsv``, ``.txt``) for :mod:`pcxbatch.read`: the only module
that uses pandas.

In: the path of a text file that read_table has already checked (it exists, is not empty, is not
too large). Out: a :class:`~pcxbatch.read.common.Table` with ``encoding`` and ``separator`` set,
whose rows are read lazily in chunks by pandas' C parser, every cell kept as text exactly as
written. How the encoding, the separator, the header and the row numbers are found is the
package's contract (:mod:`pcxbatch.read`); a file that cannot be read raises
:class:`~pcxbatch.errors.InputError`, when opened or while its rows are read.

The header is found with the standard library's ``csv`` module (:func:`~pcxbatch.read.common.
find_header` over the first records), so that a sniffed separator, a hidden ``sep=`` line and
title lines above the header are settled before pandas reads the rest in bulk.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from pcxbatch.errors import InputError
from pcxbatch.model import SourceRow
from pcxbatch.read.common import (
    BLOCK,
    OLE_MAGIC,
    SAVE_AS,
    ZIP_MAGIC,
    Header,
    RawRow,
    Table,
    find_header,
    os_reason,
    unique_names,
    why,
)

# Big enough that pandas' per-chunk overhead vanishes, small enough to keep memory flat.
_CSV_CHUNK_ROWS = 50_000
# The separator is sniffed from the first records only: enough to tell, cheap on a big file.
_SNIFF_CHARS = 64 * 1024
_SNIFF_RECORDS = 50
_SEPARATORS = (",", ";", "\t")
# Columns read past the header's width, to tell empty trailing cells from text that overflows.
_SPARE_CELLS = 8

# What pandas' C parser says about a row with too many cells, and about an unclosed quote.
_BAD_LINE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_OPEN_QUOTE = re.compile(r"EOF inside string starting at row (\d+)")
_SEPARATOR_HINT = re.compile(r'"?sep=([^\r\n"])"?[^\S\r\n]*\r?\n', re.IGNORECASE)


def read_text(path: Path, header_row: int | None = None, mapped: str | None = None) -> Table:
    """Open text file ``path``: detect its encoding and separator and find its header (the row
    ``header_row``, else as :func:`~pcxbatch.read.common.find_header` searches, ``mapped`` being
    the user-ID header the job names); the rows are read as ``Table.rows`` is iterated. Raises
    ``InputError`` for a file that cannot be used."""
    encoding = _detect_encoding(path)
    try:
        with open(path, encoding=encoding, newline="") as handle:
            sample = handle.read(_SNIFF_CHARS)
            complete = not handle.read(1)
        # Excel reads a first line "sep=;" as the separator to use, and does not show it.
        hidden = 0
        if hint := _SEPARATOR_HINT.match(sample):
            separator, hidden = hint.group(1), 1
        else:
            separator = _sniff_separator(sample, complete)
        header = _find_text_header(path, (encoding, separator, hidden), header_row, mapped)
    except InputError:
        raise
    except Exception as exc:
        # OSError, UnicodeError and csv.Error are the expected ones; anything else from parsing
        # a hostile file is still the file's problem, never a traceback.
        raise InputError(f"{path}: cannot be read as text: {why(exc)}") from exc
    if header is None:
        raise InputError(f"{path}: has no header row (every line is blank)")
    columns = unique_names(header.cells)
    header_index = header.number - 1 + hidden  # the header's record, counting a sep= line
    rows = _text_rows(path, encoding, separator, len(columns), header_index, hidden)
    return Table(path, None, columns, header.number, rows, encoding, separator)


def _detect_encoding(path: Path) -> str:
    """UTF-8 (BOM or not) when the whole file decodes as UTF-8, UTF-16 when it has a UTF-16 BOM,
    else Windows-1252; raises for binary files and for anything else."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            # UTF-32's little-endian BOM starts with UTF-16's: test it first.
            if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
                return "utf-32"
            if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                return "utf-16"
            if head.startswith(ZIP_MAGIC):
                raise InputError(
                    f"{path}: is a zip file (an Excel .xlsx workbook?), not text; "
                    "give it the right extension (.xlsx) or export it as CSV"
                )
            if head.startswith(OLE_MAGIC):
                raise InputError(
                    f"{path}: is an Office binary file (an old .xls workbook or a "
                    f"password-protected one), not text; {SAVE_AS}"
                )
            handle.seek(0)
            utf8_ok = _decodes(handle, "utf-8")
            if utf8_ok is None:
                raise InputError(
                    f"{path}: contains binary data (NUL bytes), not CSV text (or it is UTF-16 "
                    "text without a byte-order mark); export it as 'CSV UTF-8'"
                )
            if utf8_ok:
                return "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"
            handle.seek(0)
            if _decodes(handle, "cp1252"):
                return "cp1252"
    except OSError as exc:
        raise InputError(f"{path}: cannot be read: {os_reason(exc)}") from exc
    raise InputError(
        f"{path}: is neither UTF-8 nor Windows-1252 text; save it as 'CSV UTF-8' and try again"
    )


def _decodes(handle: io.BufferedReader, encoding: str) -> bool | None:
    """Whether the rest of ``handle`` decodes in ``encoding``; ``None`` when it holds NUL bytes."""
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        while block := handle.read(BLOCK):
            if b"\x00" in block:
                return None
            decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _sniff_separator(sample: str, complete: bool) -> str:
    """Pick ``,``, ``;`` or tab: the one that splits the most records into the same number of
    cells (at least 2), the most cells breaking a tie; ``,`` for a one-column file. The most
    common width counts, not the first record's, so title lines above the header do not
    decide."""
    if not complete:  # the sample's last line is probably cut short
        sample = sample[: sample.rfind("\n") + 1] or sample
    best: tuple[float, int, int] = (0.0, 0, 0)
    chosen = ","
    for rank, separator in enumerate(reversed(_SEPARATORS)):
        widths: Counter[int] = Counter()
        for record in csv.reader(io.StringIO(sample, newline=""), delimiter=separator):
            if any(cell.strip() for cell in record):
                widths[len(record)] += 1
                if widths.total() >= _SNIFF_RECORDS:
                    break
        if not widths:
            continue
        count, width = max((n, w) for w, n in widths.items())
        if width < 2:
            continue
        score = (count / widths.total(), width, rank)
        if score > best:
            best, chosen = score, separator
    return chosen


def _find_text_header(
    path: Path, how: tuple[str, str, int], header_row: int | None, mapped: str | None
) -> Header | None:
    """The header (see ``read_text``); ``how`` is the encoding, the separator, and how many
    records to skip unseen (Excel's ``sep=`` line)."""
    encoding, separator, hidden = how
    with open(path, encoding=encoding, newline="") as handle:
        records = csv.reader(handle, delimiter=separator)
        raw: Iterator[RawRow] = (
            (index + 1 - hidden, [cell.strip() for cell in record], {})
            for index, record in enumerate(records)
            if index >= hidden
        )
        return find_header(raw, str(path), header_row, mapped)


def _text_rows(
    path: Path, encoding: str, separator: str, width: int, header_index: int, hidden: int
) -> Iterator[SourceRow]:
    """Data rows of a text file, read in chunks by pandas' C parser, every cell as text.

    A few spare columns past the header absorb empty trailing cells (``u1,active,,``); a row
    with text in them, or with more cells than even the spares hold, stops the read.
    """
    first_data_row = header_index + 2 - hidden
    try:
        reader = pd.read_csv(
            path,
            sep=separator,
            header=None,
            names=list(range(width + _SPARE_CELLS)),
            skiprows=header_index + 1,  # counts records, so a quoted line break is fine
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,  # blank lines must count, or row numbers would shift
            encoding=encoding,
            engine="c",
            chunksize=_CSV_CHUNK_ROWS,
        )
        with reader:
            for chunk in reader:
                if chunk.empty:
                    continue
                first = int(chunk.index[0]) + first_data_row  # the index counts from 0
                _check_spare_cells(path, chunk, width, first, separator)
                columns = [[cell.strip() for cell in chunk[c].tolist()] for c in range(width)]
                for number, values in enumerate(zip(*columns, strict=True), start=first):
                    if any(values):
                        yield SourceRow(number, values)
    except InputError:
        raise
    except pd.errors.ParserError as exc:
        raise InputError(_parser_problem(path, str(exc), separator, hidden)) from exc
    except Exception as exc:  # OSError, UnicodeError, ValueError, or anything pandas meets
        raise InputError(f"{path}: cannot be read as text: {why(exc)}") from exc


def _check_spare_cells(
    path: Path, chunk: pd.DataFrame, width: int, first: int, separator: str
) -> None:
    for column in range(width, width + _SPARE_CELLS):
        cells = chunk[column]
        filled = cells[cells.to_numpy() != ""]
        filled = filled[filled.str.strip() != ""]
        if len(filled):
            offset = int(filled.index[0]) - int(chunk.index[0])
            raise InputError(_too_many_cells(path, first + offset, width, separator))


def _too_many_cells(path: Path, row: int, width: int, separator: str) -> str:
    shown = "tab" if separator == "\t" else f"'{separator}'"
    return (
        f"{path}: row {row} has more cells than the header's {width}; "
        f"a cell that contains {shown} must be in double quotes"
    )


def _parser_problem(path: Path, message: str, separator: str, hidden: int) -> str:
    # pandas counts every record, skipped ones too: from 1 in one message, from 0 in the other.
    if match := _BAD_LINE.search(message):
        width = int(match.group(1)) - _SPARE_CELLS
        return _too_many_cells(path, int(match.group(2)) - hidden, width, separator)
    if match := _OPEN_QUOTE.search(message):
        row = int(match.group(1)) + 1 - hidden
        return f'{path}: row {row} opens a double quote (") that is never closed'
    return f"{path}: cannot be read as CSV: {why(ValueError(message))}"
