"""Job definitions: a YAML job file and command-line flags, checked as a whole.

In: a job file path (or an input file path for an ad-hoc run) and a mapping of flag overrides.
Out: a :class:`Job`, or a :class:`~pcxbatch.errors.ConfigError` listing every problem at once,
each naming its key. Relative paths in a job file are taken from the job file's folder; paths
given as flags are taken from the current directory.

Credentials are never part of a job: they come from the environment or from a file the job
names (``credentials_file``), so a job file can be shared and committed safely.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from pcxbatch.errors import ConfigError
from pcxbatch.model import DEACTIVATED_STATUS, SETTABLE_STATUSES, Action
from pcxbatch.retry import DEADLINE, GIVE_UP_AFTER, MAX_RETRY_AFTER
from pcxbatch.rules import (
    COLUMN_FIELDS,
    DEFAULT_BASE_URL,
    DEFAULT_ID_PATTERN,
    DEFAULT_PAGE_SIZE,
    HIDDEN_ROW_CHOICES,
    check_base_url,
    compile_id_pattern,
    read_action,
    read_status,
    word_key,
)
from pcxbatch.sandbox.job import check_job_sandbox

JOB_SUFFIXES = (".yaml", ".yml")

#: Settings of the built-in sandbox a job may carry under ``sandbox:``, defined on
#: ``SandboxConfig``'s fields.


@dataclass(frozen=True)
class Job:
    """Everything a run needs except credentials. Built only by :func:`load_job`."""

    name: str
    input: Path
    sheet: str | int | None = None
    #: Workbook rows hidden by hand or by a filter: refuse the file, skip them, or include them.
    hidden_rows: str = "refuse"
    # --- where the table is in the input, and which column is which (issue 13) ---------------
    #: The header's row number as the spreadsheet shows it; ``None``: the first of the first 20
    #: non-blank rows that holds a user-ID header (title rows above it are skipped).
    header_row: int | None = None
    #: Each field's column, by its header text: ``columns: {status: "New Status"}`` in a job,
    #: ``--column status="New Status"`` (repeatable, wins per field) on the command line.
    columns: Mapping[str, str] = field(default_factory=dict)
    action: Action | None = None
    status: str | None = None
    reason: str | None = None
    updated_by: str | None = None
    base_url: str = DEFAULT_BASE_URL
    credentials_file: Path | None = None
    report_dir: Path = Path("reports")
    #: Requests/s at most, or ``"auto"``: find the limit (``Limiter.finding``) under max_rate.
    rate: float | Literal["auto"] = 10.0
    max_rate: float | None = None  # None: MAX_RATE
    #: Where runs on the same API key share its stated rate: a SQLite file, a postgresql:// URL,
    #: or "off"; None: ``PCXBATCH_PACING_STORE``, else the user's cache folder (``sharedpace``).
    pacing_store: str | None = None
    burst: int = 1
    concurrency: int = 8
    max_attempts: int = 8
    # --- waiting on the API: how long a request, a server's wait, a dead API may take --------
    #: Seconds one attempt may take in all, the answer's body included (the gateway gives up
    #: after ~29 s, so its 504 is seen).
    request_timeout: float = DEADLINE
    #: The longest ``Retry-After`` a run waits for; a longer one (a daily quota) stops the run,
    #: resumable, with the time the API named.
    max_retry_wait: float = MAX_RETRY_AFTER
    #: Seconds of attempts failing with no answer (refused, timed out, 5xx) before the run
    #: stops, resumable, rather than fail every row.
    give_up_after: float = GIVE_UP_AFTER
    id_pattern: str = DEFAULT_ID_PATTERN
    max_rows: int | None = None
    max_bytes: int | None = None  # None: read's default limit
    #: Stop the run (resumable) when more than this share of the last ``failure_window``
    #: answered rows failed: a broken key or a wrong file must not burn through a list.
    max_failure_rate: float = 0.5
    failure_window: int = 50
    # -- reading statuses around the sends (pcxbatch.settle; README "What each answer means") --
    #: ``auto``: read users' statuses before sending, and to settle open answers after, when the
    #: listing costs no more than a quarter of the sends; ``always``; ``never``.
    read_before_send: str = "auto"
    #: Minutes a status read stays fresh enough to skip a row without a request; older reads
    #: are made again (on a resume, an apply) for the rows still to send.
    max_read_age: float = 5.0
    dry_run: bool = False
    yes: bool = False
    #: Plain http to a host that is not loopback: only when asked for by this loud name.
    allow_insecure_http: bool = False
    #: Preview: only users of this organisation are listed (the narrowest filter PCX offers).
    org_id: str | None = None
    list_page_size: int = DEFAULT_PAGE_SIZE
    #: Apply: refuse plans older than this, and (if set) plans previewed by the applier.
    max_plan_age_hours: float = 24.0
    require_second_person: bool = False
    #: Every row's updated_by is the job's, whatever a column of the file says (the web service:
    #: the signed-in account answers for the change, not a name typed into the spreadsheet).
    fixed_updated_by: bool = False
    #: ``None``: a real API. A mapping (possibly empty): run against the built-in sandbox.
    sandbox: Mapping[str, Any] | None = None
    source: str = ""  # the job file, or "command line", for messages
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


#: The keys a job file may hold: the Job's fields, except what load_job itself fills in.
JOB_KEYS: frozenset[str] = frozenset(f.name for f in fields(Job)) - {"source", "raw"}


def is_input_file(path: Path) -> bool:
    """True when ``path`` is not a job file, so it is the input of an ad-hoc run.

    ``read`` judges whether it is a file it can read, and says so if not.
    """
    return path.suffix.lower() not in JOB_SUFFIXES


def load_job(target: Path, overrides: Mapping[str, Any] | None = None) -> Job:
    """Build a :class:`Job` from a job file or an input file, plus flag overrides.

    ``target`` is a ``.yaml``/``.yml`` job file, or a spreadsheet for an ad-hoc run. ``overrides``
    holds flag values (``None`` values are ignored); they win over the job file. Raises
    :class:`ConfigError` with every problem found.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if is_input_file(target):
        data: dict[str, Any] = {"input": str(target), "name": _slug(target.stem)}
        base_dir = Path.cwd()
        source = "command line"
    else:
        data = _read_yaml(target)
        base_dir = target.parent.absolute()  # stored paths never depend on the working dir
        source = str(target)
        data.setdefault("name", _slug(target.stem))
    problems = [f"{key}: unknown key" for key in data if key not in JOB_KEYS]
    for key in ("input", "report_dir", "credentials_file"):
        # Paths in the job file are relative to the job file; flags to the current directory.
        if key in data and isinstance(data[key], str | Path):
            data[key] = Path(os.path.normpath(base_dir / Path(data[key]).expanduser()))
    data.update(overrides)
    job = _check(data, source, problems)
    return job


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), ["the job file does not exist"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read the job file: {exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(str(path), [f"not valid YAML{at}: {problem}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), ["a job file must be a mapping of keys to values"])
    # YAML 1.1 reads a bare `yes` key as the boolean True: give it back its name.
    return {("yes" if k is True else str(k)): v for k, v in data.items()}


def _check(data: Mapping[str, Any], source: str, problems: list[str]) -> Job:
    """Turn raw values into a Job, collecting every problem (each naming its key) before
    raising. Each group of keys has its own check, in the order problems are listed."""
    check = _Values(data, problems)
    _check_texts(check)
    _check_action_and_status(check)
    _check_flags(check)
    _check_base_url(check)
    _check_paths(check)
    _check_numbers(check)
    _check_id_pattern(check)
    _check_read_mode(check)
    _check_sandbox_key(check)
    _check_table_layout(check)
    if problems:
        raise ConfigError(source, problems)
    return Job(source=source, raw=dict(data), **check.values)


class _Values:
    """A job's raw values (``data``) being read: what is usable so far (``values``, by Job
    field) and every problem found (``problems``)."""

    def __init__(self, data: Mapping[str, Any], problems: list[str]) -> None:
        self.data = data
        self.problems = problems
        self.values: dict[str, Any] = {}

    def text(self, key: str) -> str | None:
        """The key's value as stripped text; None when absent or empty."""
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.problems.append(f"{key}: must be text")
            return None
        return str(value).strip() or None

    def number(self, key: str, kind: type, low: float, high: float) -> Any:
        """The key's value as ``kind`` (int or float) within [low, high]; None when absent."""
        value = self.data.get(key)
        if value is None:
            return None
        try:
            if isinstance(value, bool):
                raise ValueError
            converted = kind(value)
            if kind is int and converted != float(value):
                raise ValueError
        except (TypeError, ValueError):
            self.problems.append(f"{key}: must be a {'whole ' if kind is int else ''}number")
            return None
        if not (low <= converted <= high) or (kind is float and not math.isfinite(converted)):
            self.problems.append(f"{key}: must be between {low:g} and {high:g}")
            return None
        return converted

    def flag(self, key: str) -> bool | None:
        """The key's value, which must be true or false; None when absent."""
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.problems.append(f"{key}: must be true or false")
            return None
        return value


_TEXT_KEYS = ("reason", "updated_by", "org_id", "pacing_store")
_FLAG_KEYS = ("dry_run", "yes", "allow_insecure_http", "require_second_person", "fixed_updated_by")
_PATH_KEYS = ("input", "credentials_file", "report_dir")
#: (key, type, lowest, highest) for every number a job holds.
_NUMBER_KEYS: tuple[tuple[str, type, float, float], ...] = (
    ("max_rate", float, 0.01, 10_000),
    ("burst", int, 1, 10_000),
    ("concurrency", int, 1, 512),
    ("max_attempts", int, 1, 100),
    ("request_timeout", float, 1, 3600),
    ("max_retry_wait", float, 0, 7 * 24 * 3600),
    ("give_up_after", float, 5, 7 * 24 * 3600),
    ("max_rows", int, 1, 100_000_000),
    ("max_bytes", int, 1, 10**12),
    ("max_failure_rate", float, 0.0, 1.0),
    ("failure_window", int, 1, 100_000),
    ("list_page_size", int, 1, 10_000),
    ("max_plan_age_hours", float, 0.01, 24 * 365),
    ("max_read_age", float, 0.0, 24 * 60 * 365),
)
#: The words ``read_before_send`` takes (``pcxbatch.settle.ReadMode``).
READ_MODES = ("auto", "always", "never")


def _check_texts(check: _Values) -> None:
    """``name`` (made safe for folder names), ``sheet``, and the free texts."""
    check.values["name"] = _slug(check.text("name") or "job")
    sheet = check.data.get("sheet")
    if sheet is not None:
        if isinstance(sheet, bool) or not isinstance(sheet, str | int):
            check.problems.append("sheet: must be a sheet name or a 0-based sheet number")
        else:
            check.values["sheet"] = sheet
    hidden = check.text("hidden_rows")
    if hidden is not None:
        if hidden.lower() in HIDDEN_ROW_CHOICES:
            check.values["hidden_rows"] = hidden.lower()
        else:
            check.problems.append(f"hidden_rows: must be one of {', '.join(HIDDEN_ROW_CHOICES)}")
    for key in _TEXT_KEYS:
        value = check.text(key)
        if value is not None:
            check.values[key] = value


def _check_action_and_status(check: _Values) -> None:
    """``action`` and ``status`` (``rules.read_action``/``read_status``): a status that means
    a deactivation implies the action, and contradictions are refused."""
    action = check.text("action")
    if action is not None:
        named = read_action(action)
        if named is None:
            check.problems.append("action: must be one of deactivate, set_status")
        else:
            check.values["action"] = named
    status = check.text("status")
    if status is None:
        return
    normal = read_status(status)
    if normal is None:
        allowed = ", ".join((*SETTABLE_STATUSES, DEACTIVATED_STATUS))
        check.problems.append(f"status: {status!r} is not one of {allowed}")
    elif normal == DEACTIVATED_STATUS:
        if check.values.setdefault("action", Action.DEACTIVATE) is not Action.DEACTIVATE:
            check.problems.append("status: 'inactive' is only reached with action deactivate")
    else:
        check.values["status"] = normal
        if check.values.get("action") is Action.DEACTIVATE:
            check.problems.append(f"status: {normal!r} contradicts action deactivate")


def _check_flags(check: _Values) -> None:
    for key in _FLAG_KEYS:
        setting = check.flag(key)
        if setting is not None:
            check.values[key] = setting


def _check_base_url(check: _Values) -> None:
    """``base_url`` by ``rules.check_base_url``, the rule the client applies (after the flags:
    ``allow_insecure_http`` decides whether plain http is allowed)."""
    base_url = check.text("base_url")
    if base_url is None:
        return
    insecure = bool(check.values.get("allow_insecure_http"))
    try:
        check.values["base_url"] = check_base_url(base_url, allow_insecure_http=insecure)
    except ValueError as exc:
        check.problems.append(f"base_url: {exc}")


def _check_paths(check: _Values) -> None:
    """The paths (already made absolute by ``load_job``); ``input`` is required."""
    if check.data.get("input") is None:
        check.problems.append("input: required (the CSV or XLSX file of user IDs)")
    for key in _PATH_KEYS:
        value = check.data.get(key)
        if value is None:
            continue
        if isinstance(value, str | os.PathLike) and str(value).strip():
            check.values[key] = Path(value)
        else:
            check.problems.append(f"{key}: must be a file or folder path")


MAX_RATE = 10_000.0  # the highest stated rate, and what ``rate: auto`` may try by default
AUTO_RATE = "auto"  # the word that makes ``rate`` find the API's limit


def _check_numbers(check: _Values) -> None:
    for key, kind, low, high in _NUMBER_KEYS:
        converted = check.number(key, kind, low, high)
        if converted is not None:
            check.values[key] = converted
    # rate: requests/s, or auto (then max_rate bounds it: without auto it would mean nothing,
    # so it is refused rather than ignored). Every --rate arrives as text.
    value = check.data.get("rate")
    if isinstance(value, str) and value.strip().lower() == AUTO_RATE:
        check.values["rate"] = AUTO_RATE
    elif (rate := check.number("rate", float, 0.01, MAX_RATE)) is not None:
        check.values["rate"] = rate
    if check.data.get("max_rate") is not None and check.values.get("rate") != AUTO_RATE:
        check.problems.append("max_rate: only with rate: auto (a stated rate is the most sent)")


def _check_id_pattern(check: _Values) -> None:
    pattern = check.text("id_pattern")
    if pattern is None:
        return
    try:
        compile_id_pattern(pattern)
        check.values["id_pattern"] = pattern
    except ValueError as exc:
        check.problems.append(f"id_pattern: {exc}")


_FIELD_KEYS = {word_key(name): name for name in COLUMN_FIELDS}


def _check_table_layout(check: _Values) -> None:
    """``header_row``, and ``columns`` (a mapping of field -> header text) with the flag
    ``--column FIELD=HEADER`` (key ``column``, a list of texts) on top of it, field by field."""
    header_row = check.number("header_row", int, 1, 1_048_576)
    if header_row is not None:
        check.values["header_row"] = header_row
    mapped: dict[str, str] = {}
    for name, header, where in _column_pairs(check):
        known = _FIELD_KEYS.get(word_key(name))  # user_id, User ID and user-id are one field
        if known is None:
            near = difflib.get_close_matches(name, COLUMN_FIELDS, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            fields_ = ", ".join(COLUMN_FIELDS)
            check.problems.append(
                f"{where}: {name!r} is not a field{hint}; the fields are {fields_}"
            )
        elif (
            isinstance(header, bool) or not isinstance(header, str | int) or not str(header).strip()
        ):
            check.problems.append(f"{where}: {known} must name a header (the column's title)")
        else:
            mapped[known] = " ".join(str(header).split())
    if mapped:
        check.values["columns"] = mapped


def _column_pairs(check: _Values) -> list[tuple[str, object, str]]:
    """(field, header, where it was set) from ``columns:``, then from each ``--column``."""
    pairs: list[tuple[str, object, str]] = []
    columns = check.data.get("columns")
    if isinstance(columns, Mapping):
        pairs = [(str(name), header, "columns") for name, header in columns.items()]
    elif columns is not None:
        check.problems.append('columns: must map fields to headers, e.g. {status: "New Status"}')
    flags = check.data.get("column") or ()
    for text in [flags] if isinstance(flags, str) else flags:
        name, equals, header = str(text).partition("=")
        if equals:
            pairs.append((name.strip(), header, "--column"))
        else:
            check.problems.append(
                f'--column {text}: must be FIELD=HEADER, e.g. status="New Status"'
            )
    return pairs


def _check_read_mode(check: _Values) -> None:
    raw = check.data.get("read_before_send")
    if raw is None:
        return
    # true/false (which YAML 1.1 also reads `yes`/`no` as) mean always/never.
    mode = {True: "always", False: "never"}.get(raw, raw) if isinstance(raw, bool) else raw
    if not isinstance(mode, str) or mode.strip().lower() not in READ_MODES:
        check.problems.append(f"read_before_send: must be one of {', '.join(READ_MODES)}")
    else:
        check.values["read_before_send"] = mode.strip().lower()


def _check_sandbox_key(check: _Values) -> None:
    """``sandbox``: absent or false for a real API; true or a mapping of its settings."""
    sandbox = check.data.get("sandbox")
    if sandbox is not None and sandbox is not False:
        check.values["sandbox"] = check_job_sandbox(sandbox, check.problems)


def _slug(name: str) -> str:
    """A name safe for folder and lock-file names."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")
    return slug[:60] or "job"


#: The settings that decide what a run sends: a resume under different ones is refused.
_FINGERPRINT_KEYS = (
    "sheet", "hidden_rows", "header_row", "columns", "action", "status", "reason", "updated_by",
    "fixed_updated_by", "id_pattern", "base_url",
)  # fmt: skip


def job_to_dict(job: Job) -> dict[str, Any]:
    """The job as JSON-ready values, stored in a run's journal so the run can be resumed."""
    data: dict[str, Any] = {}
    for name in Job.__dataclass_fields__:
        if name == "raw":
            continue
        value = getattr(job, name)
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, Action):
            value = value.value
        elif name == "sandbox" and value is not None:
            value = dict(value)
        data[name] = value
    return data


def job_from_dict(data: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> Job:
    """Rebuild a job stored by :func:`job_to_dict`, with flag overrides checked as usual."""
    values = {k: v for k, v in data.items() if k in JOB_KEYS}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return _check(values, str(data.get("source") or "stored job"), [])


def fingerprint(job: Job) -> dict[str, Any]:
    """The part of a job that decides what is sent for each row (see ``_FINGERPRINT_KEYS``)."""
    stored = job_to_dict(job)
    return {key: stored[key] for key in _FINGERPRINT_KEYS}
