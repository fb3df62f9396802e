"""Evidence packs: one run's record in one zip, checkable on a machine with nothing else.

In (export): a run folder inside a report folder with an audit log. Out: ``PACK.zip`` holding
the run's audit entries in full (and its plan's preview entry), every other entry of the chain
sealed (digest only), up to a signed checkpoint; the public key; the report files and plan the
entries vouch for; the journal's rows as dumped for its digest; optionally the input file; and
``HOW-TO-VERIFY.txt``, a plain page saying how to check it and which fingerprint to compare.

In (verify): a pack and the fingerprint kept outside. Out: a :class:`~.verify.Verdict`: the
chain from entry 1 to the checkpoint, the signature, and each file against its entry.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pcxbatch.audit.chain import BadEntry, Entry, canonical, parse_entry
from pcxbatch.audit.log import read_entries
from pcxbatch.audit.runs import dump_digest
from pcxbatch.audit.verify import Verdict, check_entries
from pcxbatch.errors import UnusableError

ENTRIES = "audit-entries.jsonl"
MANIFEST = "manifest.json"
JOURNAL_DUMP = "journal-rows.jsonl"
HOWTO = "HOW-TO-VERIFY.txt"
PACK_FORMAT = 1


def mentions(entry: Entry, run: str, plan: str | None) -> bool:
    """Whether ``entry`` is about the run (or, for an apply, about its plan's preview)."""
    objects = (entry.body or {}).get("objects") or {}
    return objects.get("run") == run or (plan is not None and objects.get("plan") == plan)


def chosen_entries(log: Path, run: str, plan: str | None) -> list[Entry]:
    """Entries 1 to the first checkpoint after the run's last entry: the run's whole, the rest
    sealed. :class:`UnusableError` when the log is broken or the run is not witnessed in it."""
    chosen: list[Entry] = []
    last_mention = end = 0
    for number, entry in read_entries(log):
        if isinstance(entry, BadEntry):
            raise UnusableError(
                f"{log}: line {number} {entry}; pcxbatch audit verify names what is wrong"
            )
        about = mentions(entry, run, plan)
        chosen.append(entry if about or entry.event == "checkpoint" else entry.sealed())
        if about:
            last_mention, end = entry.seq, 0
        elif entry.event == "checkpoint" and last_mention and not end:
            end = len(chosen)
    if not end:
        raise UnusableError(f"{run}: not in the audit log {log}, or not yet witnessed in it")
    return chosen[:end]


def export_pack(
    entries: list[Entry],
    run: str,
    files: Mapping[str, Path],
    journal_lines: Iterator[bytes],
    out: Path,
    *,
    public_key: str,
    fingerprint: str,
    input_file: Path | None = None,
) -> Path:
    """Write the pack to ``out`` (atomically, owner-only): ``files`` maps each recorded name
    (as the entries key it) to the file on disk. Returns ``out``."""
    from pcxbatch.report.files import owner_only_temp

    fd, temp = owner_only_temp(out.parent, out.name)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
            members = {}
            for recorded, path in files.items():
                outside = Path(recorded).is_absolute()  # a plan written elsewhere
                member = "files/" + (Path(recorded).name if outside else recorded)
                zf.write(path, member)
                members[member] = recorded
            zf.writestr(ENTRIES, b"".join(canonical(e.to_json()) + b"\n" for e in entries))
            dated = zipfile.ZipInfo(JOURNAL_DUMP, time.localtime()[:6])
            dated.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(dated, "w") as dump:
                for chunk in journal_lines:
                    dump.write(chunk)
            input_member = None
            if input_file is not None:
                input_member = "input/" + input_file.name
                zf.write(input_file, input_member)
            manifest = {
                "format": PACK_FORMAT,
                "run": run,
                "public_key": public_key,
                "fingerprint": fingerprint,
                "files": members,
                "journal": JOURNAL_DUMP,
                "input": input_member,
            }
            zf.writestr(MANIFEST, json.dumps(manifest, indent=1) + "\n")
            zf.writestr(HOWTO, howto(run, fingerprint, entries[-1]))
        os.replace(temp, out)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return out


def howto(run: str, fingerprint: str, checkpoint: Entry) -> str:
    """The pack's plain-language page."""
    cp = (checkpoint.body or {}).get("checkpoint", {})
    return f"""\
Evidence pack for pcxbatch run {run}

What this is
  The audit record of one bulk change made with pcxbatch: who asked for it, who previewed and
  applied it, what was sent, what PCX answered, and the report files it produced. The record is
  a chain of entries, each carrying the digest of the one before, ending in a checkpoint signed
  with the installation's Ed25519 key. Entries about other runs are shown by digest only.

How to check it
  1. Get the signing key's fingerprint from somewhere other than this pack (the ticket, SIEM or
     email where it was recorded when the installation was set up). It must be:
       {fingerprint}
  2. On any machine with pcxbatch installed (nothing else from the installation is needed):
       pcxbatch audit verify THIS-PACK.zip --key {fingerprint}
     It checks every entry's digest and link from entry 1 to entry {checkpoint.seq}, the
     checkpoint's signature, and that each file in files/ and journal-rows.jsonl are exactly the
     ones the entries recorded (SHA-256). "verified" means none of them was changed since.
  3. If you also hold a head recorded outside (pcxbatch audit head printed "N:DIGEST"), pass it
     with --head N:DIGEST to prove the log was not cut or rewritten before it.

What is inside
  {ENTRIES}    the chain (this run's entries whole, the others sealed)
  {JOURNAL_DUMP}     one line per row: row, user id, action, target status, outcome,
                         confirmed, HTTP status, attempts, PCX request id
  files/                 the report files (results.xlsx is the one to read) and the plan
  {MANIFEST}          which entry names each file, and the public key
  The checkpoint signs entry {cp.get("count")} (head {cp.get("head")}) at {cp.get("time")}.

Whoever holds the installation's service account holds its key and could sign a rewritten
record: that is why the fingerprint and head must be compared with copies kept elsewhere.
"""


def verify_pack(
    path: Path, *, key: str | None = None, head: tuple[int, str] | None = None
) -> Verdict:
    """Check an evidence pack on its own (see the module docstring)."""
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise UnusableError(f"{path}: not an evidence pack (not a readable zip: {exc})") from None
    with zf:
        manifest = _manifest(path, zf)
        lines = zf.read(ENTRIES).decode("utf-8", errors="replace").splitlines()
        verdict = check_entries(_parsed(lines), head=head, key=key)
        if verdict.unwitnessed:
            verdict.problems.append(
                f"the pack's last {verdict.unwitnessed} entries are not covered by its signed"
                " checkpoint"
            )
        if manifest.get("fingerprint") not in verdict.keys[-1:]:
            verdict.problems.append("the manifest names another key than the one that signed")
        _check_members(zf, manifest, verdict)
    return verdict


def _manifest(path: Path, zf: zipfile.ZipFile) -> dict[str, Any]:
    try:
        manifest = json.loads(zf.read(MANIFEST))
        zf.getinfo(ENTRIES)
    except (KeyError, ValueError):
        raise UnusableError(f"{path}: not an evidence pack (no {MANIFEST} or {ENTRIES})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PACK_FORMAT:
        raise UnusableError(f"{path}: not an evidence pack of this pcxbatch version")
    return manifest


def _parsed(lines: list[str]) -> Iterator[tuple[int, Entry | BadEntry]]:
    for number, line in enumerate(lines, start=1):
        try:
            yield number, parse_entry(line)
        except BadEntry as exc:
            yield number, exc


def _check_members(zf: zipfile.ZipFile, manifest: Mapping[str, Any], verdict: Verdict) -> None:
    import hashlib

    run = str(manifest.get("run"))
    for member, recorded in dict(manifest.get("files") or {}).items():
        vouched = verdict.files.get(str(recorded))
        if vouched is None:
            verdict.problems.append(f"{member}: no entry of the pack vouches for it")
            continue
        if _member_sha(zf, member) != vouched.value:
            verdict.problems.append(
                f"{member}: not the file entry {vouched.seq} vouched for (its SHA-256 differs)"
            )
    journal = verdict.journals.get(run)
    try:
        with zf.open(JOURNAL_DUMP) as f:
            dumped = dump_digest(iter(f))
    except KeyError:
        dumped = None
    if journal is None or dumped is None or dumped["sha256"] != journal.value.get("sha256"):
        verdict.problems.append(f"{JOURNAL_DUMP}: not the rows run {run}'s entries vouched for")
    if manifest.get("input"):
        sha = hashlib.sha256(zf.read(str(manifest["input"]))).hexdigest()
        if sha != verdict.inputs.get(run):
            verdict.problems.append(f"{manifest['input']}: not the input file the run read")


def _member_sha(zf: zipfile.ZipFile, member: str) -> str | None:
    import hashlib

    h = hashlib.sha256()
    try:
        with zf.open(member) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except KeyError:
        return None
    return h.hexdigest()


__all__ = ["chosen_entries", "export_pack", "verify_pack"]
