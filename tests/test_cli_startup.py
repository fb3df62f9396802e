"""``pcxbatch --help`` and every ``COMMAND --help`` load no heavy library: each is imported by the
command that uses it. (How long start-up takes is measured in bench/startup.py, not here.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Libraries a command may need, but that help text never does.
HEAVY = {
    "pandas", "numpy", "openpyxl", "xlsxwriter", "httpx", "httpcore", "uvicorn", "rich",
    "cryptography", "aiohttp",
}  # fmt: skip
#: The web service's libraries: only ``pcxbatch serve`` and ``pcxbatch users`` load them.
HEAVY |= {"starlette", "jinja2", "python_multipart", "multipart", "argon2", "sqlalchemy"}
HEAVY |= {"procrastinate", "psycopg", "psycopg_pool"}  # serve --database only

PROBE = """
import contextlib, io, json, sys
from pcxbatch.cli import run_cli
with contextlib.redirect_stdout(io.StringIO()) as text:
    code = run_cli(sys.argv[1:])
print(json.dumps({"code": int(code), "help": text.getvalue(), "modules": sorted(sys.modules)}))
"""


#: Every command whose help is checked ("audit verify": a subcommand's).
COMMANDS = ["", "run", "resume", "preview", "apply", "validate", "sandbox", "audit"]
COMMANDS += ["audit verify", "serve", "users"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_imports_no_heavy_library(command: str) -> None:
    args = [*command.split(), "--help"]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True
    )
    seen = json.loads(proc.stdout.splitlines()[-1])
    assert seen["code"] == 0 and "Usage: pcxbatch" in seen["help"]
    loaded = {name.partition(".")[0] for name in seen["modules"]}
    assert loaded & HEAVY == set()
