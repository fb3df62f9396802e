"""What the readers of :mod:`pcxbatch.read` share: the :class:`Table` they return, how header
names are made unique, and how a problem is worded. Standard library only.

In: header texts, exceptions met while reading. Out: a ``Table``, unique header names, and
one-line reasons for an :class:`~pcxbatch.errors.InputError`. These live apart from the package's
``__init__`` so that the text, workbook and OOXML modules can share them without importing the
package that imports them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pcxbatch.errors import InputError
from pcxbatch.model import SourceRow

#: How much of a file is read at a time wherever a file is scanned whole: memory stays flat.
BLOCK = 1 << 20
#: The first bytes of a zip archive (an .xlsx workbook is one) and of an OLE file (an old .xls
#: workbook, or an encrypted .xlsx): how a file that is not what its name says is recognised.
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
#: The way out for a file in a format read_table does not read.
SAVE_AS = "open it and save it as .xlsx or .csv"

# Third-party error texts can be long or span lines; a message is one line for a person.
_MAX_REASON = 200
_WHITESPACE_RUN = re.compile(r"\s+")


@dataclass(frozen=True)
class Table:
    """An opened input: header names and a one-shot, lazy iterator over its data rows.

    ``sheet`` is the sheet's name for workbooks and ``None`` for text files; ``header_row`` is the
    spreadsheet row number of the header. ``encoding`` and ``separator`` say how a text file was
    read (``None`` for workbooks). ``skipped_rows`` are the numbers, in order, of the hidden rows
    with data that ``hidden_rows="skip"`` left out of ``rows``. Iterating ``rows`` may raise
    ``InputError``.
    """

    path: Path
    sheet: str | None
    columns: tuple[str, ...]
    header_row: int
    rows: Iterator[SourceRow]
    encoding: str | None = None
    separator: str | None = None
    skipped_rows: tuple[int, ...] = ()


def unique_names(raw: Sequence[str]) -> tuple[str, ...]:
    """Header names made unique and stable: empty -> ``column N``, repeats -> ``name (2)``."""
    names: list[str] = []
    taken: set[str] = set()
    for position, text in enumerate(raw, start=1):
        base = _WHITESPACE_RUN.sub(" ", text).strip() or f"column {position}"
        name, count = base, 1
        while name.casefold() in taken:
            count += 1
            name = f"{base} ({count})"
        taken.add(name.casefold())
        names.append(name)
    return tuple(names)


def why(exc: BaseException) -> str:
    """An exception's text on one line and cut short, for the end of an ``InputError``."""
    text = _WHITESPACE_RUN.sub(" ", str(exc)).strip() or type(exc).__name__
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def os_reason(exc: OSError) -> str:
    """What the operating system said, without the errno and file name around it."""
    return exc.strerror or str(exc)


def damaged_workbook(path: Path, exc: BaseException) -> InputError:
    """The error for a workbook that a zip or XML parser could not get through."""
    # Any exception met while parsing is the user's file to fix, never a traceback to show.
    return InputError(f"{path}: is damaged and cannot be opened as a workbook: {why(exc)}")
