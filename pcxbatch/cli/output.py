"""Where the command line's words go, and what happens when nobody can take them.

In: lines and events from the commands and the UI; the process's standard streams; the
``--log-format`` asked for. Out: plain lines on stdout/stderr, or (``--log-format json``) one
JSON object per line on stderr for everything, errors and warnings included, with nothing on
stdout unless asked (``--summary``, ``--help``, a prompt).

Output is never a reason to stop a run. A closed stream (``2>&-``), a reader that went away
(``| head``), a full disk behind a redirection or a terminal that hung up: the first failed
write switches that stream to ``/dev/null`` (so that later writes, and Python's own flush at
exit, succeed quietly) and the run goes on to write its report. A standard descriptor that is
closed when pcxbatch starts is opened on ``/dev/null`` first, so no file pcxbatch opens later
(a journal, a lock) can take its number and receive what was meant for a terminal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO, cast


@dataclass
class _State:
    json: bool = False  # --log-format json: every stderr line is a JSON object
    summary: bool = False  # --summary: the closing summary on stdout even in json mode
    #: A row of the run got its answer: sending began (and a signal now must not cut the
    #: report short: while sending, the run's own handlers stop it gracefully).
    answered: bool = False


state = _State()


class SafeStream:
    """A text stream that never raises on write or flush: the first failure sends the
    descriptor to ``/dev/null`` and every later write is dropped."""

    def __init__(self, raw: TextIO, fd: int) -> None:
        self._raw = raw
        self._fd = fd
        self.broken = False

    @property
    def encoding(self) -> str:
        return getattr(self._raw, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:
        return getattr(self._raw, "errors", None)

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # click probes for a binary stream with write(b"")
            raise TypeError("SafeStream takes text")
        if not self.broken:
            try:
                self._raw.write(text)
            except (OSError, ValueError):
                self._break()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._raw.flush()
            except (OSError, ValueError):
                self._break()

    def isatty(self) -> bool:
        if self.broken:
            return False
        try:
            return self._raw.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        return self._fd

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def _break(self) -> None:
        self.broken = True
        with contextlib.suppress(OSError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._fd)
            os.close(null)
        with contextlib.suppress(OSError, ValueError):  # what was buffered now goes to devnull
            self._raw.flush()


def install() -> None:
    """Make the standard streams safe for this process (once; the console script calls it)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    for name, fd in (("stdout", 1), ("stderr", 2)):
        current = getattr(sys, name)
        if isinstance(current, SafeStream):
            continue
        if current is None:  # closed at start: Python made no stream for it
            current = open(fd, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        setattr(sys, name, cast(TextIO, SafeStream(current, fd)))


def wants_json(args: list[str]) -> bool:
    """True when the command line asks for ``--log-format json`` (read before click parses it,
    so that even a usage error is reported as JSON)."""
    for n, arg in enumerate(args):
        if arg == "--log-format=json" or (
            arg == "--log-format" and args[n + 1 : n + 2] == ["json"]
        ):
            return True
    return False


def use_json(summary: bool = False) -> None:
    """From now on every stderr line is a JSON object; warnings and log records too."""
    state.json = True
    state.summary = summary
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    warnings.showwarning = _json_warning


def quiet() -> bool:
    """True when stdout must stay empty (json asked, the summary not)."""
    return state.json and not state.summary


def emit(event: str, **fields: Any) -> None:
    """One JSON object on stderr: ``ts``, ``event``, then ``fields``."""
    record: dict[str, Any] = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "event": event,
    }
    record.update(fields)
    sys.stderr.write(json.dumps(record, ensure_ascii=True, default=str) + "\n")
    sys.stderr.flush()


def error_line(message: str, code: int, **fields: Any) -> None:
    """How the boundary reports what ended a command: a JSON ``error`` event, or one line."""
    if state.json:
        emit("error", message=message, exit_code=code, **fields)
    else:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


@contextlib.contextmanager
def speaking() -> Iterator[None]:
    """Let stdout speak while the block runs (a prompt a person must see)."""
    before, state.summary = state.summary, True
    try:
        yield
    finally:
        state.summary = before


class JsonFormatter(logging.Formatter):
    """Log records (``--debug``, library warnings) as the same JSON events."""

    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "event": "log",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        return json.dumps(body, ensure_ascii=True, default=str)


def _json_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    emit("warning", message=str(message), category=category.__name__)
