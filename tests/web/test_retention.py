"""Retention on an injected clock: old uploads and report files go, audit entries stay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from web_harness import Audited, bearer, csv_file, sign_in, some_users, through_approval, upload

from pcxbatch.sandbox.server import RunningSandbox
from pcxbatch.web import retention

PCXBATCH = Path(sys.executable).parent / "pcxbatch"


def _at(when: datetime) -> Callable[[], datetime]:
    return lambda: when


def test_the_sweep_removes_old_files_keeps_the_audit_log_and_it_still_verifies(
    audited: Audited, pcx: RunningSandbox
) -> None:
    client, service, tokens = audited.client, audited.service, audited.tokens
    flow = service.flow
    old = through_approval(client, service, tokens, csv_file([[u, ""] for u in some_users(pcx)]))
    assert client.post(f"/api/v1/jobs/{old}/approve", headers=bearer(tokens["vera"])).is_success
    assert service.worker.wait_idle()
    waiting = through_approval(client, service, tokens, csv_file([["u-1", ""]]))
    ran = flow.get(old)
    kept = [Path(ran.get("input_path")), Path(ran.get("run_dir")), Path(ran.get("preview_dir"))]
    assert all(p.exists() for p in kept)
    log = flow.config.reports / "audit.jsonl"
    entries_before = log.read_text(encoding="utf-8").count("\n")

    flow.clock = _at(datetime.now(UTC) + timedelta(days=91))  # three months later
    young = upload(client, tokens["ana"], csv_file([["u-2", ""]])).json()["id"]
    removed = retention.sweep(flow)

    assert removed["jobs"] == [old]  # not the one awaiting approval, not the young one
    assert sorted(removed["runs"]) == sorted(p.name for p in kept[1:])
    assert not any(p.exists() for p in kept)
    assert Path(flow.get(young).get("input_path")).is_file()
    assert Path(flow.get(waiting).get("plan_path")).is_file()
    lines = log.read_text(encoding="utf-8").splitlines()
    assert len(lines) > entries_before  # nothing taken out of the log, the sweep added to it
    sweep_entry = next(json.loads(x)["body"] for x in lines if '"retention"' in x)
    assert sweep_entry["details"]["jobs"] == [old] and sweep_entry["details"]["files"] > 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCX")}
    verified = subprocess.run([str(PCXBATCH), "audit", "verify", str(flow.config.reports)],
                              capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr

    shown = client.get(f"/api/v1/jobs/{old}", headers=bearer(tokens["ana"])).json()
    assert shown["state"] == "finished" and shown["files"] == []  # the record stays
    sign_in(client, "ana")
    assert client.get(f"/jobs/{old}").status_code == 200
    undo = client.post(f"/api/v1/jobs/{old}/undo", headers=bearer(tokens["ana"]))
    assert undo.status_code == 409
    assert retention.sweep(flow)["jobs"] == []  # swept once


def test_an_expired_job_moves_no_more(audited: Audited) -> None:
    client, flow, tokens = audited.client, audited.service.flow, audited.tokens
    job_id = upload(client, tokens["ana"], csv_file([["u-1", ""]])).json()["id"]
    flow.clock = _at(datetime.now(UTC) + timedelta(days=flow.config.keep_days, hours=1))
    assert retention.sweep(flow)["jobs"] == [job_id]
    got = client.post(f"/api/v1/jobs/{job_id}/preview", headers=bearer(tokens["ana"]))
    assert got.status_code == 409
    assert got.json()["error"] == (
        f"job {job_id}'s files were removed after 90 days (retention); upload the file again"
    )


class _Queue:
    def __init__(self) -> None:
        self.keys: list[str] = []

    def put(self, key: str, kind: str, job_id: str = "") -> None:
        self.keys.append(key)
        assert kind == "sweep" and not job_id


def test_the_sweep_runs_at_start_and_then_once_a_day(audited: Audited) -> None:
    flow = audited.service.flow
    queue = _Queue()
    flow.queue = queue  # type: ignore[assignment]
    waits: list[float] = []

    def wait(seconds: float) -> bool:  # two days pass, then the server stops
        waits.append(seconds)
        return len(waits) > 2

    daily = retention.Daily(flow, wait=wait)
    daily.queue_sweep()  # what start() does before its thread
    daily._loop()
    assert queue.keys == ["retention"] * 3 and waits == [86400.0] * 3
