"""The one place a report cell is made safe to open: what a text becomes in a CSV or XLSX file.

In: a cell value as a caller has it (``str``, ``int`` or ``None``; texts raw, straight from the
input file or the API). Out: the value to hand to the ``csv`` module (:func:`csv_cell`) or to
XlsxWriter's ``write_string`` (:func:`xlsx_text`).

Why one place: a spreadsheet runs a cell that starts with ``=``, ``+``, ``-``, ``@``, tab or CR
as a formula (OWASP "CSV injection"), so a hostile input cell such as ``=HYPERLINK(...)`` could
act when an analyst opens a report. Only :mod:`pcxbatch.report.table` calls these functions, on
every text it writes, so no report can skip them. The two formats need different answers:

* CSV has no cell types, so a text with a formula start gets a leading ``'`` (which Excel and
  LibreOffice show as "this is text") and is otherwise kept exactly.
* XLSX has them: every text is written as a string cell, which is never evaluated, so the text
  is kept exactly, with no visible apostrophe. Only Excel's own limits change it (see
  :func:`fit_xlsx`).

Both: a lone UTF-16 surrogate, which no UTF-8 file can hold, becomes U+FFFD (:func:`clean`).
"""

from __future__ import annotations

import re
from typing import TypeAlias

__all__ = [
    "FORMULA_PREFIXES",
    "XLSX_CELL_LIMIT",
    "Cell",
    "clean",
    "csv_cell",
    "fit_xlsx",
    "neutralise",
    "xlsx_text",
]

#: A cell as callers hand it to the table writer: text (raw), a whole number, or empty.
Cell: TypeAlias = str | int | None

#: Characters that make a spreadsheet treat a cell as a formula (OWASP "CSV injection").
FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")

#: Excel's maximum length of a cell's text, in UTF-16 code units.
XLSX_CELL_LIMIT = 32_767

_SURROGATES = re.compile("[\ud800-\udfff]")


def neutralise(text: str) -> str:
    """Return ``text`` with a leading apostrophe if a spreadsheet would run it as a formula.

    In: any text. Out: ``"'" + text`` when ``text`` starts with ``=``, ``+``, ``-``, ``@``, tab
    or CR; otherwise ``text`` unchanged. Excel and LibreOffice show the apostrophe-prefixed
    value of a CSV cell as plain text, so ``=HYPERLINK(...)`` is never evaluated.
    """
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def clean(text: str) -> str:
    """``text`` with every lone UTF-16 surrogate replaced by U+FFFD; other text unchanged."""
    # A lone surrogate (e.g. from a surrogateescape decode upstream) cannot be encoded as UTF-8
    # and would crash the writer at the end of a long run; the ASCII test keeps the common case
    # cheap.
    if not text.isascii() and _SURROGATES.search(text):
        return _SURROGATES.sub("\ufffd", text)
    return text


def csv_cell(value: Cell) -> str:
    """A CSV field: text cleaned and neutralised, a number as its digits, ``None`` empty."""
    if isinstance(value, str):
        return clean(neutralise(value))
    return "" if value is None else str(value)


def xlsx_text(text: str, full_text_in: str) -> str:
    """The text of an XLSX string cell: cleaned, and cut to Excel's limit (see :func:`fit_xlsx`).

    No apostrophe: the caller writes it with ``write_string``, and a string cell is never
    evaluated. ``full_text_in`` names the file that holds the text uncut (the CSV beside it).
    """
    return fit_xlsx(clean(text), full_text_in)


def _utf16_len(text: str) -> int:
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def fit_xlsx(text: str, full_text_in: str) -> str:
    """Cut ``text`` to Excel's cell limit, ending with a note saying so; short text unchanged.

    In: the text and the name of the file that holds it whole. Out: ``text`` itself when it
    fits in :data:`XLSX_CELL_LIMIT` UTF-16 units; otherwise its start, cut on a code point
    (never inside a surrogate pair), then ``[... truncated: ...]`` saying how long it was and
    that the full text is in ``full_text_in``, the whole at most the limit.
    """
    # A code point takes at most 2 UTF-16 units, so half the limit can never overflow.
    if len(text) <= XLSX_CELL_LIMIT // 2 or _utf16_len(text) <= XLSX_CELL_LIMIT:
        return text
    mark = (
        f" [... truncated: Excel holds at most {XLSX_CELL_LIMIT:,} characters in a cell;"
        f" this text has {len(text):,}; the full text is in {full_text_in}]"
    )
    budget = XLSX_CELL_LIMIT - _utf16_len(mark)
    used = 0
    end = 0
    for ch in text:
        width = 2 if ord(ch) > 0xFFFF else 1
        if used + width > budget:
            break
        used += width
        end += 1
    return text[:end] + mark
