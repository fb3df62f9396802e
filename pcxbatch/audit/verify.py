"""Checking an audit log: the chain, the signed checkpoints, and what the entries vouch for.

In: a log's entries (from a folder's ``audit.jsonl`` or from an evidence pack), and optionally
a head (``N:DIGEST``) and a key fingerprint kept outside the installation. Out: a
:class:`Verdict`: every problem found, in log order (the first names the first entry that is
wrong), how many entries a valid signed checkpoint covers, and the files and journals the
entries last vouched for, which the caller (a folder, a pack) compares with what it holds.
Row-level detail is not here: the entries vouch for a journal by its digest (``runs``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pcxbatch.audit.chain import BadEntry, Entry, checkpoint_message, link_problem
from pcxbatch.audit.signing import check_signature, fingerprint, public_raw, same_fingerprint

#: Events that open a run (its journal changes until a closing entry records it again).
OPENING = frozenset({"run.start", "run.resume"})
#: The entry of a retention sweep (``Event.RETENTION``): the runs its ``details.runs`` names
#: had their files removed on purpose, after the entries that vouched for them.
RETENTION = "retention"


@dataclass
class Vouched:
    """What the entry ``seq`` recorded: a file's SHA-256, or a journal's digest."""

    seq: int
    value: Any


@dataclass
class Verdict:
    """The result of checking a log."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    entries: int = 0
    checkpoints: int = 0
    witnessed: int = 0  # entries covered by the last valid checkpoint
    unwitnessed: int = 0  # entries after it
    keys: list[str] = field(default_factory=list)  # fingerprints that signed, in order
    files: dict[str, Vouched] = field(default_factory=dict)
    journals: dict[str, Vouched] = field(default_factory=dict)
    opened: dict[str, int] = field(default_factory=dict)  # run -> seq of its last opening
    digests: dict[int, str] = field(default_factory=dict)
    signed_at: set[int] = field(default_factory=set)  # seqs of checkpoint entries
    inputs: dict[str, str] = field(default_factory=dict)  # run -> input SHA-256

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


def parse_head(text: str) -> tuple[int, str]:
    """``N:DIGEST`` (as ``pcxbatch audit head`` prints it) as (N, digest);
    :class:`ValueError` otherwise."""
    count, sep, digest = text.strip().partition(":")
    digest = digest.lower()
    if not sep or not count.isdigit() or len(digest) != 64 or set(digest) - set("0123456789abcdef"):
        raise ValueError(f"not a head: {text!r} (expected N:DIGEST, as pcxbatch audit head prints)")
    return int(count), digest


def check_entries(
    lines: Iterable[tuple[int, Entry | BadEntry]],
    *,
    head: tuple[int, str] | None = None,
    key: str | None = None,
) -> Verdict:
    """Check the chain and the checkpoints of a log's lines (:func:`log.read_entries`)."""
    verdict = Verdict()
    before: Entry | None = None
    resync = False  # after a line that is not an entry, the next one starts a new run of links
    last_seq = 0
    for number, item in lines:
        if isinstance(item, BadEntry):
            verdict.problems.append(f"line {number}: {item}")
            resync = True
            continue
        if not resync:
            problem = link_problem(item, before)
            if problem:
                verdict.problems.append(f"{_name(item, number)}: {problem}")
        resync = False
        before, last_seq = item, item.seq
        verdict.entries += 1
        verdict.digests[item.seq] = item.digest
        if item.event == "checkpoint":
            verdict.signed_at.add(item.seq)
            _check_checkpoint(item, number, verdict, key)
        elif item.body is not None:
            _note_vouched(item, verdict)
    _count_unwitnessed(verdict)
    if head is not None:
        _check_head(head, verdict, last_seq)
    if key is None and verdict.keys:
        verdict.notes.append(
            "signatures were checked against the key the log names; to prove they were not"
            " re-signed, pass --key with the fingerprint you kept (pcxbatch audit key)"
        )
    return verdict


