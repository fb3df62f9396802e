"""The append-only audit log of a report folder (CLI) or of the web service's data folder.

In: the folder, and for each event its name, who did it (``actor``), the objects it concerns,
its details, and optionally the files and journal it vouches for. Out: one chained entry
appended to ``FOLDER/audit.jsonl`` (``chain``), and, at each run's end and every
:data:`CHECKPOINT_EVERY` entries, a checkpoint entry signed with the installation's key
(``signing``; ``FOLDER/.audit-key`` unless ``PCXBATCH_AUDIT_KEY`` names another file).

Appends are serialised across processes with an exclusive lock on ``FOLDER/.audit.lock``, and
each entry is one ``write`` of one line, synced to disk before the call returns; a write the
disk refuses part-way is cut back off, so the log never ends in half an entry. Entries record
events, never rows: a run of a million rows writes a handful of them. They hold no credential,
password or token, and no personal data beyond user ids (details are the caller's; see
``events``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pcxbatch.audit.chain import (
    GENESIS,
    BadEntry,
    Entry,
    canonical,
    checkpoint_message,
    make_entry,
    parse_entry,
)
from pcxbatch.errors import UnusableError

LOG_NAME = "audit.jsonl"
KEY_NAME = ".audit-key"
LOCK_NAME = ".audit.lock"
KEY_ENV = "PCXBATCH_AUDIT_KEY"
#: A checkpoint after this many entries, besides the one at every run's end.
CHECKPOINT_EVERY = 50
#: How much of the log's end is read to find the last entry (entries are small).
_TAIL = 256 * 1024


def _now() -> datetime:
    return datetime.now(UTC)


def key_path(folder: Path) -> Path:
    """Where the folder's signing key is: ``PCXBATCH_AUDIT_KEY``, else ``FOLDER/.audit-key``."""
    named = os.environ.get(KEY_ENV)
    return Path(named).expanduser() if named else folder / KEY_NAME


