"""A plan applies once, to the API it was previewed against, in-process on a virtual clock.

The record of applies lives in the report folder's root: a second apply of the same plan is
refused naming the run, a stopped apply is resumed (never sent again), a declined one can be
applied later. The prompt shows the plan's hash, who previewed it and its transitions.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_runner import (
    RecordingUI,
    context,
    interrupt_after,
    make_job,
    puts_per_user,
    results,
    summary,
    users,
)

from pcxbatch.config import Job, job_from_dict
from pcxbatch.context import PreviewResult
from pcxbatch.errors import ExitCode, UnusableError
from pcxbatch.plan import check_target, load_plan
from pcxbatch.reportdir import APPLIED_DIR
from pcxbatch.runner import apply_plan, preview_job, resume_run
from pcxbatch.sandbox import Sandbox, SandboxConfig

SEED = 4


def previewed(tmp_path: Path, n: int = 9, **settings: Any) -> tuple[Sandbox, Job, PreviewResult]:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED, latency_ms=10))
    job = make_job(tmp_path, users(sandbox, "active", n), concurrency=2, **settings)
    return sandbox, job, preview_job(job, context(sandbox, operator="ana"))


def test_a_plan_applies_once_and_the_second_apply_names_the_run(tmp_path: Path) -> None:
    sandbox, job, preview = previewed(tmp_path)
    first = apply_plan(preview.plan_path, context(sandbox, operator="ben"))
    assert first.exit_code is ExitCode.OK and first.run_dir is not None
    record = json.loads((job.report_dir / APPLIED_DIR / f"{preview.plan_hash}.json").read_text())
    assert record["run_dir"] == str(first.run_dir) and record["applied_by"] == "ben"
    with pytest.raises(UnusableError, match="applied already") as caught:
        apply_plan(preview.plan_path, context(sandbox, operator="ben"))
    assert str(first.run_dir) in str(caught.value)
    assert max(puts_per_user(sandbox).values()) == 1  # the 9 changes went once


def test_a_stopped_apply_is_resumed_not_repeated(tmp_path: Path) -> None:
    sandbox, _job, preview = previewed(tmp_path, n=20)
    stopped = apply_plan(preview.plan_path, context(sandbox, interrupt_after(3), operator="ben"))
    assert stopped.exit_code is ExitCode.STOPPED and stopped.run_dir is not None
    ui = RecordingUI()
    again = apply_plan(preview.plan_path, context(sandbox, ui, operator="ben"))
    assert again.run_dir == stopped.run_dir and ui.resumed == [stopped.run_dir]
    assert Counter(r["outcome"] for r in results(again)) == {"applied": 20}  # none 'unchanged'
    assert max(puts_per_user(sandbox).values()) == 1
    assert summary(again)["plan_hash"] == preview.plan_hash


def test_a_declined_apply_leaves_no_record_and_can_be_applied_later(tmp_path: Path) -> None:
    sandbox, job, preview = previewed(tmp_path, n=3)
    declined = apply_plan(preview.plan_path, context(sandbox, RecordingUI(answer=False)))
    assert declined.exit_code is ExitCode.DECLINED and declined.run_dir is None
    assert not list((job.report_dir / APPLIED_DIR).iterdir())
    assert apply_plan(preview.plan_path, context(sandbox)).exit_code is ExitCode.OK


def test_apply_without_a_credential_leaves_nothing(tmp_path: Path) -> None:
    sandbox, job, preview = previewed(tmp_path, n=3)
    before = sorted(p.name for p in job.report_dir.iterdir())
    with pytest.raises(UnusableError, match="no API credential"):
        apply_plan(preview.plan_path, context(sandbox, credentials=None))
    assert sorted(p.name for p in job.report_dir.iterdir()) == before
    assert apply_plan(preview.plan_path, context(sandbox)).exit_code is ExitCode.OK


def test_the_prompt_shows_the_plan_its_previewer_and_its_transitions(tmp_path: Path) -> None:
    sandbox, _job, preview = previewed(tmp_path, n=4)
    ui = RecordingUI()
    apply_plan(preview.plan_path, context(sandbox, ui, operator="ben"))
    (asked,) = ui.confirmations
    assert asked.plan is not None
    assert asked.plan.plan_hash == preview.plan_hash and asked.plan.previewed_by == "ana"
    assert asked.plan.transitions == [("active", "inactive", 4)]
    assert asked.plan.previewed_at.startswith("2026-12-01T09:")


def test_a_plan_is_refused_by_an_apply_to_another_target(tmp_path: Path) -> None:
    sandbox, _job, preview = previewed(tmp_path, n=3, base_url="https://prod-api.pcxpay.com/v1")
    with pytest.raises(UnusableError, match=r"previewed against https://prod-api\.pcxpay\.com/v1"):
        apply_plan(preview.plan_path, context(sandbox), {"base_url": "https://staging.pcx/v1"})
    assert not puts_per_user(sandbox)
    # PCX's other documented name for the same API is the same target.
    alias = apply_plan(
        preview.plan_path, context(sandbox), {"base_url": "https://api.pcxpay.com/v1"}
    )
    assert alias.exit_code is ExitCode.OK


def test_a_sandbox_plan_is_refused_by_an_apply_to_a_real_api(tmp_path: Path) -> None:
    _sandbox, _job, preview = previewed(tmp_path, n=2)
    loaded = load_plan(preview.plan_path)
    sandboxed = replace(loaded, job={**loaded.job, "sandbox": {}}, target="the built-in sandbox")
    check_target(sandboxed, preview.plan_path, job_from_dict(sandboxed.job))  # a sandbox again
    to_pcx = job_from_dict(sandboxed.job, {"base_url": "https://api.pcxpay.com/v1"})
    with pytest.raises(UnusableError, match="previewed against the built-in sandbox"):
        check_target(sandboxed, preview.plan_path, to_pcx)


def test_the_second_person_rule_ignores_case_and_spaces(tmp_path: Path) -> None:
    sandbox, _job, preview = previewed(tmp_path, n=6, require_second_person=True)
    for same in ("Ana", " ANA "):
        with pytest.raises(UnusableError, match="second person"):
            apply_plan(preview.plan_path, context(sandbox, operator=same))
    assert not puts_per_user(sandbox)
    stopped = apply_plan(preview.plan_path, context(sandbox, interrupt_after(1), operator="ben"))
    assert stopped.exit_code is ExitCode.STOPPED and stopped.run_dir is not None
    with pytest.raises(UnusableError, match="second person"):  # nor may she resume its apply
        resume_run(stopped.run_dir, context(sandbox, operator="ANA"))
    with pytest.raises(UnusableError, match="second person"):
        apply_plan(preview.plan_path, context(sandbox, operator="ana"))
    finished = apply_plan(preview.plan_path, context(sandbox, operator="ben"))
    assert finished.run_dir == stopped.run_dir and finished.exit_code is ExitCode.OK


def test_a_moved_input_is_found_beside_the_plan_or_named_when_missing(tmp_path: Path) -> None:
    sandbox, job, preview = previewed(tmp_path, n=3)
    handed = tmp_path / "handover"
    handed.mkdir()
    plan = Path(shutil.copy(preview.plan_path, handed / "plan.json"))
    moved = Path(shutil.move(job.input, tmp_path / "elsewhere.csv"))
    with pytest.raises(UnusableError) as caught:
        apply_plan(plan, context(sandbox))
    message = str(caught.value)
    assert str(job.input) in message and str(handed / job.input.name) in message
    shutil.copy(moved, handed / job.input.name)
    applied = apply_plan(plan, context(sandbox))
    assert applied.exit_code is ExitCode.OK
    assert Counter(r["outcome"] for r in results(applied)) == {"applied": 3}


def test_a_plan_records_its_input_by_absolute_path(tmp_path: Path, monkeypatch: Any) -> None:
    sandbox = Sandbox(SandboxConfig(users=60, seed=SEED))
    make_job(tmp_path, users(sandbox, "active", 2))
    job_file = tmp_path / "job.yaml"
    job_file.write_text(
        "input: hits.csv\naction: deactivate\nupdated_by: ops\nreport_dir: reports\n"
        "base_url: http://pcx.sandbox/v1\nallow_insecure_http: true\n"
    )
    monkeypatch.chdir(tmp_path.parent)
    from pcxbatch.config import load_job

    job = load_job(Path(tmp_path.name) / "job.yaml")
    preview = preview_job(job, context(sandbox))
    plan = json.loads(preview.plan_path.read_text())
    assert plan["input"]["path"] == str(tmp_path / "hits.csv")
    assert preview.run_dir.parent == tmp_path / "reports"