def _name(entry: Entry, number: int) -> str:
    when = f", {entry.body.get('time')}" if entry.body else ""
    return f"entry {entry.seq} (line {number}, {entry.event}{when})"


def _check_checkpoint(entry: Entry, number: int, verdict: Verdict, key: str | None) -> None:
    assert entry.body is not None
    cp = entry.body.get("checkpoint")
    name = _name(entry, number)
    if not isinstance(cp, Mapping):
        verdict.problems.append(f"{name}: a checkpoint without its signed part")
        return
    count, head, public = cp.get("count"), cp.get("head"), str(cp.get("public_key", ""))
    try:
        signer = fingerprint(public_raw(public))
    except ValueError:
        verdict.problems.append(f"{name}: the checkpoint's public key is not an Ed25519 key")
        return
    message = checkpoint_message(count, head, cp.get("time", ""))  # type: ignore[arg-type]
    if not check_signature(public, message, str(cp.get("signature", ""))):
        verdict.problems.append(f"{name}: the checkpoint's signature is not valid")
        return
    if not isinstance(count, int) or verdict.digests.get(count) != head:
        verdict.problems.append(
            f"{name}: the checkpoint signs entry {count} with a digest the log does not hold"
        )
        return
    if key is not None and not same_fingerprint(key, signer):
        verdict.problems.append(
            f"{name}: signed by key {signer}, not by the key you hold ({key}): re-signed"
        )
        return
    if verdict.keys and signer != verdict.keys[-1]:
        verdict.problems.append(
            f"{name}: signed by another key ({signer}) than the checkpoints before it"
        )
    verdict.keys.append(signer)
    verdict.checkpoints += 1
    verdict.witnessed = max(verdict.witnessed, count)


def _note_vouched(entry: Entry, verdict: Verdict) -> None:
    assert entry.body is not None
    if entry.event == RETENTION:
        _retired(entry.body.get("details") or {}, verdict)
    for path, sha in (entry.body.get("files") or {}).items():
        verdict.files[str(path)] = Vouched(entry.seq, sha)
    journal = entry.body.get("journal")
    if isinstance(journal, Mapping) and "run" in journal:
        verdict.journals[str(journal["run"])] = Vouched(entry.seq, dict(journal))
    objects = entry.body.get("objects") or {}
    run = objects.get("run")
    if run and entry.event in OPENING:
        verdict.opened[str(run)] = entry.seq
    sha = (entry.body.get("details") or {}).get("input_sha256")
    if run and sha:
        verdict.inputs[str(run)] = str(sha)


def _retired(details: Mapping[str, Any], verdict: Verdict) -> None:
    """A sweep removed these runs' files: what entries before it vouched for is gone on
    purpose, and on record (the entries themselves stay)."""
    for run in details.get("runs") or []:
        verdict.journals.pop(str(run), None)
        for name in [n for n in verdict.files if n.startswith(f"{run}/")]:
            del verdict.files[name]


def _count_unwitnessed(verdict: Verdict) -> None:
    # Checkpoint entries are signatures themselves, not events that need witnessing.
    verdict.unwitnessed = sum(
        1 for seq in verdict.digests if seq > verdict.witnessed and seq not in verdict.signed_at
    )


def _check_head(head: tuple[int, str], verdict: Verdict, last_seq: int) -> None:
    count, digest = head
    if count not in verdict.digests:
        verdict.problems.append(
            f"the log ends at entry {last_seq}, but the head you hold is entry {count}:"
            f" entries {last_seq + 1}-{count} were cut off"
            if count > last_seq
            else f"entry {count}, the head you hold, is not in the log"
        )
    elif verdict.digests[count] != digest:
        verdict.problems.append(
            f"entry {count} is not the entry you hold as the head (its digest differs):"
            " the log was rewritten up to there"
        )
