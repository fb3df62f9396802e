"""The audit log on its own: entries chain, checkpoints sign, appends survive several
processes and a full disk, and every kind of tampering is found and named."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pcxbatch.audit import AuditLog
from pcxbatch.audit.chain import GENESIS, canonical, make_entry
from pcxbatch.audit.log import CHECKPOINT_EVERY, KEY_NAME, LOG_NAME, read_entries
from pcxbatch.audit.signing import Signer, load_or_create
from pcxbatch.audit.verify import Verdict, check_entries, parse_head
from pcxbatch.errors import UnusableError

ACTOR = {"operator": "ana", "operator_from": "login name", "unix_user": "ana"}


def ticking() -> Callable[[], datetime]:
    """A clock that moves one second per reading: entries get distinct, known times."""
    start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    calls = iter(range(1_000_000))
    return lambda: start + timedelta(seconds=next(calls))


def make_log(folder: Path, events: int = 5, *, run_end: bool = True) -> AuditLog:
    log = AuditLog(folder, clock=ticking(), host="test-host")
    for n in range(events):
        log.record("run.start", ACTOR, objects={"run": f"r{n}"}, details={"n": n})
    if run_end:
        log.record("run.finish", ACTOR, objects={"run": "r0"}, checkpoint=True)
    return log


def lines(folder: Path) -> list[str]:
    return (folder / LOG_NAME).read_text(encoding="utf-8").splitlines(keepends=True)


def write(folder: Path, text: list[str]) -> None:
    (folder / LOG_NAME).write_text("".join(text), encoding="utf-8")


def check(folder: Path, **kwargs: Any) -> Verdict:
    return check_entries(read_entries(folder / LOG_NAME), **kwargs)


def fingerprint_of(folder: Path) -> str:
    return load_or_create(folder / KEY_NAME).fingerprint


def test_an_untouched_log_verifies_and_its_head_and_key_match(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    verdict = check(tmp_path, key=fingerprint_of(tmp_path))
    assert verdict.ok, verdict.problems
    assert verdict.entries == 7 and verdict.checkpoints == 1
    assert verdict.witnessed == 6 and verdict.unwitnessed == 0
    first = json.loads(lines(tmp_path)[0])
    assert first["prev"] == GENESIS and first["seq"] == 1
    assert first["body"]["actor"] == ACTOR and first["body"]["host"] == "test-host"
    assert first["body"]["time"] == "2026-12-01T09:00:00.000+00:00"
    checkpoint = json.loads(lines(tmp_path)[-1])["body"]["checkpoint"]
    head = f"{checkpoint['count']}:{checkpoint['head']}"
    assert check(tmp_path, head=parse_head(head)).ok
    assert log.path == tmp_path / LOG_NAME


def test_each_entry_carries_the_digest_of_the_one_before(tmp_path: Path) -> None:
    make_log(tmp_path)
    entries = [json.loads(line) for line in lines(tmp_path)]
    for before, after in itertools.pairwise(entries):
        assert after["prev"] == before["digest"] and after["seq"] == before["seq"] + 1


def test_one_changed_byte_names_its_entry(tmp_path: Path) -> None:
    make_log(tmp_path)
    text = lines(tmp_path)
    text[2] = text[2].replace('"n":2', '"n":3')
    write(tmp_path, text)
    verdict = check(tmp_path)
    assert verdict.problems[0].startswith("line 3: its digest does not match")


def test_a_deleted_entry_is_named(tmp_path: Path) -> None:
    make_log(tmp_path)
    text = lines(tmp_path)
    del text[3]
    write(tmp_path, text)
    assert check(tmp_path).problems[0].startswith("entry 5 (line 4, run.start")
    assert "entry 4 missing" in check(tmp_path).problems[0]


def test_two_swapped_entries_are_named(tmp_path: Path) -> None:
    make_log(tmp_path)
    text = lines(tmp_path)
    text[1], text[2] = text[2], text[1]
    write(tmp_path, text)
    problem = check(tmp_path).problems[0]
    assert problem.startswith("entry 3 (line 2") and "entry 2 missing" in problem


def test_a_cut_tail_is_found_against_the_head_kept_outside(tmp_path: Path) -> None:
    make_log(tmp_path)
    head = json.loads(lines(tmp_path)[-1])["body"]["checkpoint"]
    kept = (head["count"], head["head"])
    write(tmp_path, lines(tmp_path)[:4])  # entries 5-7 gone, checkpoint with them
    assert check(tmp_path).ok  # nothing inside the log can tell...
    problems = check(tmp_path, head=kept).problems  # ...the head kept outside can
    assert problems == [
        "the log ends at entry 4, but the head you hold is entry 6: entries 5-6 were cut off"
    ]


def test_a_log_rewritten_and_re_signed_with_another_key_is_found_against_the_key(
    tmp_path: Path,
) -> None:
    make_log(tmp_path)
    kept_key = fingerprint_of(tmp_path)
    # The forger edits entry 2, rebuilds the chain and re-signs with a key of their own.
    forged = tmp_path / "forged"
    forged.mkdir()
    log = AuditLog(forged, clock=ticking(), host="test-host")
    for n in range(5):
        log.record("run.start", ACTOR, objects={"run": f"r{n}"}, details={"n": 99 if n == 1 else n})
    log.record("run.finish", ACTOR, objects={"run": "r0"}, checkpoint=True)
    assert check(forged).ok  # self-consistent...
    problems = check(forged, key=kept_key).problems  # ...but not signed by the key kept outside
    assert len(problems) == 1 and "not by the key you hold" in problems[0]
    assert problems[0].startswith("entry 7 (line 7, checkpoint")


def test_a_forged_signature_is_found(tmp_path: Path) -> None:
    make_log(tmp_path)
    text = lines(tmp_path)
    last = json.loads(text[-1])
    last["body"]["checkpoint"]["count"] = 5  # claim it signs another entry
    # Re-chain the edited checkpoint so only its signature can give it away.
    fixed = make_entry(last["seq"], last["prev"], last["body"])
    text[-1] = canonical(fixed.to_json()).decode() + "\n"
    write(tmp_path, text)
    assert "signature is not valid" in check(tmp_path).problems[0]


def test_entries_after_the_last_checkpoint_are_not_yet_witnessed(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    log.record("run.start", ACTOR, objects={"run": "late"})
    verdict = check(tmp_path)
    assert verdict.ok and verdict.unwitnessed == 1
    log.checkpoint()
    assert check(tmp_path).unwitnessed == 0


def test_a_checkpoint_comes_every_so_many_entries(tmp_path: Path) -> None:
    make_log(tmp_path, CHECKPOINT_EVERY, run_end=False)
    verdict = check(tmp_path)
    assert verdict.checkpoints == 1 and verdict.witnessed == CHECKPOINT_EVERY


def _append_many(folder: str, worker: int) -> None:
    log = AuditLog(Path(folder))
    for n in range(20):
        log.record("run.start", {"operator": f"w{worker}"}, details={"n": n})


def test_appends_from_several_processes_keep_one_chain(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(tmp_path), w)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    verdict = check(tmp_path)
    assert verdict.ok, verdict.problems
    events = verdict.entries - verdict.checkpoints
    assert events == 80


def test_a_write_the_disk_refuses_leaves_no_half_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = make_log(tmp_path)
    before = lines(tmp_path)
    real_write = os.write

    def half(fd: int, data: bytes) -> int:
        return real_write(fd, data[: len(data) // 2])  # the disk filled up half-way

    monkeypatch.setattr(os, "write", half)
    with pytest.raises(OSError, match="No space"):
        log.record("run.start", ACTOR)
    monkeypatch.undo()
    assert lines(tmp_path) == before
    log.record("run.start", ACTOR)
    assert check(tmp_path).ok


def test_a_torn_last_line_is_named_and_the_chain_goes_on_after_it(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    with (tmp_path / LOG_NAME).open("a", encoding="utf-8") as f:
        f.write('{"seq": 8, "prev": "ab')  # a crash that cut a line short
    log.record("run.start", ACTOR)
    problems = check(tmp_path).problems
    assert problems == ["line 8: not a JSON entry (torn, or edited by hand)"]


def test_the_key_is_owner_only_and_a_key_others_can_read_is_refused(tmp_path: Path) -> None:
    make_log(tmp_path)
    key = tmp_path / KEY_NAME
    assert key.stat().st_mode & 0o777 == 0o600
    key.chmod(0o644)
    with pytest.raises(UnusableError, match="chmod 600"):
        AuditLog(tmp_path).checkpoint()


def test_the_key_can_live_outside_the_report_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "keys"
    elsewhere.mkdir()
    monkeypatch.setenv("PCXBATCH_AUDIT_KEY", str(elsewhere / "audit.key"))
    reports = tmp_path / "reports"
    reports.mkdir()
    make_log(reports)
    assert (elsewhere / "audit.key").exists() and not (reports / KEY_NAME).exists()
    assert isinstance(load_or_create(elsewhere / "audit.key"), Signer)


def test_a_head_must_be_given_as_printed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="N:DIGEST"):
        parse_head("12")
    assert parse_head(f"3:{'A' * 64}") == (3, "a" * 64)
