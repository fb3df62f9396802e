"""Secrets never leak, and run files are the owner's only: every command a user might run, the
failing ones included, with a recognisable API key and JWT in its environment (or in a
credentials file), under a wide-open umask. Neither secret may appear in stdout, stderr, any
report, the journal (its raw bytes) or any other file the run leaves; the terminal and the
summary show the key by its non-secret prefix only.

``--debug`` against a server that echoes the credential in a response header is in
``test_network.py``.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pcxbatch.sandbox.users import seed_users

from .conftest import Ran, pcxbatch
from .test_run import write_csv

KEY_PREFIX = "pcx_leaktest_"
KEY = KEY_PREFIX + "s3cr3t" + secrets.token_hex(16)
WRONG_KEY = KEY_PREFIX + "wr0ng" + secrets.token_hex(16)


def _b64(obj: dict[str, str]) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


JWT = ".".join(
    [
        _b64({"alg": "HS256", "typ": "JWT"}),
        _b64({"sub": "leaktest-" + secrets.token_hex(8), "role": "admin"}),
        "leaktestsig" + secrets.token_urlsafe(32),
    ]
)
#: What must never be seen: the secret part of each key, and each non-trivial part of the JWT
#: (its header is the same for every token, so it proves nothing).
NEEDLES = {
    "API key secret": KEY.removeprefix(KEY_PREFIX),
    "wrong API key secret": WRONG_KEY.removeprefix(KEY_PREFIX),
    "JWT payload": JWT.split(".")[1],
    "JWT signature": JWT.split(".")[2],
}


def run(*args: str | Path, env: dict[str, str] | None = None) -> Ran:
    """The installed ``pcxbatch`` with umask 0: every file mode it leaves is the one it asked
    for."""
    return pcxbatch(*args, env=env, umask=0)


def leaks(text: str | bytes, where: str) -> list[str]:
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    found = []
    for name, needle in NEEDLES.items():
        for encoded in {needle.encode(), needle.encode("utf-16-le")}:
            if encoded in data:
                found.append(f"{name} in {where}")
    return found


def files_under(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            yield path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def world(tmp_path: Path, sandbox_factory: Any) -> dict[str, Any]:
    """Sandboxes that know the recognisable key and JWT, inputs, and the env to run with."""
    good = sandbox_factory(users=40, seed=5, api_key=KEY, jwt=JWT)
    failing = sandbox_factory(users=40, seed=5, api_key=KEY, jwt=JWT, fail_rate=1.0)
    users = [u["user_id"] for u in seed_users(40, 5) if u["status"] == "active"]
    rows = [[uid, "rejected"] for uid in users[:6]] + [["bad/id", "rejected"]]
    csv_in = write_csv(tmp_path / "in.csv", ["user_id", "status"], rows)
    return {
        "good": good,
        "failing": failing,
        "users": users,
        "csv": csv_in,
        "reports": tmp_path / "reports",
        "env": {"PCX_API_KEY": KEY},
        "tmp": tmp_path,
    }


def common(world: dict[str, Any], server: Any) -> list[str]:
    return [
        "--base-url",
        server.base_url,
        "--report-dir",
        str(world["reports"]),
        "--rate",
        "200",
        "--yes",
    ]


def write_job(world: dict[str, Any], name: str, server_url: str, **extra: Any) -> Path:
    lines = [
        f"name: {name}",
        f"input: {world['csv']}",
        f"base_url: {server_url}",
        f"report_dir: {world['reports']}",
        "rate: 200",
        "yes: true",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    path: Path = world["tmp"] / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_no_command_leaks_a_credential_and_run_files_are_owner_only(
    world: dict[str, Any],
) -> None:
    good, failing, reports = world["good"], world["failing"], world["reports"]
    env_key, env_jwt = world["env"], {"PCX_JWT": JWT}
    both = {"PCX_API_KEY": KEY, "PCX_JWT": JWT}
    ran: dict[str, Ran] = {}

    ran["validate"] = run("validate", world["csv"], env=both)
    ran["dry run"] = run("run", world["csv"], "--dry-run", *common(world, good), env=both)
    ran["run, API key"] = run("run", world["csv"], *common(world, good), "--fresh", env=env_key)
    ran["run, JWT, json logs"] = run(
        "run",
        world["csv"],
        *common(world, good),
        "--fresh",
        "--log-format",
        "json",
        env=env_jwt,
    )
    ran["debug logging, JWT"] = run(
        "--debug", "run", world["csv"], *common(world, good), "--fresh", env=env_jwt
    )
    ran["preview, debug logging"] = run(
        "--debug", "preview", world["csv"], "--base-url", good.base_url, "--report-dir",
        reports, env=env_key,
    )  # fmt: skip
    ran["run, wrong key"] = run(
        "run", world["csv"], *common(world, good), "--fresh", env={"PCX_API_KEY": WRONG_KEY}
    )
    readonly = {"PCX_API_KEY": good.readonly_api_key}  # may read, may not change: stops mid-run
    # Without a read before sending: the rows earlier runs applied are sent, and meet the 403.
    readonly_job = write_job(world, "readonly", good.base_url, read_before_send="never")
    ran["run, read-only key"] = run("run", readonly_job, env=readonly)
    ran["resume"] = run(
        "resume", ran["run, read-only key"].run_dir, "--log-format", "json", env=env_key
    )
    failing_job = write_job(world, "failing", failing.base_url, max_attempts=1)
    ran["server errors"] = run("run", failing_job, env=env_key)
    ran["retry failed"] = run(
        "run", "--retry-failed", ran["server errors"].run_dir, "--base-url", good.base_url,
        env=env_key,
    )  # fmt: skip
    key_file = world["tmp"] / "pcx-key"
    key_file.write_text(f"# the service account's key\nexport PCX_API_KEY='{KEY}'\n")
    key_file.chmod(0o600)
    file_job = write_job(world, "keyfile", good.base_url, credentials_file=key_file)
    ran["credentials file"] = run("run", file_job, "--fresh", "--log-format", "json", env={})
    dead = f"http://127.0.0.1:{free_port()}"
    dead_job = write_job(world, "dead", dead, max_attempts=1)
    ran["connection refused"] = run("run", dead_job, "--log-format", "json", env=env_key)
    ran["malformed key"] = run(
        "run", world["csv"], *common(world, good), env={"PCX_API_KEY": KEY + " " + JWT}
    )
    blocker = world["tmp"] / "not-a-folder"
    blocker.write_text("")
    ran["report dir is a file"] = run(
        "run", world["csv"], *common(world, good)[:2], "--report-dir", blocker, "--yes",
        env=both,
    )  # fmt: skip

    # Each command did what it should, so the search below covers real runs.
    assert ran["validate"].code == 1  # the bad/id row
    assert ran["dry run"].code == 1
    assert ran["run, API key"].code == 1, ran["run, API key"].stderr
    assert ran["run, JWT, json logs"].code == 1, ran["run, JWT, json logs"].stderr
    assert ran["debug logging, JWT"].code == 1
    assert "DEBUG" in ran["debug logging, JWT"].stderr
    assert ran["preview, debug logging"].code == 1, ran["preview, debug logging"].stderr
    assert ran["run, wrong key"].code == 2  # refused at the preflight read: nothing sent
    assert ran["run, read-only key"].code == 3
    # Its job never reads: a 200 cannot tell "changed" from "already so", unconfirmed: exit 5.
    assert ran["resume"].code == 5, ran["resume"].stderr
    assert ran["server errors"].code == 5, ran["server errors"].stderr
    assert ran["retry failed"].code == 0, ran["retry failed"].stderr
    assert ran["credentials file"].code == 1, ran["credentials file"].stderr
    assert ran["connection refused"].code == 3, ran["connection refused"].stderr
    assert ran["malformed key"].code == 2
    assert ran["report dir is a file"].code != 0
    assert [r.method for r in failing.sandbox.requests if r.method == "PUT"]
    # The first run changes every user; the later ones read first, find them already rejected
    # and send nothing, so their requests are listings (with the same headers).
    assert len([r for r in good.sandbox.requests if r.method == "PUT"]) >= 6

    assert leaks(b"..." + KEY.encode() + b"...", "probe")  # the search does find a secret
    found: list[str] = []
    for name, result in ran.items():
        found += leaks(result.stdout, f"stdout of '{name}'")
        found += leaks(result.stderr, f"stderr of '{name}'")
    files = list(files_under(reports))
    assert any(p.name == "journal.sqlite" for p in files)
    for path in files:
        found += leaks(path.read_bytes(), str(path.relative_to(reports)))
    assert found == []

    # The key is named by its prefix where a person needs to know which one was used.
    assert f"credential: API key {KEY_PREFIX}…" in ran["run, API key"].stdout
    summary = ran["run, API key"].summary()
    assert summary["credential"] == f"API key {KEY_PREFIX}…"
    planned = [json.loads(line) for line in ran["credentials file"].stderr.splitlines()]
    assert planned[0]["event"] == "run_planned"
    assert planned[0]["credential"] == f"API key {KEY_PREFIX}…"
    assert ran["run, JWT, json logs"].summary()["credential"] == "JWT …"

    # Files with care: every run folder is the owner's only, and so is everything in it.
    run_dirs = [p for p in reports.iterdir() if p.is_dir()]
    assert len(run_dirs) >= 7
    for folder in run_dirs:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    modes = {str(p.relative_to(reports)): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert modes == dict.fromkeys(modes, 0o600)
