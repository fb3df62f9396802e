"""Which column holds which field: the job's mapping first, then the usual header spellings.

In: a table's header names and where they came from (the file, the sheet, the header's row, the
workbook's other sheets: :class:`TableHeader`), and the job's ``columns`` mapping (field ->
header text, from ``columns:`` or ``--column FIELD=HEADER``). Out: :class:`Columns`, the index
of each field's column with the file-level ``notes`` a person should read once (the columns
that are not read, and why), or an :class:`~pcxbatch.errors.InputError` that says which flag
settles it. No third-party imports.

The rules, in order:

- A mapped field's column is the one whose header is the mapped text exactly, else the one
  equal to it by :func:`~pcxbatch.rules.header_key` (case, spaces, ``_ - .`` ignored). A mapped
  header the table lacks, or one header mapped to two fields, refuses the file.
- Every other field takes the column whose header is one of its aliases
  (:data:`~pcxbatch.rules.HEADER_ALIASES`), among the columns not mapped. For the status, any
  header ending in "status" (``Current Status``, ``Account Status``) is a candidate too: two
  candidates for one field refuse the file, naming the flag that picks one, rather than risk
  sending the current status as the new one.
- No user-ID column refuses the file, with the columns found, the ID-like ones as the flag to
  map, the header row, and, for a workbook, which of its other sheets has a user-ID column.

Messages quote column names with control characters escaped (``validate_ids.printable``).
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pcxbatch.errors import InputError
from pcxbatch.rules import COLUMN_FIELDS, HEADER_ALIASES, HEADER_SEARCH_ROWS, header_key
from pcxbatch.validate_ids import printable

__all__ = [
    "Columns",
    "TableHeader",
    "column_flag",
    "resolve_columns",
    "short",
    "table_columns",
]

_FIELD_LABELS = {
    "user_id": "user ID",
    "action": "action",
    "status": "status",
    "reason": "reason",
    "updated_by": "updated_by",
}
_ALIAS_TO_FIELD: dict[str, str] = {
    header_key(alias): name for name, aliases in HEADER_ALIASES.items() for alias in aliases
}
# read names a repeated header "Name (2)"; such a column still counts for its field, so that
# two "User ID" columns are reported as ambiguous instead of one being silently ignored.
_REPEAT_SUFFIX = re.compile(r"\s\(\d+\)$")
# Words that mark a status header as the one to set, when a message suggests one of several.
_TARGET_WORDS = ("new", "target", "requested", "proposed", "to")
# A message lists this many columns, each cut to this many characters.
_LIST_COLUMNS = 12
_COLUMN_SHOWN = 40
# Characters that a shell reads inside double quotes: a header holding one is quoted otherwise.
_SHELL_SPECIAL = re.compile(r'["$`\\!]')


@dataclass(frozen=True)
class Columns:
    """Where each known field is in the table (an index into its columns), ``None`` if absent.

    ``names`` are the table's column names, used in messages; ``unused`` the indexes of the
    columns no field reads, and ``notes`` what a person should know about the columns once per
    file (not once per row). ``source`` names the file (and sheet) in messages.
    """

    user_id: int
    action: int | None
    status: int | None
    reason: int | None
    updated_by: int | None
    names: tuple[str, ...]
    unused: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()
    source: str = field(default="", compare=False)


class TableHeader(Protocol):
    """What :func:`table_columns` reads of a table (``pcxbatch.read.Table`` is one)."""

    @property
    def columns(self) -> tuple[str, ...]: ...
    @property
    def sheet(self) -> str | None: ...
    @property
    def header_row(self) -> int: ...
    @property
    def other_sheets(self) -> tuple[tuple[str, bool], ...]: ...


def table_columns(
    table: TableHeader, source: str, mapping: Mapping[str, str] | None = None
) -> Columns:
    """:func:`resolve_columns` for an opened table, ``source`` naming its file."""
    return resolve_columns(
        table.columns,
        source,
        mapping=mapping,
        sheet=table.sheet,
        header_row=table.header_row,
        other_sheets=table.other_sheets,
    )


def resolve_columns(
    columns: Sequence[str],
    source: str,
    *,
    mapping: Mapping[str, str] | None = None,
    sheet: str | None = None,
    header_row: int | None = None,
    other_sheets: Sequence[tuple[str, bool]] = (),
) -> Columns:
    """Find the fields among ``columns`` (header names; ``source`` names the input file, and
    ``sheet`` its sheet) under the job's ``mapping`` (field -> header text).

    Raises ``InputError`` when there is no user-ID column (saying so with ``header_row`` and
    ``other_sheets``, the workbook's other sheets and whether each has one), when two columns
    could be one field, or when the mapping names a header the table lacks.
    """
    where = f"{source}, sheet '{printable(sheet)}'" if sheet else source
    found = _mapped_columns(columns, mapping or {}, where)
    for name in COLUMN_FIELDS:
        if name in found:
            continue
        taken = set(found.values())
        candidates = [
            index
            for index, header in enumerate(columns)
            if index not in taken and _may_be(header, name)
        ]
        if len(candidates) > 1:
            raise _ambiguous(where, columns, name, candidates)
        if candidates:
            found[name] = candidates[0]
    if "user_id" not in found:
        raise _no_user_ids(where, columns, header_row, other_sheets)
    unused = tuple(index for index in range(len(columns)) if index not in found.values())
    return Columns(
        user_id=found["user_id"],
        action=found.get("action"),
        status=found.get("status"),
        reason=found.get("reason"),
        updated_by=found.get("updated_by"),
        names=tuple(columns),
        unused=unused,
        notes=_notes(columns, unused, mapping or {}, found),
        source=where,
    )


def column_flag(name: str, header: str) -> str:
    """The flag that maps field ``name`` to ``header``, quoted for a shell, and its job key:
    ``--column status="New Status" (columns: {status: "New Status"} in the job)``."""
    pair = f"{name}={header}"
    flag = shlex.quote(pair) if _SHELL_SPECIAL.search(header) else f'{name}="{header}"'
    yaml_header = header.replace("\\", "\\\\").replace('"', '\\"')
    return f'--column {flag} (columns: {{{name}: "{yaml_header}"}} in the job)'


def _field_of(header: str) -> str | None:
    """The field whose alias ``header`` is (a repeat suffix ignored), if any."""
    return _ALIAS_TO_FIELD.get(header_key(_REPEAT_SUFFIX.sub("", header)))


def _may_be(header: str, name: str) -> bool:
    """Whether the column headed ``header`` may hold field ``name``."""
    known = _field_of(header)
    if known is not None:
        return known == name
    return name == "status" and header_key(_REPEAT_SUFFIX.sub("", header)).endswith("status")


def _mapped_columns(
    columns: Sequence[str], mapping: Mapping[str, str], where: str
) -> dict[str, int]:
    """The column of each mapped field; raises for a header the table lacks or shares."""
    found: dict[str, int] = {}
    for name, wanted in mapping.items():
        index = _find_header(columns, name, wanted, where)
        for other, taken in found.items():
            if taken == index:
                raise InputError(
                    f"{where}: column '{short(columns[index])}' is mapped to both {other} and "
                    f"{name} (columns: in the job, or --column); map each field to its own column"
                )
        found[name] = index
    return found


def _find_header(columns: Sequence[str], name: str, wanted: str, where: str) -> int:
    text = " ".join(wanted.split())
    exact = [index for index, header in enumerate(columns) if header == text]
    if exact:
        return exact[0]  # read made header names unique
    key = header_key(text)
    loose = [index for index, header in enumerate(columns) if header_key(header) == key]
    if len(loose) == 1:
        return loose[0]
    shown = ", ".join(f"'{short(columns[index])}'" for index in loose)
    if loose:
        raise InputError(
            f"{where}: {name} is mapped to '{short(wanted)}', which could be any of {shown}; "
            "map it to one of them exactly (columns: in the job, or --column)"
        )
    close = difflib.get_close_matches(text, list(columns), n=1, cutoff=0.6)
    hint = f"; did you mean '{short(close[0])}'?" if close else ""
    raise InputError(
        f"{where}: has no column '{short(wanted)}', which {name} is mapped to (columns: in the "
        f"job, or --column); its columns are {_listed(columns)}{hint}"
    )


def _ambiguous(where: str, columns: Sequence[str], name: str, candidates: list[int]) -> InputError:
    """The error for several columns that could hold field ``name``, naming the flag."""
    headers = [columns[index] for index in candidates]
    shown = [f"'{short(header)}'" for header in headers]
    both = "both" if len(shown) == 2 else "each"
    listed = ", ".join(shown[:-1]) + f" and {shown[-1]}"
    return InputError(
        f"{where}: columns {listed} could {both} be the {_FIELD_LABELS[name]} column; say "
        f"which one: {column_flag(name, printable(_likeliest(name, headers)))}"
    )


def _likeliest(name: str, headers: list[str]) -> str:
    """Which of ``headers`` a message suggests for field ``name``: one that names a new status,
    else an alias of the field, else the first."""
    if name == "status":
        for header in headers:
            words = re.findall(r"[a-z]+", header.casefold())
            if any(word in _TARGET_WORDS for word in words):
                return header
    for header in headers:
        if _field_of(header) == name:
            return header
    return headers[0]


def _no_user_ids(
    where: str,
    columns: Sequence[str],
    header_row: int | None,
    other_sheets: Sequence[tuple[str, bool]],
) -> InputError:
    """The error for a table without a user-ID column: what was found, and the ways out."""
    parts = [f"{where}: no user ID column; the columns are {_listed(columns)}"]
    if header_row is not None:
        parts[0] += f" (from row {header_row})"
    with_ids = [name for name, has_ids in other_sheets if has_ids]
    if with_ids:
        sheets = ", ".join(
            f"'{printable(name)}'" + (" (has one)" if has_ids else " (none)")
            for name, has_ids in other_sheets
        )
        first = printable(with_ids[0])
        parts.append(
            f"the workbook's other sheets are {sheets}: read '{first}' with --sheet "
            f'"{first}" (sheet: in the job)'
        )
        return InputError("; ".join(parts))
    if other_sheets:
        listed = ", ".join(f"'{printable(name)}'" for name, _ in other_sheets[:_LIST_COLUMNS])
        parts.append(f"the workbook's other sheets ({listed}) have none either")
    id_like = [h for h in columns if header_key(h).endswith("id") and _field_of(h) is None]
    if id_like:
        parts.append(
            f"if '{short(id_like[0])}' holds the PCX user IDs, say so: "
            f"{column_flag('user_id', printable(id_like[0]))}"
        )
    else:
        parts.append(
            "name the user ID column 'user_id' (also accepted: User ID, userId, user, id, uid), "
            'or say which it is: --column user_id="HEADER" (columns: in the job)'
        )
    parts.append(
        f"if the header is not row {header_row or 1}, give its row number: --header-row N "
        f"(header_row: in the job; without it the header is looked for in the first "
        f"{HEADER_SEARCH_ROWS} rows)"
    )
    return InputError("; ".join(parts))


def _notes(
    columns: Sequence[str],
    unused: tuple[int, ...],
    mapping: Mapping[str, str],
    found: Mapping[str, int],
) -> tuple[str, ...]:
    """What a person should know about the columns, once: which are not read, and why."""
    notes: list[str] = []
    displaced = [index for index in unused if _field_of(columns[index]) in mapping]
    for index in displaced:
        name = _field_of(columns[index])
        assert name is not None
        notes.append(
            f"column '{short(columns[index])}' is not read: {name} comes from "
            f"'{short(columns[found[name]])}', as the job maps it"
        )
    others = [index for index in unused if index not in displaced]
    if others:
        listed = ", ".join(_unused_column(columns[index]) for index in others[:_LIST_COLUMNS])
        if len(others) > _LIST_COLUMNS:
            listed += f" and {len(others) - _LIST_COLUMNS} more"
        notes.append(
            f"columns not read: {listed} (to read one as a field, map it: "
            f'--column FIELD="HEADER", or columns: in the job; FIELD is one of '
            f"{', '.join(COLUMN_FIELDS)})"
        )
    return tuple(notes)


def _unused_column(header: str) -> str:
    """An unused column as a note lists it, with the field its name is close to, if any."""
    shown = f"'{short(header)}'"
    close = difflib.get_close_matches(header_key(header), list(_ALIAS_TO_FIELD), n=1, cutoff=0.8)
    if close:
        shown += f" (did you mean {_ALIAS_TO_FIELD[close[0]]}?)"
    return shown


def _listed(columns: Sequence[str]) -> str:
    listed = ", ".join(f"'{short(name)}'" for name in columns[:_LIST_COLUMNS]) or "none"
    if len(columns) > _LIST_COLUMNS:
        listed += f" and {len(columns) - _LIST_COLUMNS} more ({len(columns)} columns)"
    return listed


def short(name: str, limit: int = _COLUMN_SHOWN) -> str:
    """A column name fit for a one-line message: printable and at most ``limit`` characters."""
    name = printable(name)
    return name if len(name) <= limit else name[: limit - 3] + "..."
