"""``pcxbatch users`` and ``pcxbatch serve``, as an administrator runs them on the server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pcxbatch.web import passwords
from pcxbatch.web.store import Store, database_url

PCXBATCH = Path(sys.executable).parent / "pcxbatch"


def users(*args: str | Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCX")}
    return subprocess.run(
        [str(PCXBATCH), "users", *map(str, args)], input=stdin, capture_output=True, text=True,
        env=env, timeout=60,
    )  # fmt: skip


def test_add_with_a_token_prints_it_once_as_the_last_line_and_keeps_only_hashes(
    tmp_path: Path,
) -> None:
    added = users("add", "ana", "--role", "analyst", "--password-stdin", "--token",
                  "--data-dir", tmp_path, stdin="a long enough password\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    token = added.stdout.splitlines()[-1]
    assert token.startswith("pcxw_") and len(token) > 40
    store = Store(database_url(tmp_path))
    account = store.account("ana")
    assert account is not None and account.role == "analyst"
    stored = store.password_hash("ana")
    assert stored is not None and stored.startswith("$argon2id$")
    assert passwords.check_password(stored, "a long enough password")
    assert store.token_account(passwords.token_hash(token)) == account
    db = (tmp_path / "pcxbatch.db").read_bytes()
    assert token.encode() not in db and b"a long enough password" not in db
    store.close()


def test_list_disable_and_tokens(tmp_path: Path) -> None:
    for name, role in (("vera", "approver"), ("adam", "admin")):
        users("add", name, "--role", role, "--password-stdin", "--data-dir", tmp_path,
              stdin="another long password\n")  # fmt: skip
    listed = users("list", "--data-dir", tmp_path)
    assert [line.split("\t")[:3] for line in listed.stdout.splitlines()] == [
        ["adam", "admin", "active"], ["vera", "approver", "active"],
    ]  # fmt: skip
    made = users("token", "vera", "--data-dir", tmp_path)
    token = made.stdout.splitlines()[-1]
    store = Store(database_url(tmp_path))
    assert store.token_account(passwords.token_hash(token)) is not None
    assert "revoked 1 token" in users("token", "vera", "--revoke", "--data-dir", tmp_path).stdout
    assert store.token_account(passwords.token_hash(token)) is None
    assert users("disable", "vera", "--data-dir", tmp_path).returncode == 0
    assert "disabled" in users("list", "--data-dir", tmp_path).stdout
    store.close()


def test_mistakes_are_one_line_without_a_traceback(tmp_path: Path) -> None:
    short = users("add", "ana", "--role", "analyst", "--password-stdin", "--data-dir", tmp_path,
                  stdin="short\n")  # fmt: skip
    assert short.returncode == 2 and "at least 12 characters" in short.stderr
    bad = users("add", "Ana Smith", "--role", "analyst", "--password-stdin",
                "--data-dir", tmp_path, stdin="a long enough password\n")  # fmt: skip
    assert bad.returncode == 2 and "account name" in bad.stderr
    unknown = users("disable", "nobody", "--data-dir", tmp_path)
    assert unknown.returncode == 2 and "no account named 'nobody'" in unknown.stderr
    for ran in (short, bad, unknown):
        assert "Traceback" not in ran.stderr and len(ran.stderr.strip().splitlines()) == 1


def test_a_non_loopback_bind_without_tls_is_warned_about() -> None:
    from pcxbatch.web.server import bind_warning

    warning = bind_warning("0.0.0.0", tls=False)
    assert warning is not None and "without TLS" in warning and "unencrypted" in warning
    assert bind_warning("127.0.0.1", tls=False) is None
    assert bind_warning("0.0.0.0", tls=True) is None
