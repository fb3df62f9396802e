"""rules: each rule that several stages apply is applied the same way by all of them.

A job that ``load_job`` accepts must not fail later in the client (once a traceback for
``http://127.0.0.2``), and the other way round.
"""

from __future__ import annotations

import asyncio
import re
import urllib.parse
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcxbatch.client import PcxClient
from pcxbatch.config import load_job
from pcxbatch.credentials import Credentials
from pcxbatch.errors import ConfigError
from pcxbatch.limiter import Limiter
from pcxbatch.rules import DEFAULT_ID_PATTERN, check_base_url, check_user_id, is_loopback

PORT = 18433

# (base URL, accepted without allow_insecure_http, accepted with it)
BASE_URLS = [
    (f"http://127.0.0.2:{PORT}/v1", True, True),
    (f"http://127.255.255.254:{PORT}/v1", True, True),
    (f"http://[::1]:{PORT}/v1", True, True),
    (f"http://localhost:{PORT}/v1", True, True),
    (f"http://LOCALHOST:{PORT}/v1/", True, True),
    ("https://api.example.com/v1", True, True),
    ("https://api.example.com:8443/v1/", True, True),
    ("http://api.example.com/v1", False, True),
    ("http://10.0.0.5/v1", False, True),
    ("http://128.0.0.1/v1", False, True),
    ("ftp://api.example.com/v1", False, False),
    ("https://user:pass@api.example.com/v1", False, False),
    (f"http://user:pass@127.0.0.1:{PORT}/v1", False, False),
    ("https://api.example.com/v1?key=1", False, False),
    ("https://api.example.com/v1#top", False, False),
    ("https://api.example.com:99999/v1", False, False),
    ("https://api example.com/v1", False, False),
    ("https:///v1", False, False),
    ("not a url", False, False),
]


def client_accepts(url: str, *, insecure: bool) -> str | None:
    """The client's base URL for ``url``, or None when the client refuses it (ValueError)."""
    try:
        client = PcxClient(
            url,
            Credentials(api_key="pcx_abc_secret"),
            limiter=Limiter(1),
            allow_insecure_http=insecure,
        )
    except ValueError:
        return None
    asyncio.run(client.aclose())
    return client.base_url


def job_accepts(tmp_path: Path, url: str, *, insecure: bool) -> str | None:
    """The job's base URL for ``url``, or None when the job is refused for its base_url."""
    job_file = tmp_path / "job.yaml"
    job_file.write_text(f"input: a.csv\nbase_url: '{url}'\n", encoding="utf-8")
    try:
        return load_job(job_file, {"allow_insecure_http": insecure}).base_url
    except ConfigError as exc:
        assert all(problem.startswith("base_url: ") for problem in exc.problems), exc.problems
        return None


@pytest.mark.parametrize("insecure", [False, True], ids=["https-only", "allow-insecure-http"])
@pytest.mark.parametrize(("url", "plain", "with_insecure"), BASE_URLS, ids=lambda v: str(v))
def test_the_job_and_the_client_accept_the_same_base_urls(
    tmp_path: Path, url: str, plain: bool, with_insecure: bool, insecure: bool
) -> None:
    expected = with_insecure if insecure else plain
    from_job = job_accepts(tmp_path, url, insecure=insecure)
    from_client = client_accepts(url, insecure=insecure)
    assert (from_job is not None) is expected
    assert from_job == from_client  # the same answer, and the same normalised URL
    if from_job is not None:
        assert from_job == check_base_url(url, allow_insecure_http=insecure)
        assert not from_job.endswith("/")


def test_a_job_on_another_loopback_address_reaches_the_client(tmp_path: Path) -> None:
    # The bug this module fixes: config took 127.0.0.2 for loopback, the client did not.
    url = job_accepts(tmp_path, f"http://127.0.0.2:{PORT}/v1", insecure=False)
    assert url == f"http://127.0.0.2:{PORT}/v1"
    assert client_accepts(url, insecure=False) == url


def test_refusals_say_why_for_a_person() -> None:
    with pytest.raises(ValueError, match=r"unencrypted.*allow_insecure_http"):
        check_base_url("http://api.example.com/v1")
    with pytest.raises(ValueError, match="must be an https URL"):
        check_base_url("ftp://api.example.com/v1")
    with pytest.raises(ValueError, match="user name or password"):
        check_base_url("https://u:p@api.example.com/v1")
    with pytest.raises(ValueError, match="query"):
        check_base_url("https://api.example.com/v1?")
    with pytest.raises(ValueError, match="port"):
        check_base_url("https://api.example.com:http/v1")


