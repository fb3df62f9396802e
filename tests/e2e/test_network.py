"""How ``pcxbatch run`` meets a network that is not a healthy PCX, end to end over real sockets:
a dead port, a base URL without ``/v1``, TLS and plain HTTP crossed, an API that dies mid-run,
an answer that trickles, and a server that reflects the credential while ``--debug`` is on."""

from __future__ import annotations

import http.server
import json
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pcxbatch.sandbox.users import seed_users

from .conftest import Ran, pcxbatch
from .test_run import write_csv

KEY = "pcx_nettest_" + "s3cr3t" + secrets.token_hex(12)
SECRET = KEY.removeprefix("pcx_nettest_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def hits(tmp_path: Path, n: int = 6) -> Path:
    users = [[u["user_id"]] for u in seed_users(60, 3) if u["status"] == "active"][:n]
    return write_csv(tmp_path / "in.csv", ["user_id"], users)


def run(tmp_path: Path, base_url: str, *more: str, env: dict[str, str] | None = None) -> Ran:
    return pcxbatch(
        "run", hits(tmp_path), "--base-url", base_url, "--report-dir", tmp_path / "out",
        "--action", "deactivate", "--updated-by", "ops", "--yes", *more,
        env={"PCX_API_KEY": KEY} if env is None else env, timeout=90,
    )  # fmt: skip


def folders(tmp_path: Path) -> list[Path]:
    out = tmp_path / "out"
    return [p for p in out.iterdir() if p.is_dir()] if out.exists() else []


def job_file(tmp_path: Path, base_url: str, rows: int = 40, **keys: Any) -> Path:
    lines = [
        f"input: {hits(tmp_path, rows)}",
        f"base_url: {base_url}",
        f"report_dir: {tmp_path / 'out'}",
        "action: deactivate",
        "updated_by: ops",
        "yes: true",
        *(f"{k}: {v}" for k, v in keys.items()),
    ]
    path = tmp_path / "job.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_dead_port_is_one_line_exit_3_and_no_folder(tmp_path: Path) -> None:
    ran = run(tmp_path, f"http://127.0.0.1:{free_port()}/v1", "--concurrency", "8")
    assert ran.code == 3, ran.stderr
    assert ran.stderr.strip().splitlines() == [
        "error: the API at 127.0.0.1:"
        + ran.stderr.split("127.0.0.1:")[1].split()[0]
        + " is not answering (could not connect to the API (Connection refused));"
        " nothing was sent: run the same command again later"
    ]
    assert folders(tmp_path) == []


def test_an_api_that_dies_mid_run_stops_it_and_says_why(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    # The list answers (the preflight passes), every change meets a 502/503 with no Retry-After.
    server = sandbox_factory(users=60, seed=3, api_key=KEY, fail_rate=1.0)
    job = job_file(tmp_path, server.base_url, give_up_after=5, concurrency=4)
    ran = pcxbatch(
        "run", job, "--log-format", "json", "--summary", env={"PCX_API_KEY": KEY}, timeout=90
    )
    assert ran.code == 3, ran.stderr
    reason = f"the API at 127.0.0.1:{server.port} has not answered for 5 s"
    assert f"stopped: {reason}" in ran.stdout
    events = [json.loads(line) for line in ran.stderr.splitlines()]
    stopping = [e for e in events if e["event"] == "run_stopping"]
    assert len(stopping) == 1 and stopping[0]["reason"].startswith(reason)
    assert ran.summary()["stopped"].startswith(reason)
    assert Counter(r["outcome"] for r in ran.results()) == {"not_attempted": 40}
    assert f"pcxbatch resume {ran.run_dir}" in ran.stdout


@pytest.mark.parametrize("gateway", [False, True], ids=["404", "API Gateway 403"])
def test_a_base_url_without_v1_is_exit_2_with_the_hint(
    tmp_path: Path, sandbox_factory: Any, gateway: bool
) -> None:
    server = sandbox_factory(users=60, seed=3, api_key=KEY, gateway_missing_path=gateway)
    bare = server.base_url.removesuffix("/v1")
    ran = run(tmp_path, bare)
    assert ran.code == 2, ran.stderr
    assert "no PCX API at this base URL" in ran.stderr
    assert ran.stderr.strip().endswith(f"did you mean {bare}/v1?")
    assert not [r for r in server.sandbox.requests if r.method == "PUT"]
    assert folders(tmp_path) == []


def test_https_to_a_plain_port_is_exit_2_naming_it(tmp_path: Path, sandbox_factory: Any) -> None:
    server = sandbox_factory(users=60, seed=3, api_key=KEY)
    ran = run(tmp_path, server.base_url.replace("http://", "https://"))
    assert ran.code == 2, ran.stderr
    assert "does not speak TLS" in ran.stderr and "plain http:// port" in ran.stderr
    assert folders(tmp_path) == []


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[int]:
    """An HTTPS server with a self-signed certificate (made by the openssl command)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_plain_http_to_a_tls_port_is_exit_2_naming_it(tmp_path: Path, tls_server: int) -> None:
    ran = run(tmp_path, f"http://127.0.0.1:{tls_server}/v1")
    assert ran.code == 2, ran.stderr
    assert f"127.0.0.1:{tls_server} speaks TLS, not plain HTTP" in ran.stderr
    assert "https://" in ran.stderr
    assert folders(tmp_path) == []


def test_an_answer_that_trickles_is_cut_at_the_request_timeout(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    server = sandbox_factory(users=60, seed=3, api_key=KEY, trickle_ms=500)  # bodies ~150 bytes
    job = job_file(
        tmp_path, server.base_url, rows=8, request_timeout=2, max_attempts=1, concurrency=8
    )
    ran = pcxbatch("run", job, env={"PCX_API_KEY": KEY}, timeout=90)
    sent = [r for r in ran.results() if r["outcome"] != "not_attempted"]
    assert sent and all("no complete answer within 2 s" in r["message"] for r in sent), sent[0]
    assert all(r["attempts"] == "1" for r in sent)  # each cut at its deadline, not hung


@pytest.mark.parametrize("flow", ["API key", "JWT"])
def test_debug_shows_each_request_and_never_the_credential_a_server_echoes(
    tmp_path: Path, sandbox_factory: Any, flow: str
) -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJuZXR0ZXN0In0." + secrets.token_urlsafe(24)
    server = sandbox_factory(users=60, seed=3, api_key=KEY, jwt=jwt, echo_credential=True)
    env = {"PCX_API_KEY": KEY} if flow == "API key" else {"PCX_JWT": jwt}
    ran = pcxbatch(
        "--debug", "run", hits(tmp_path), "--base-url", server.base_url, "--report-dir",
        tmp_path / "out", "--action", "deactivate", "--updated-by", "ops", "--yes", env=env,
    )  # fmt: skip
    assert ran.code == 0, ran.stderr
    assert "pcxbatch.client: GET /v1/users/list -> HTTP 200 in " in ran.stderr
    assert ran.stderr.count("/deactivate -> HTTP 200 in ") == 6
    assert "WWW-Authenticate" not in ran.stderr and "www-authenticate" not in ran.stderr
    for needle in (SECRET, jwt.split(".")[1], jwt.split(".")[2]):
        assert needle not in ran.stderr and needle not in ran.stdout


def test_a_server_message_repeating_control_characters_is_made_safe_on_the_terminal(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    server = sandbox_factory(users=60, seed=3, api_key=KEY, echo_reason=True)
    uid = next(u["user_id"] for u in seed_users(60, 3) if u["status"] == "active")
    hostile = "case \x9b31mred\u202egnp.exe"  # a C1 CSI and a right-to-left override
    path = tmp_path / "in.csv"
    path.write_text(f"user_id,reason\n{uid},{hostile}\n", encoding="utf-8")
    ran = pcxbatch(
        "run", path, "--base-url", server.base_url, "--report-dir", tmp_path / "reports",
        "--action", "deactivate", "--updated-by", "ops", "--yes", env={"PCX_API_KEY": KEY},
    )  # fmt: skip
    shown = ran.stdout + ran.stderr
    assert "Invalid reason" in ran.stdout, shown  # the API's message is shown ...
    assert "\x9b" not in shown and "\u202e" not in shown  # ... but cannot drive the terminal
    assert "\\x9b31mred\\u202egnp.exe" in ran.stdout
