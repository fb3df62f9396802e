"""Setting a sandbox up: seeded users, a users file, the config checks, starting and serving."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from pcxbatch.errors import ConfigError, UnusableError
from pcxbatch.sandbox import (
    STATUSES,
    USER_FIELDS,
    Sandbox,
    SandboxConfig,
    sandbox_settings,
    seed_users,
    start,
    startup_lines,
)

# -- seeded users ------------------------------------------------------------------------------


def test_seeded_users_are_deterministic_and_grow_by_appending() -> None:
    assert seed_users(50, 4) == seed_users(50, 4)
    assert seed_users(50, 4) != seed_users(50, 5)
    assert seed_users(80, 4)[:50] == seed_users(50, 4)


def test_seeded_users_are_a_realistic_mix() -> None:
    users = seed_users(1000, 0)
    assert all(set(u) == set(USER_FIELDS) for u in users)
    assert all(str(uuid.UUID(u["user_id"])) == u["user_id"] for u in users)
    assert len({u["user_id"] for u in users}) == 1000
    statuses = Counter(u["status"] for u in users)
    assert set(statuses) == set(STATUSES)
    assert statuses.most_common(1)[0][0] == "active" and statuses["active"] > 500
    roles = Counter(u["role"] for u in users)
    assert set(roles) == {"user", "admin"} and roles["admin"] < roles["user"]
    assert 3 <= len({u["org_id"] for u in users}) <= 10
    assert len({u["type"] for u in users}) >= 2
    assert all(u["org_id"] in u["org_ids"] for u in users)


def test_a_sandbox_seeds_the_number_of_users_asked() -> None:
    sandbox = Sandbox(SandboxConfig(users=7, seed=9))
    assert list(sandbox.users) == [u["user_id"] for u in seed_users(7, 9)]


# -- users file --------------------------------------------------------------------------------


def test_a_users_file_replaces_the_seeded_users(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text(
        json.dumps(
            [
                {"user_id": "u-1", "status": "inactive", "email": "a@example.com"},
                {"user_id": "u-2", "org_id": "org_9", "custom": 1},
            ]
        )
    )
    sandbox = Sandbox(SandboxConfig(users_file=path, users=500))
    assert list(sandbox.users) == ["u-1", "u-2"]
    assert sandbox.status_of("u-1") == "inactive"
    second = sandbox.users["u-2"]
    assert second["status"] == "active"
    assert second["org_ids"] == ["org_9"]
    assert second["custom"] == 1
    assert set(USER_FIELDS) <= set(second)


def test_a_bad_users_file_names_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text(
        json.dumps(
            [
                {"user_id": "a"},
                {"user_id": "a"},
                {"status": "active"},
                3,
                {"user_id": "b", "status": "gone"},
            ]
        )
    )
    with pytest.raises(ConfigError) as caught:
        Sandbox(SandboxConfig(users_file=path))
    assert len(caught.value.problems) == 4
    with pytest.raises(ConfigError):
        Sandbox(SandboxConfig(users_file=tmp_path / "missing.json"))


# -- config ------------------------------------------------------------------------------------


def test_config_defaults_are_a_well_behaved_pcx_on_loopback() -> None:
    config = SandboxConfig()
    assert config.host == "127.0.0.1"
    assert (config.deactivate_inactive, config.same_status) == (409, 200)
    assert config.rate is None and config.retry_after is False
    assert config.fail_rate == config.ghost_rate == config.drop_rate == 0


def test_config_reports_every_wrong_value_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        SandboxConfig(port=70000, rate=-1, burst=0, fail_rate=2, drop_rate=-0.1, api_key="NONE")
    problems = " ".join(caught.value.problems)
    for name in ("port", "rate", "burst", "fail_rate", "drop_rate", "api_key"):
        assert name in problems


def test_the_settable_fields_are_the_sandbox_command_options_with_their_help() -> None:
    # One definition (SandboxConfig's field metadata) for the command, job files and checks.
    import click

    from pcxbatch.cli.app import sandbox as command

    context = click.Context(command)
    unset = getattr(click.core, "UNSET", None)  # click >= 8.2: "no default" is a sentinel
    options = {p.name: p for p in command.params if isinstance(p, click.Option)}
    settings = sandbox_settings()
    assert [s.name for s in settings] == list(options)
    for setting in settings:
        option = options[setting.name]
        assert setting.help == option.help
        shown = option.get_default(context)
        if setting.choices:  # a click.Choice of the values' texts
            assert isinstance(option.type, click.Choice)
            assert [str(c) for c in setting.choices] == list(option.type.choices)
            assert shown == str(setting.default)
        else:
            assert (None if shown is unset else shown) == setting.default


def test_a_job_may_carry_only_settings_without_secrets_or_addresses() -> None:
    in_job = {s.name for s in sandbox_settings(job=True)}
    assert in_job == {
        "users",
        "seed",
        "rate",
        "burst",
        "retry_after",
        "latency_ms",
        "fail_rate",
        "ghost_rate",
        "drop_rate",
        "gateway_missing_path",
        "retry_after_seconds",
        "trickle_ms",
        "repeat_page_key",
        "echo_credential",
        "echo_reason",
        "deactivate_inactive",
        "same_status",
        "refuse_rate",
        "wrong_status_rate",
        "html_rate",
        "applied_503_rate",
        "huge_rate",
    }
    # Each default is one SandboxConfig accepts.
    SandboxConfig(**{s.name: s.default for s in sandbox_settings(job=True)})


def test_the_settings_can_be_read_without_the_server_stack() -> None:
    code = (
        "import sys, pcxbatch.config, pcxbatch.sandbox.config;"
        "print(sorted(m for m in ('uvicorn', 'httpx') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_generated_credentials_look_like_pcx_ones() -> None:
    sandbox = Sandbox(SandboxConfig(users=1))
    assert sandbox.api_key.startswith("pcx_sbx") and sandbox.api_key.count("_") == 2
    assert sandbox.readonly_api_key.startswith("pcx_sbxro")
    assert sandbox.jwt.startswith("eyJ") and sandbox.jwt.count(".") == 2
    assert Sandbox(SandboxConfig(users=1)).api_key != sandbox.api_key


# -- starting and serving ----------------------------------------------------------------------


def test_start_listens_on_loopback_and_stops_cleanly() -> None:
    running = start(SandboxConfig(users=3))
    with running:
        assert running.host == "127.0.0.1"
        assert running.base_url == f"http://127.0.0.1:{running.port}/v1"
        headers = {"X-Api-Key": running.api_key, "Authorization": "NONE"}
        assert httpx.get(f"{running.base_url}/users/list", headers=headers).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{running.base_url}/users/list", headers=headers)


def test_a_busy_port_is_an_unusable_error() -> None:
    with (
        start(SandboxConfig(users=1)) as running,
        pytest.raises(UnusableError, match="cannot listen"),
    ):
        start(SandboxConfig(users=1, port=running.port))


def test_state_can_be_read_from_another_thread_while_serving() -> None:
    with start(SandboxConfig(users=200)) as running:
        headers = {"X-Api-Key": running.api_key, "Authorization": "NONE"}
        active = [k for k, u in running.sandbox.users.items() if u["status"] == "active"][:60]
        done = threading.Event()
        seen: list[int] = []
        errors: list[BaseException] = []

        def reader() -> None:
            try:
                while not done.is_set():
                    seen.append(len(running.sandbox.requests))
                    assert len(running.sandbox.users) == 200
            except BaseException as exc:  # surfaced below: a thread cannot fail the test
                errors.append(exc)

        thread = threading.Thread(target=reader)
        thread.start()
        with httpx.Client(base_url=running.base_url, headers=headers) as client:
            for uid in active:
                client.put(f"/users/{uid}/deactivate", json={"updated_by": "t"})
        done.set()
        thread.join()
        assert not errors
        # The reader may not run again after the last request: only its order is checked.
        assert seen == sorted(seen) and seen[-1] <= 60
        assert len(running.sandbox.requests) == 60
        assert all(running.sandbox.status_of(uid) == "inactive" for uid in active)
        assert len(running.sandbox.requests) == 60


def test_startup_lines_say_where_it_listens_and_which_key_to_use() -> None:
    sandbox = Sandbox(SandboxConfig(users=3))
    text = "\n".join(startup_lines(sandbox, "http://127.0.0.1:8080"))
    assert "http://127.0.0.1:8080" in text
    assert "export PCX_BASE_URL=http://127.0.0.1:8080/v1" in text
    assert f"export PCX_API_KEY={sandbox.api_key}" in text


def test_startup_lines_never_echo_a_key_the_user_gave() -> None:
    sandbox = Sandbox(SandboxConfig(users=3, api_key="pcx_mine_topsecret"))
    text = "\n".join(startup_lines(sandbox, "http://127.0.0.1:8080"))
    assert "topsecret" not in text
    assert "pcx_mine" in text


def test_serve_announces_serves_and_stops_on_ctrl_c() -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pcxbatch", "sandbox", "--port", "0", "--users", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        lines = [first]
        while not lines[-1].startswith("Press Ctrl-C"):
            lines.append(proc.stdout.readline())
        assert first.startswith("PCX sandbox listening on http://127.0.0.1:")
        base_url = next(x.split("=", 1)[1] for x in lines if "PCX_BASE_URL=" in x).strip()
        key = next(x.split("=", 1)[1] for x in lines if "PCX_API_KEY=" in x).strip()
        response = httpx.get(
            f"{base_url}/users/list", headers={"X-Api-Key": key, "Authorization": "NONE"}
        )
        assert response.json()["total"] == 5
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped after 1 request." in out
    assert "Traceback" not in err
