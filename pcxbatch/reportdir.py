"""The report folder: one owner, one lock per job, a record of applied plans, and plain words
for what the disk refuses.

In: a report folder path (from a job, or the parent of a run folder) and the current Unix user.
Out: the folder as an absolute path, checked (:func:`prepare`: it is a folder, it belongs to
whoever runs pcxbatch, nobody else may write in it); the job's lock (:func:`lock`:
``REPORT_DIR/.<job>.lock``, ``flock``, released by the kernel if the process dies); the record
of applied plans (``REPORT_DIR/.applied-plans/<plan hash>.json``, :func:`apply_record`); and
:func:`environment_problem`, the one place an ``OSError`` or SQLite error from the disk becomes
one line for a person.

Why one owner: whoever can write in the report folder can plant a file where pcxbatch will write
(a lock file made a symbolic link to ``~/.bashrc``), or a fake run folder whose rows a later run
would "resume" with the real credential. So the folder must belong to the user running
pcxbatch and be writable by nobody else; the lock is opened without following links and
rewritten only once it is known to be a regular file of ours; run folders of other owners are
never read. Another user who needs to apply a colleague's plan uses a report folder of their
own (``--report-dir``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pcxbatch.errors import LockedError, UnusableError

#: Where the record of applied plans lives, in the report folder's root.
APPLIED_DIR = ".applied-plans"

_DISK_WORDS = {
    errno.ENOSPC: "the disk is full (no space left on the device)",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the disk is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "the disk reported an input/output error",
}
_SQLITE_WORDS = (
    ("database or disk is full", "the disk is full (no space left on the device)"),
    ("readonly database", "the disk or the journal is read-only"),
    ("disk i/o error", "the disk reported an input/output error"),
    ("unable to open database", "the journal cannot be opened"),
    ("not a database", "the journal is damaged (not an SQLite database)"),
    ("malformed", "the journal is damaged (its database image is malformed)"),
)


def environment_problem(exc: BaseException) -> str | None:
    """What the disk or the system refused, in words, for an error that is not pcxbatch's bug:
    a full, read-only or failing disk, a permission refused, a damaged journal. None otherwise.
    """
    if isinstance(exc, OSError) and exc.errno in _DISK_WORDS:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{_DISK_WORDS[exc.errno]}{where}"
    if isinstance(exc, sqlite3.DatabaseError):
        text = str(exc).lower()
        for needle, words in _SQLITE_WORDS:
            if needle in text:
                return words
    return None


def owner_name(uid: int) -> str:
    """The login name of ``uid`` (its number when it has none)."""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def settle(path: Path) -> Path:
    """``path`` as an absolute path with symbolic links resolved: the same folder, named the same
    way, whatever the working directory."""
    return Path(os.path.realpath(os.path.abspath(path.expanduser())))


def prepare(folder: Path) -> Path:
    """The report folder, created owner-only if missing, checked, as an absolute path.

    Refused in one line (:class:`UnusableError`): not a folder, cannot be created, belongs to
    another user (naming them, and saying how to use a folder of one's own), or may be written
    by group or others.
    """
    folder = settle(folder)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
    except OSError as exc:
        why = environment_problem(exc) or exc.strerror or str(exc)
        raise UnusableError(f"{folder}: cannot be used as the report folder: {why}") from None
    check_owned(folder, info)
    if info.st_mode & 0o022:
        raise UnusableError(
            f"{folder}: the report folder may be written by group or others, who could plant"
            f" files pcxbatch would trust or overwrite; make it yours alone: chmod go-w {folder}"
        )
    return folder


def check_owned(folder: Path, info: os.stat_result | None = None) -> None:
    """Refuse a report folder that is not a folder of the current user's."""
    info = info or folder.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise UnusableError(f"{folder}: cannot be used as the report folder: not a folder")
    if info.st_uid != os.geteuid():
        raise UnusableError(
            f"{folder}: the report folder belongs to {owner_name(info.st_uid)}, not to you"
            f" ({owner_name(os.geteuid())}); a report folder has one owner: use one of your own"
            " (--report-dir DIR, or report_dir: in the job)"
        )


@contextlib.contextmanager
def lock(folder: Path, name: str) -> Iterator[Path]:
    """Hold the exclusive lock ``folder/.<name>.lock`` while the block runs; yields ``folder``
    (checked, absolute). :class:`LockedError` when another process holds it.

    The file is opened without following a symbolic link, and only rewritten (with our process
    id) once it is known to be a regular file of ours with no other name.
    """
    folder = prepare(folder)
    path = folder / f".{name}.lock"
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise UnusableError(_lock_refused(path, exc)) from None
    try:
        _check_lock_file(path, os.fstat(fd))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(
                f"another run of job '{name}' is in progress (lock: {path}); wait for it to finish"
            ) from None
        with contextlib.suppress(OSError):  # the pid is a courtesy for people, not the lock
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        yield folder
    finally:
        os.close(fd)


def _lock_refused(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return (
            f"{path}: the lock file is a symbolic link; pcxbatch never follows one there."
            f" Remove it (rm {path}) and run again"
        )
    why = environment_problem(exc) or exc.strerror or str(exc)
    return f"{path}: cannot open the job's lock file: {why}"


def _check_lock_file(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        raise UnusableError(
            f"{path}: not a lock file pcxbatch made (not a plain file with one name); remove it"
            " and run again"
        )
    if info.st_uid != os.geteuid():
        raise UnusableError(
            f"{path}: the lock file belongs to {owner_name(info.st_uid)}, not to you; a report"
            " folder has one owner: use one of your own (--report-dir DIR)"
        )


# --- applied plans -------------------------------------------------------------------------------


def apply_record(folder: Path, plan_hash: str) -> dict[str, Any] | None:
    """What the report folder recorded about applying the plan ``plan_hash``, or None.

    Read only: a folder that cannot be read (another user's) has no record for us.
    """
    path = folder / APPLIED_DIR / f"{_hex(plan_hash)}.json"
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def record_apply(folder: Path, plan_hash: str, record: dict[str, Any]) -> None:
    """Record (atomically; call under the job's lock) that an apply of ``plan_hash`` began."""
    from pcxbatch.report import atomic_write_text

    records = folder / APPLIED_DIR
    records.mkdir(mode=0o700, exist_ok=True)
    check_owned(records)
    text = json.dumps({"plan_hash": plan_hash, **record}, indent=1) + "\n"
    atomic_write_text(records / f"{_hex(plan_hash)}.json", text)


def forget_apply(folder: Path, plan_hash: str) -> None:
    """Remove the record of an apply that sent nothing and left no run (declined, refused)."""
    with contextlib.suppress(FileNotFoundError):
        (folder / APPLIED_DIR / f"{_hex(plan_hash)}.json").unlink()


def _hex(plan_hash: str) -> str:
    if not plan_hash or any(c not in "0123456789abcdef" for c in plan_hash):
        raise UnusableError(f"not a plan hash: {plan_hash!r}")
    return plan_hash
