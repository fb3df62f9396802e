"""User-ID cells: is the ID usable, and if not, what a spreadsheet probably did to it.

In: an ID cell's text, what ``read`` noticed about the cell (a :class:`~pcxbatch.model.CellNote`),
where the cell is (its column, as a message names it) and the job's ID pattern. Out: the
message part for an unusable ID (``column 'User ID': '1.23457E+14' is a number in scientific
notation: ...``), or ``None``: :func:`id_problem`. ``validate`` asks it for every row; the rule
itself (pattern and path safety) is ``rules.check_user_id``. An :class:`IdColumn` judges the
IDs that only the rest of their column shows to be damaged (leading zeros lost). Also the
quoting helpers that keep cell texts in messages printable. No third-party imports.

What a message says about how the ID was probably mangled on its way through a spreadsheet
(the row is invalid in each case; nothing is guessed or repaired):

- scientific notation (``1.23457E+14``), or a number cell with more than 15 significant digits:
  digits are lost;
- a number cell of 12 or more digits of which at most 6 are significant (``123457000000000``):
  what Excel makes of ``1.23457E+14`` when it reads a CSV back, so digits are lost;
- a number cell (or digits alone) that fails the ID pattern: leading zeros may have been lost,
  and when zeros put back in front would make it match, the message says so;
- a number cell that matches the pattern but is shorter than the column's zero-padded IDs, or
  than every all-digit ID the column stores as text (:class:`IdColumn`): leading zeros were
  probably lost. So is a text ID of digits shorter than the column's zero-padded IDs, when
  they are all padded to one width (a CSV that a spreadsheet opened and saved);
- a formula cell (from ``read``), or a text starting with ``=`` in the ID, status or action
  column: a formula, never evaluated, never sent;
- a spreadsheet error value (``#N/A``), or a date or time (a spreadsheet took the ID for a
  date): the ISO text ``read`` makes of a date cell, or a date as a CSV shows one
  (``01/03/2024``, ``1-Mar-24``).
"""

from __future__ import annotations

import re

from pcxbatch.model import CellNote
from pcxbatch.rules import check_user_id

__all__ = ["IdColumn", "formula_like", "id_problem", "printable", "show"]

# How Excel shows a big number in a General cell, e.g. 1.23457E+14 (or 1,23457E+14).
_SCIENTIFIC = re.compile(r"^[+-]?\d+(?:[.,]\d*)?[eE][+-]\d+$")
_DECIMAL_INTEGER = re.compile(r"^\d+[.,]0+$")
_DIGITS = re.compile(r"^[0-9]+$")
# Excel's error values, as a cell holding one reads.
_ERROR_VALUES = frozenset(
    {"#N/A", "#REF!", "#VALUE!", "#DIV/0!", "#NAME?", "#NUM!", "#NULL!", "#SPILL!", "#CALC!"}
)
# What read makes of a date or time cell (ISO 8601, with a UTC offset if it had one), and how a
# date cell reads in a CSV a spreadsheet saved: 01/03/2024, 1.3.24, 1-Mar-24, 2024/03/01.
_DATE_LIKE = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?$"
    r"|^\d{1,2}:\d{2}(?::\d{2})?$"
    r"|^(?:\d{1,2}[/.]\d{1,2}[/.]\d{2}(?:\d{2})?|\d{4}/\d{1,2}/\d{1,2})"
    r"(?: \d{1,2}:\d{2}(?::\d{2})?)?$"
    r"|^\d{1,2}-[A-Za-z]{3}-\d{2}(?:\d{2})?$"
)
# Excel shows a number of 12 digits or more in a General cell as 1.23457E+14: 6 significant
# digits. A CSV saved like that and read back holds 123457000000000.
_ROUNDED_MIN_DIGITS = 12
_ROUNDED_MAX_SIGNIFICANT = 6
# How many leading zeros a message tries putting back to see whether the ID would then match.
_MAX_LOST_ZEROS = 12
_FIX_NUMBER = "format the column as text in the source file and export it again"


def id_problem(
    where: str, user_id: str, note: CellNote | None, pattern: re.Pattern[str]
) -> str | None:
    """What is wrong with ``user_id`` (a cell at ``where``), as a message part; None when it
    is usable (``rules.check_user_id`` accepts it and no spreadsheet has mangled it)."""
    # Checked before the pattern: a permissive pattern would let these through.
    problem = _mangled_id(where, user_id, note)
    if problem is not None:
        return problem
    why = check_user_id(user_id, pattern)
    if why is None:
        return None
    return _refused_id(where, user_id, note, why, pattern)


def _mangled_id(where: str, user_id: str, note: CellNote | None) -> str | None:
    """The message for an ID cell that is no ID at all, whatever the pattern says: a formula,
    a number whose digits are lost, an error value, a date."""
    if note is CellNote.FORMULA:
        return f"{where}: a formula, not a value (paste the values in its place)"
    if note is CellNote.LOSSY_NUMBER:
        return (
            f"{where}: {printable(user_id)[:80]} was stored as a number with more than "
            f"15 digits, so the spreadsheet has lost some of its digits; {_FIX_NUMBER}"
        )
    if note is CellNote.NUMBER and _rounded_by_excel(user_id):
        return (
            f"{where}: {user_id} was stored as a number with only its first digits "
            "followed by zeros: what a spreadsheet makes of an ID it showed as "
            f"{_scientific(user_id)} and saved; its digits are lost; {_FIX_NUMBER}"
        )
    if user_id.startswith("="):
        # formula_like, and a lone "=" too: a spreadsheet takes it for the start of a formula,
        # and no ID is sent that a report would have to defuse.
        return (
            f"{where}: {show(user_id)} is a formula, not a value (never evaluated, never "
            "sent); put the user ID itself in the cell"
        )
    if user_id in _ERROR_VALUES:
        return (
            f"{where}: {show(user_id)} is a spreadsheet error value, not a user ID (a "
            "formula that failed before its values were pasted?)"
        )
    if _DATE_LIKE.match(user_id):
        # A date cell's text would pass most ID patterns; the ID it replaced is gone.
        return (
            f"{where}: {show(user_id)} looks like a date or time: a spreadsheet may have "
            f"taken the ID for a date; {_FIX_NUMBER}"
        )
    return None


def _refused_id(
    where: str, user_id: str, note: CellNote | None, why: str, pattern: re.Pattern[str]
) -> str:
    """The message for an ID that ``check_user_id`` refused (``why``), with a guess at how
    a spreadsheet mangled it when the ID looks like it went through one."""
    if not user_id:
        return f"{where}: empty"
    if _SCIENTIFIC.match(user_id):
        return (
            f"{where}: {show(user_id)} is a number in scientific notation: a spreadsheet "
            f"turned the ID into a number and its digits are lost; {_FIX_NUMBER}"
        )
    if note is CellNote.NUMBER:
        hint = ""
        if _DIGITS.match(user_id):
            padded = _lost_zeros(user_id, pattern)
            hint = (
                f"; it was probably {padded} with its leading zeros lost"
                if padded
                else "; leading zeros may have been lost"
            )
        return f"{where}: {show(user_id)} was stored as a number and {why}{hint}; {_FIX_NUMBER}"
    if _DECIMAL_INTEGER.match(user_id):
        return (
            f"{where}: {show(user_id)} looks like a number written with a decimal part "
            f"(the ID was a number somewhere on the way) and {why}; {_FIX_NUMBER}"
        )
    if _DIGITS.match(user_id) and (padded := _lost_zeros(user_id, pattern)):
        return (
            f"{where}: {show(user_id)} {why}; it was probably {padded} with its leading "
            f"zeros lost (a spreadsheet that opened the file?); {_FIX_NUMBER}"
        )
    return f"{where}: {show(user_id)} {why}"


class IdColumn:
    """What a column's IDs stored as text say about its other IDs: the shortest all-digit one,
    and the widths of those that begin with ``0`` (zero-padded), an example of each.

    :meth:`observe` every ID of the column (``validate`` does so some rows ahead of the row it
    judges), then :meth:`lost_zeros` says whether an ID that is otherwise usable probably lost
    its leading zeros in a spreadsheet.
    """

    __slots__ = ("padded", "shortest")

    def __init__(self) -> None:
        self.shortest: str | None = None  # the shortest all-digit ID stored as text
        self.padded: dict[int, str] = {}  # width -> a zero-padded all-digit ID of that width

    def observe(self, user_id: str, note: CellNote | None) -> None:
        """Take the ID cell's text (``note`` is what ``read`` noticed about it) into account."""
        if note is not None or not (user_id.isdigit() and user_id.isascii()):
            return  # numbers are what is judged; formulas and other IDs say nothing of widths
        if self.shortest is None or len(user_id) < len(self.shortest):
            self.shortest = user_id
        if user_id[0] == "0" and len(user_id) not in self.padded and len(self.padded) < 8:
            self.padded[len(user_id)] = user_id

    def lost_zeros(self, where: str, user_id: str, note: CellNote | None) -> str | None:
        """The message part for an all-digit ID (at ``where``) that probably lost its leading
        zeros, judged by the IDs observed so far; ``None`` when nothing says so."""
        if not (user_id.isdigit() and user_id.isascii()) or note not in (None, CellNote.NUMBER):
            return None
        number = note is CellNote.NUMBER
        width = max(self.padded, default=0)
        one_width = len(self.padded) == 1
        if len(user_id) < width and (number or (one_width and user_id[0] != "0")):
            like = self.padded[width]
            guess = (
                f"it was probably {user_id.zfill(width)} with its leading zeros lost"
                if one_width
                else "its leading zeros were probably lost"
            )
            padded = f"zero-padded to {width} digits (like {like!r})"
            if number:
                return (
                    f"{where}: {user_id} was stored as a number, but the column's other IDs are "
                    f"{padded}: {guess}; {_FIX_NUMBER}"
                )
            return (
                f"{where}: {show(user_id)} is shorter than the column's other IDs, which are "
                f"{padded}: {guess} (a spreadsheet that opened the file?); {_FIX_NUMBER}"
            )
        if number and self.shortest is not None and len(user_id) < len(self.shortest):
            return (
                f"{where}: {user_id} was stored as a number, and is shorter than every ID the "
                f"column holds as text ({len(self.shortest)} digits or more, like "
                f"{self.shortest!r}): its leading zeros were probably lost; {_FIX_NUMBER}"
            )
        return None


def show(text: str) -> str:
    """A cell text as a message quotes it: its ``repr`` (escapes included), cut at 80."""
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:76] + "...'"


def printable(text: str) -> str:
    """``text`` with control and invisible characters escaped (``\\x1b``), so a header from a
    file cannot drive the terminal it is printed on."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


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


def formula_like(text: str) -> bool:
    # What a spreadsheet would run as a formula; a CSV cell like this was typed as one.
    return text.startswith("=") and len(text) > 1
