"""The audit trail: one append-only, hash-chained log per report folder (or web data folder),
signed checkpoints, verification, and evidence packs.

- ``chain``: the entry format and the chaining rule (no files, no keys);
- ``log``: :class:`AuditLog`, the one API that writes entries (CLI and web alike);
- ``signing``: the installation's Ed25519 key (the only module using ``cryptography``);
- ``runs``: a run's journal dump and file hashes, the CLI's actor;
- ``verify`` / ``folder`` / ``pack``: checking a log, a folder, an evidence pack; writing one.

Event names are the constants below; every entry says who (``actor``), when, on which host,
which objects, and what (``details``), never a credential, password or token.
"""

from __future__ import annotations

from pcxbatch.audit.log import LOG_NAME, AuditLog

__all__ = ["LOG_NAME", "AuditLog", "Event"]


class Event:
    """The event names entries use (one home: the CLI's runner and the web service share it)."""

    UPLOAD = "upload"
    VALIDATE = "validate"
    PREVIEW = "preview"
    SUBMIT = "submit"
    APPROVE = "approve"
    REJECT = "reject"
    RUN_START = "run.start"
    RUN_RESUME = "run.resume"
    RUN_DECLINE = "run.decline"
    RUN_STOP = "run.stop"
    RUN_FINISH = "run.finish"
    RUN_CANCEL = "run.cancel"
    RETRY = "retry"  # a new job of a run's failed rows (web)
    UNDO = "undo"  # a new job of a run's undo.csv (web)
    RETENTION = "retention"  # expired uploads and report files removed (web)
    DOWNLOAD = "download"
    EXPORT = "export"
    SIGN_IN = "sign_in"
    SIGN_IN_REFUSED = "sign_in.refused"
    SIGN_OUT = "sign_out"
    ACCOUNT_CHANGE = "account.change"
    CHECKPOINT = "checkpoint"
