"""End-to-end helpers: the installed ``pcxbatch`` command, run as a user runs it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pcxbatch.sandbox import SandboxConfig, start
from pcxbatch.sandbox.server import RunningSandbox

REPO = Path(__file__).resolve().parents[2]
PCXBATCH = Path(sys.executable).parent / "pcxbatch"


@dataclass
class Ran:
    """A finished ``pcxbatch`` command: its exit code, output, and report folder if any."""

    code: int
    stdout: str
    stderr: str

    @property
    def run_dir(self) -> Path:
        """The report folder: the last stdout line, or (``--log-format json``, which leaves
        stdout empty) the ``run_dir`` of the last event that names one."""
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        if not lines:
            named = [e for e in self.events() if e.get("run_dir") or e.get("report_dir")]
            assert named, self.stderr
            return Path(named[-1].get("run_dir") or named[-1]["report_dir"])
        assert lines[-1].startswith("report: "), self.stdout
        return Path(lines[-1].removeprefix("report: "))

    def events(self) -> list[dict[str, Any]]:
        """The JSON events on stderr (``--log-format json``): every line must be one."""
        return [json.loads(line) for line in self.stderr.splitlines()]

    def results(self) -> list[dict[str, str]]:
        with (self.run_dir / "results.csv").open(encoding="utf-8-sig", newline="") as f:
            return list(csv.DictReader(f))

    def summary(self) -> dict[str, Any]:
        text = (self.run_dir / "summary.json").read_text(encoding="utf-8")
        summary: dict[str, Any] = json.loads(text)
        return summary


def pcxbatch(
    *args: str | Path,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
    timeout: float = 120,
    umask: int | None = None,
) -> Ran:
    """Run the installed console script with a clean environment plus ``env`` (and ``umask``,
    when given, so every file mode it leaves is the one it asked for)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PCX_")}
    base.update(env or {})
    proc = subprocess.run(
        [str(PCXBATCH), *map(str, args)],
        capture_output=True,
        text=True,
        env=base,
        cwd=cwd,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        preexec_fn=None if umask is None else lambda: os.umask(umask),
    )
    return Ran(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def sandbox_factory() -> Iterator[Any]:
    """Start sandboxes on loopback for a test; all are stopped at its end."""
    running: list[RunningSandbox] = []

    def make(**settings: Any) -> RunningSandbox:
        server = start(SandboxConfig(**settings))
        running.append(server)
        return server

    yield make
    for server in running:
        server.stop()
