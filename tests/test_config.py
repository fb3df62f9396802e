"""Job files and flags: every problem reported at once, each with its key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pcxbatch.config import JOB_KEYS, Job, job_from_dict, job_to_dict, load_job
from pcxbatch.errors import ConfigError
from pcxbatch.model import Action
from pcxbatch.rules import DEFAULT_BASE_URL


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_job_file_paths_are_relative_to_the_job_file(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    job_file = tmp_path / "jobs" / "deact.yaml"
    job_file.write_text(
        "input: ../in/list.csv\naction: deactivate\nupdated_by: ops\nreport_dir: ../out\n"
    )
    job = load_job(job_file)
    assert job.name == "deact"
    assert job.input == tmp_path / "in" / "list.csv"
    assert job.report_dir == tmp_path / "out"
    assert job.action is Action.DEACTIVATE
    assert job.base_url == DEFAULT_BASE_URL


def test_every_problem_is_reported_at_once_with_its_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "action: obliterate\nstatus: gone\nrate: -3\nconcurrency: 2.5\n"
        "id_pattern: '(['\nbase_url: ftp://x\nwhatever: 1\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_job(path)
    problems = "\n".join(caught.value.problems)
    for key in (
        "whatever:",
        "input:",
        "action:",
        "status:",
        "rate:",
        "concurrency:",
        "id_pattern:",
        "base_url:",
    ):
        assert key in problems
    assert str(path) in str(caught.value)


def test_flags_override_the_job_file(tmp_path: Path) -> None:
    path = write(tmp_path, "input: a.csv\nrate: 5\nstatus: active\n")
    job = load_job(path, {"rate": 50.0, "status": "rejected", "dry_run": True, "reason": None})
    assert job.rate == 50.0
    assert job.status == "rejected"
    assert job.dry_run is True


def test_an_input_file_alone_is_an_ad_hoc_job(tmp_path: Path) -> None:
    job = load_job(tmp_path / "Sanctions hits.xlsx", {"action": "deactivate"})
    assert job.input == tmp_path / "Sanctions hits.xlsx"
    assert job.name == "Sanctions-hits"
    assert job.source == "command line"


def test_status_inactive_means_deactivate_and_contradictions_are_refused(tmp_path: Path) -> None:
    job = load_job(write(tmp_path, "input: a.csv\nstatus: Inactive\n"))
    assert job.action is Action.DEACTIVATE
    assert job.status is None
    with pytest.raises(ConfigError, match="contradicts"):
        load_job(write(tmp_path, "input: a.csv\naction: deactivate\nstatus: active\n"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("input: [unclosed\n", "not valid YAML (line 2, column 1)"),
        ("- a\n- b\n", "must be a mapping"),
    ],
)
def test_broken_yaml_is_one_clear_problem(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_job(write(tmp_path, text))


def test_missing_job_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_job(tmp_path / "nope.yaml")


def test_sandbox_settings_are_checked(tmp_path: Path) -> None:
    job = load_job(write(tmp_path, "input: a.csv\nsandbox: {users: 50, fail_rate: 0.1}\n"))
    assert job.sandbox == {"users": 50, "fail_rate": 0.1}
    with pytest.raises(ConfigError, match=r"sandbox\.colour: unknown key"):
        load_job(write(tmp_path, "input: a.csv\nsandbox: {colour: red}\n"))
    assert load_job(write(tmp_path, "input: a.csv\nsandbox: true\n")).sandbox == {}


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ("api_key: pcx_a_b", "sandbox.api_key: unknown key"),
        ("port: 8400", "sandbox.port: unknown key"),
        ("users: 2.5", "sandbox.users: must be a whole number"),
        ("users: true", "sandbox.users: must be a whole number"),
        ("rate: .inf", "sandbox.rate: must be a number"),
        ("retry_after: 1", "sandbox.retry_after: must be true or false"),
        ("deactivate_inactive: 500", "sandbox.deactivate_inactive: must be one of 409, 200"),
    ],
)
def test_sandbox_settings_are_checked_against_their_definition(
    tmp_path: Path, setting: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_job(write(tmp_path, f"input: a.csv\nsandbox: {{{setting}}}\n"))


def test_sandbox_settings_keep_their_types(tmp_path: Path) -> None:
    text = "input: a.csv\nsandbox: {users: '50', rate: 5, retry_after: true, same_status: 409}\n"
    job = load_job(write(tmp_path, text))
    assert job.sandbox == {"users": 50, "rate": 5.0, "retry_after": True, "same_status": 409}
    assert isinstance(job.sandbox["rate"], float)


def test_the_yes_key_survives_yaml_booleans(tmp_path: Path) -> None:
    assert load_job(write(tmp_path, "input: a.csv\nyes: true\n")).yes is True


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://api.pcxpay.com/v1", True),
        ("http://127.0.0.1:8400/v1", True),
        ("http://localhost:8400/v1", True),
        ("http://[::1]:8400/v1", True),
        ("http://api.pcxpay.com/v1", False),
        ("http://10.0.0.5/v1", False),
        ("ftp://api.pcxpay.com/v1", False),
    ],
)
def test_plain_http_only_to_loopback_unless_asked_by_name(
    tmp_path: Path, url: str, ok: bool
) -> None:
    path = write(tmp_path, f"input: a.csv\nbase_url: {url}\n")
    if ok:
        assert load_job(path).base_url == url
    else:
        with pytest.raises(ConfigError, match="base_url:"):
            load_job(path)
    if url.startswith("http://"):
        assert load_job(path, {"allow_insecure_http": True}).base_url == url


def test_the_job_keys_are_the_job_fields() -> None:
    assert set(Job.__dataclass_fields__) - JOB_KEYS == {"source", "raw"}


@pytest.mark.parametrize("key", sorted(JOB_KEYS - {"name"}))
def test_every_job_key_is_checked(tmp_path: Path, key: str) -> None:
    # A value of no usable type is refused by name, never a traceback or silently taken.
    with pytest.raises(ConfigError) as caught:
        load_job(tmp_path / "a.csv", {key: [1, 2]})
    assert any(problem.startswith(f"{key}: ") for problem in caught.value.problems)


def test_a_stored_job_comes_back_the_same(tmp_path: Path) -> None:
    text = (
        "input: a.csv\nstatus: active\nbase_url: http://127.0.0.2:8400/v1\nrate: 3\n"
        "sandbox: {users: 5}\nrequire_second_person: true\n"
    )
    job = load_job(write(tmp_path, text))
    again = job_from_dict(job_to_dict(job))
    assert job_to_dict(again) == job_to_dict(job)


def test_rate_auto_finds_the_limit_under_a_max_rate(tmp_path: Path) -> None:
    job = load_job(write(tmp_path, "input: a.csv\nrate: auto\nmax_rate: 300\n"))
    assert (job.rate, job.max_rate) == ("auto", 300.0)
    # From the command line every --rate is text: a number stays a stated rate.
    assert load_job(write(tmp_path, "input: a.csv\nrate: auto\n"), {"rate": "25"}).rate == 25.0
    assert load_job(write(tmp_path, "input: a.csv\n"), {"rate": "AUTO"}).rate == "auto"
    assert load_job(write(tmp_path, "input: a.csv\n")).rate == 10.0  # the default stays stated


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("rate: fast\n", "rate: must be a number"),
        ("rate: 0\n", "rate: must be between 0.01 and 10000"),
        ("rate: 50\nmax_rate: 100\n", "max_rate: only with rate: auto"),
        ("rate: auto\nmax_rate: 0\n", "max_rate: must be between 0.01 and 10000"),
    ],
)
def test_rate_problems_name_their_key(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_job(write(tmp_path, "input: a.csv\n" + text))
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_a_job_with_rate_auto_sends_through_a_limiter_that_finds_the_limit(
    tmp_path: Path,
) -> None:
    from pcxbatch.context import job_limiter
    from pcxbatch.limiter import Limiter

    found = job_limiter(load_job(write(tmp_path, "input: a.csv\nrate: auto\nmax_rate: 300\n")))
    assert isinstance(found, Limiter)
    assert (found.rate, found.max_rate) == (10.0, 300.0)  # starts slow, never above 300/s
    stated = job_limiter(load_job(write(tmp_path, "input: a.csv\nrate: 40\n")))
    assert isinstance(stated, Limiter)
    assert (stated.rate, stated.max_rate) == (40.0, 40.0)


def test_a_stated_rate_with_an_api_key_is_shared_through_the_jobs_pacing_store(
    tmp_path: Path,
) -> None:
    from pcxbatch.context import job_limiter
    from pcxbatch.credentials import Credentials
    from pcxbatch.sharedpace import SharedPacer

    store = tmp_path / "pace.sqlite"
    job = load_job(write(tmp_path, f"input: a.csv\nrate: 40\npacing_store: {store}\n"))
    shared = job_limiter(job, Credentials(api_key="pcx_ab12_secret"))
    assert isinstance(shared, SharedPacer) and store.exists()
    assert shared.key == "api_key:pcx_ab12_" and shared.rate == 40.0
