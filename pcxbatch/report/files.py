"""Durable writes for the report package: a file is either the old one or the complete new one.

In: a final path and what to put there. Out: the file, owner-only (:data:`FILE_MODE`), written
to a temporary name in the same folder, fsynced, then renamed over the final name, and the
folder fsynced so the rename itself survives a power loss. Why: a run folder is read by people
and by a resumed run; half a file under a final name would be believed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["FILE_MODE", "atomic_write_text", "fsync_dir", "fsync_path", "owner_only_temp"]

FILE_MODE = 0o600


def fsync_dir(directory: Path) -> None:
    """Make renames in ``directory`` durable; a platform that cannot open a folder is skipped."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_path(path: Path) -> None:
    """Flush a file someone else wrote (and closed) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def owner_only_temp(directory: Path, final_name: str) -> tuple[int, Path]:
    """A new temporary file in ``directory`` for ``final_name``: its open descriptor and path.

    Named ``.<final_name>.<random>.tmp`` (hidden, and plainly not a report), mode
    :data:`FILE_MODE` whatever the umask.
    """
    fd, name = tempfile.mkstemp(dir=directory, prefix=f".{final_name}.", suffix=".tmp")
    os.fchmod(fd, FILE_MODE)  # mkstemp's 0o600 is still subject to umask
    return fd, Path(name)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` so that ``path`` is either the old file or the new one.

    In: the final path (its folder must exist) and the text. Out: the file, mode ``0o600``.
    The text goes to a temporary file in the same folder, is fsynced, and is renamed over
    ``path``; on any error the temporary file is removed and the error propagates.
    """
    fd, tmp = owner_only_temp(path.parent, path.name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