def test_an_injected_transport_still_allows_plain_http() -> None:
    # In-process tests: nothing goes on the wire, so http to any host is fine.
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    client = PcxClient(
        "http://in-process.test/v1",
        Credentials(api_key="pcx_abc_secret"),
        limiter=Limiter(1),
        transport=transport,
    )
    assert client.base_url == "http://in-process.test/v1"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LocalHost", True),
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("128.0.0.1", False),
        ("10.0.0.1", False),
        ("::2", False),
        ("localhost.example.com", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# --- user IDs in a URL path ----------------------------------------------------------------------

ANYTHING = re.compile(r"(?s).*")
DEFAULT = re.compile(DEFAULT_ID_PATTERN)


@pytest.mark.parametrize(
    ("user_id", "why"),
    [
        (".", "is '.', which a URL path reads as 'this folder'"),
        ("..", "contains '..'"),
        ("...", "contains '..'"),
        ("%2e%2e", "contains '%'"),
        ("%2F", "contains '%'"),
        ("a/b", "contains '/'"),
        ("a\\b", "contains a backslash"),
        ("a?b", "contains '?'"),
        ("a#b", "contains '#'"),
        (" u-1", "contains whitespace (U+0020)"),
        ("a\tb", "contains whitespace (U+0009)"),
        ("a\nb", "contains whitespace (U+000A)"),
        ("a\u3000b", "contains whitespace (U+3000)"),
        ("a\x00b", "contains a control character (U+0000)"),
        ("a\x7fb", "contains a control character (U+007F)"),
        ("a\u200bb", "contains an invisible or unassigned character (U+200B)"),
        ("\uff0e\uff0e", "contains '..' once its characters are normalised (NFKC)"),
        ("a\uff0fb", "contains '/' once its characters are normalised (NFKC)"),
    ],
)
def test_path_breaking_ids_are_refused_whatever_the_pattern(user_id: str, why: str) -> None:
    assert check_user_id(user_id, ANYTHING) == why
    assert check_user_id(user_id, DEFAULT) is not None


def test_a_pattern_mismatch_is_named_before_a_character_only_some_servers_misread() -> None:
    # A typo in an ordinary ID reads as such; the permissive pattern still refuses it.
    assert (
        check_user_id("a#b", DEFAULT) == f"does not match the user ID pattern {DEFAULT_ID_PATTERN}"
    )
    assert check_user_id("a#b", ANYTHING) == "contains '#'"


@pytest.mark.parametrize("user_id", ["u-1", "a.b", ".hidden", "a:b@c+d", "ü123", "ﬁle", "x" * 300])
def test_a_permissive_pattern_still_lets_harmless_ids_through(user_id: str) -> None:
    assert check_user_id(user_id, ANYTHING) is None


def path_of(user_id: str) -> list[str]:
    """The path segments of the request the client sends for ``user_id`` (through httpx)."""
    seen: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"message": "ok"})

    async def go() -> None:
        async with PcxClient(
            "https://api.example.com/v1",
            Credentials(api_key="pcx_abc_secret"),
            limiter=Limiter(1_000_000),
            transport=httpx.MockTransport(server),
            id_pattern=r"(?s).*",
        ) as client:
            await client.deactivate(user_id, updated_by="ops", reason=None)

    asyncio.run(go())
    (request,) = seen
    return request.url.raw_path.decode("ascii").split("/")


@pytest.mark.parametrize("user_id", [".", "..", "...", "./.", "%2e", "%2e%2e", ".%2e", "\uff0e"])
def test_a_dot_only_id_never_reaches_another_endpoint(user_id: str) -> None:
    with pytest.raises(ValueError, match="refusing user ID"):
        path_of(user_id)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("./%\\?#a-_ \uff0e\uff0f"), min_size=1, max_size=5))
def test_an_id_the_client_accepts_is_exactly_one_path_segment(user_id: str) -> None:
    if check_user_id(user_id, ANYTHING) is not None:
        return  # refused before any request: see the tests above
    segments = path_of(user_id)
    assert segments[:3] == ["", "v1", "users"] and segments[4:] == ["deactivate"]
    assert urllib.parse.unquote(segments[3]) == user_id