class AuditLog:
    """The audit log in ``folder``. Cheap to make; each :meth:`record` opens, locks and closes.

    ``clock`` dates the entries (tests pass a virtual one); ``host`` defaults to this machine's
    name.
    """

    def __init__(
        self,
        folder: Path,
        *,
        clock: Callable[[], datetime] = _now,
        host: str | None = None,
    ) -> None:
        self.folder = folder
        self.path = folder / LOG_NAME
        self._clock = clock
        self._host = host or socket.gethostname()

    def record(
        self,
        event: str,
        actor: Mapping[str, str],
        *,
        objects: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
        files: Mapping[str, str] | None = None,
        journal: Mapping[str, Any] | None = None,
        checkpoint: bool = False,
    ) -> Entry:
        """Append one entry for ``event`` and return it; then a signed checkpoint when
        ``checkpoint`` (a run's end) or when one is due.

        ``files`` maps paths relative to the folder to their SHA-256; ``journal`` is a run's
        journal digest (``runs.journal_digest``). Both are what ``audit verify`` checks later.
        An :class:`OSError` from the disk is the caller's to report (nothing half-written).
        """
        body: dict[str, Any] = {
            "event": event,
            "time": self._time(),
            "host": self._host,
            "actor": dict(actor),
            "objects": dict(objects or {}),
            "details": dict(details or {}),
        }
        if files:
            body["files"] = dict(files)
        if journal:
            body["journal"] = dict(journal)
        with self._locked() as fd:
            last = _last_entry(fd)
            entry = make_entry(last.seq + 1 if last else 1, last.digest if last else GENESIS, body)
            _append(fd, entry)
            if checkpoint or entry.seq % CHECKPOINT_EVERY == 0:
                _append(fd, self._checkpoint(entry))
        return entry

    def check_key(self) -> None:
        """Load (or make) the signing key now: :class:`UnusableError` when it cannot be used,
        before anything is done that a checkpoint must later sign."""
        from pcxbatch.audit.signing import load_or_create

        with self._locked():
            load_or_create(key_path(self.folder))

    def public_key(self) -> tuple[str, str]:
        """The signing key's public half (base64) and fingerprint (made if there is none)."""
        from pcxbatch.audit.signing import load_or_create

        with self._locked():
            signer = load_or_create(key_path(self.folder))
        return signer.public_b64, signer.fingerprint

    def sign(self, data: bytes) -> tuple[bytes, str, str]:
        """A detached signature of ``data`` by the installation's key (raw 64 bytes, as
        ``openssl pkeyutl -verify -rawin`` takes it), the public key (base64), its fingerprint.

        For evidence handed out (the web service's signed plan download): anyone holding the
        public key can check the file was the server's, byte for byte.
        """
        import base64

        from pcxbatch.audit.signing import load_or_create

        with self._locked():
            signer = load_or_create(key_path(self.folder))
        return base64.b64decode(signer.sign(data)), signer.public_b64, signer.fingerprint

    def checkpoint(self) -> Entry | None:
        """Sign the current head now (None when the log is empty)."""
        with self._locked() as fd:
            last = _last_entry(fd)
            if last is None:
                return None
            entry = self._checkpoint(last)
            _append(fd, entry)
            return entry

    def _checkpoint(self, head: Entry) -> Entry:
        from pcxbatch.audit.signing import load_or_create

        signer = load_or_create(key_path(self.folder))
        time = self._time()
        signed = {
            "count": head.seq,
            "head": head.digest,
            "time": time,
            "key": signer.fingerprint,
            "public_key": signer.public_b64,
            "signature": signer.sign(checkpoint_message(head.seq, head.digest, time)),
        }
        body = {"event": "checkpoint", "time": time, "host": self._host, "checkpoint": signed}
        return make_entry(head.seq + 1, head.digest, body)

    def _time(self) -> str:
        return self._clock().astimezone(UTC).isoformat(timespec="milliseconds")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        """The log opened for appending, under the folder's audit lock (waits for it)."""
        lock = _open_own(self.folder / LOCK_NAME, os.O_RDWR)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            fd = _open_own(self.path, os.O_RDWR | os.O_APPEND)
            try:
                yield fd
            finally:
                os.close(fd)
        finally:
            os.close(lock)


def read_entries(path: Path) -> Iterator[tuple[int, Entry | BadEntry]]:
    """Every line of a log: (line number, its entry or why it is not one). Read only."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield number, parse_entry(line)
            except BadEntry as exc:
                yield number, exc


def latest_checkpoint(path: Path) -> Entry | None:
    """The last checkpoint entry of the log in ``path``, or None."""
    found = None
    for _, entry in read_entries(path):
        if isinstance(entry, Entry) and entry.event == "checkpoint":
            found = entry
    return found


def _open_own(path: Path, flags: int) -> int:
    """Open (creating owner-only) a file of ours, never through a symbolic link."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise UnusableError(f"{path}: cannot open the audit log: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        raise UnusableError(f"{path}: not a plain file of yours; pcxbatch will not write to it")
    return fd


def _last_entry(fd: int) -> Entry | None:
    """The log's last good entry. A torn last line (a crash mid-write on a disk that split it)
    is ended with a newline, so the next entry starts on a line of its own; verify names it."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    start = max(0, size - _TAIL)
    tail = os.pread(fd, size - start, start)
    if not tail.endswith(b"\n"):
        os.write(fd, b"\n")
    lines = tail.splitlines()
    if start > 0:
        lines = lines[1:]  # the first may be a part line
    for line in reversed(lines):
        with contextlib.suppress(BadEntry, UnicodeDecodeError):
            return parse_entry(line.decode("utf-8"))
    raise UnusableError(
        "the audit log's last entries cannot be read; pcxbatch audit verify names what is wrong"
    )


def _append(fd: int, entry: Entry) -> None:
    """Write ``entry`` as one line and sync it; on a refused write, cut the log back."""
    data = canonical(entry.to_json()) + b"\n"
    size = os.fstat(fd).st_size
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(28, "No space left on device")  # a short write: the disk is full
        os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise
