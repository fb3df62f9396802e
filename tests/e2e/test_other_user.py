"""Another Unix user, end to end: the real CLI run as an unprivileged account (``pcxtest``).

Root ignores file modes, so whatever is about permissions runs as that account, through
``runuser``. The account is made when missing (``.ci/run`` makes it before the tests); the tests
are skipped, saying why, when that cannot be done. Every refusal is one line and exit code 2,
never a traceback; a second person with a report folder of their own applies a colleague's plan.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pcxbatch.sandbox.users import seed_users

from .conftest import PCXBATCH, REPO, Ran, pcxbatch
from .test_run import write_csv

USER = "pcxtest"


def account() -> pwd.struct_passwd:
    """The unprivileged account, made when missing; the test is skipped when it cannot be."""
    if os.geteuid() != 0:
        pytest.skip("acting as another Unix user needs root (runuser)")
    if shutil.which("runuser") is None:
        pytest.skip("runuser is not installed")
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        made = subprocess.run(
            ["useradd", "--system", "--create-home", USER], capture_output=True, text=True
        )
        if made.returncode != 0:
            pytest.skip(f"cannot create the account {USER}: {made.stderr.strip()}")
        return pwd.getpwnam(USER)


def command_for_user() -> list[str]:
    """How ``pcxbatch`` starts as the account: the venv's script when the account may run its
    interpreter, else the system Python of the same version with the venv's packages on its
    path (a venv made from a Python under a private home, e.g. /root/.pyenv)."""
    as_user = ["runuser", "-u", USER, "--"]
    probe = subprocess.run([*as_user, sys.executable, "-c", "import pcxbatch"], capture_output=True)
    if probe.returncode == 0:
        return [*as_user, str(PCXBATCH)]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/bin:/usr/local/bin:/bin")
    site = Path(sys.prefix) / "lib" / version / "site-packages"
    path = f"PYTHONPATH={REPO}{os.pathsep}{site}"
    if system is not None:
        started = [*as_user, "env", path, system, "-m", "pcxbatch"]
        if subprocess.run([*started, "--version"], capture_output=True).returncode == 0:
            return started
    pytest.skip(f"{USER} can run neither {sys.executable} nor a system {version} with it")


@dataclass
class World:
    """A folder both users can reach, the sandbox, and how to run pcxbatch as the account."""

    base: Path
    theirs: Path  # a folder of the account's own
    server: Any
    command: list[str]

    def as_user(self, *args: str | Path, env: dict[str, str] | None = None) -> Ran:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("PCX_", "PCXBATCH_"))}
        clean.update(env or {})
        proc = subprocess.run(
            [*self.command, *map(str, args)], capture_output=True, text=True, env=clean,
            cwd=self.theirs, stdin=subprocess.DEVNULL, timeout=120, check=False,
        )  # fmt: skip
        return Ran(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def world(sandbox_factory: Any) -> Iterator[World]:
    user = account()
    command = command_for_user()
    base = Path(tempfile.mkdtemp(prefix="pcxbatch-users-"))
    base.chmod(0o755)
    theirs = base / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, user.pw_uid, user.pw_gid)
    try:
        yield World(base, theirs, sandbox_factory(users=200, seed=31), command)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def one_line_error(ran: Ran) -> str:
    assert ran.code == 2, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr
    (line,) = ran.stderr.strip().splitlines()
    assert line.startswith("error: ")
    return line


def previewed_plan(world: World, **job: Any) -> Path:
    """Root previews a job (its report folder root's own, 0700) and hands the plan over."""
    ids = [u["user_id"] for u in seed_users(200, 31) if u["status"] == "active"][:5]
    path = write_csv(world.base / "hits.csv", ["user_id"], [[i] for i in ids])
    path.chmod(0o644)
    lines = [
        f"input: {path}",
        "action: deactivate",
        "updated_by: compliance",
        f"base_url: {world.server.base_url}",
        f"report_dir: {world.base / 'reports'}",
        *(f"{k}: {v}" for k, v in job.items()),
    ]
    (world.base / "review.yaml").write_text("\n".join(lines) + "\n")
    handover = world.base / "handover"
    handover.mkdir()
    env = {"PCX_API_KEY": world.server.api_key, "PCXBATCH_OPERATOR": "ana"}
    ran = pcxbatch(
        "preview", world.base / "review.yaml", "--plan-out", handover / "plan.json", env=env
    )
    assert ran.code == 0, ran.stderr
    (handover / "plan.json").chmod(0o644)
    return handover / "plan.json"


def test_a_second_person_applies_with_a_report_folder_of_their_own(world: World) -> None:
    plan = previewed_plan(world, require_second_person="true")
    env = {"PCX_API_KEY": world.server.api_key}
    refused = world.as_user("apply", plan, "--yes", env=env)
    line = one_line_error(refused)
    assert "belongs to root" in line and "--report-dir" in line
    assert str(world.base / "reports") in line
    same = world.as_user("apply", plan, "--yes", "--report-dir", world.theirs / "reports",
                         env={**env, "PCXBATCH_OPERATOR": " ANA "})  # fmt: skip
    assert "second person" in one_line_error(same)
    applied = world.as_user("apply", plan, "--yes", "--report-dir", world.theirs / "reports",
                            env=env)  # fmt: skip
    assert applied.code == 0, applied.stderr
    summary = applied.summary()
    assert summary["applied_by"] == USER and summary["previewed_by"] == "ana"
    assert applied.run_dir.parent == world.theirs / "reports"
    puts = [r for r in world.server.sandbox.requests if r.method == "PUT"]
    assert len(puts) == 5
    again = world.as_user("apply", plan, "--yes", "--report-dir", world.theirs / "reports",
                          env=env)  # fmt: skip
    assert "applied already" in one_line_error(again)


def test_unreadable_plans_key_files_and_folders_are_one_line(world: World) -> None:
    plan = previewed_plan(world)
    plan.chmod(0o600)  # root's alone
    env = {"PCX_API_KEY": world.server.api_key}
    assert "cannot read the plan file: Permission denied" in one_line_error(
        world.as_user("apply", plan, "--yes", "--report-dir", world.theirs / "r", env=env)
    )
    key = world.base / "root-key"
    key.write_text(f"PCX_API_KEY={world.server.api_key}\n")
    key.chmod(0o600)
    job = world.base / "job.yaml"
    job.write_text(
        f"input: {world.base / 'hits.csv'}\naction: deactivate\nupdated_by: x\nyes: true\n"
        f"base_url: {world.server.base_url}\ncredentials_file: {key}\n"
        f"report_dir: {world.theirs / 'reports'}\n"
    )
    job.chmod(0o644)
    ran = world.as_user("run", job)
    assert ran.code == 2 and "Traceback" not in ran.stderr
    assert "cannot read the credentials file: Permission denied" in ran.stderr
    # A report folder of the account's own that it cannot write in.
    locked = world.theirs / "locked"
    locked.mkdir(mode=0o500)
    os.chown(locked, pwd.getpwnam(USER).pw_uid, pwd.getpwnam(USER).pw_gid)
    denied = world.as_user("run", world.base / "hits.csv", "--dry-run", "--action", "deactivate",
                           "--updated-by", "x", "--report-dir", locked)  # fmt: skip
    line = one_line_error(denied)
    assert str(locked) in line and "permission denied" in line.lower()
    assert not [r for r in world.server.sandbox.requests if r.method == "PUT"]


def test_json_errors_stay_json_for_another_user(world: World) -> None:
    plan = previewed_plan(world)
    ran = world.as_user("apply", plan, "--yes", "--log-format", "json",
                        env={"PCX_API_KEY": world.server.api_key})  # fmt: skip
    assert ran.code == 2 and ran.stdout == ""
    (event,) = [json.loads(line) for line in ran.stderr.splitlines()]
    assert event["event"] == "error" and "belongs to root" in event["message"]
