"""Fixtures shared by test files across folders."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Run the test with umask 0, so a file's mode is exactly the one pcxbatch asked for."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


#: A PostgreSQL server for the tests that need one (``.ci/run`` starts a throwaway one).
POSTGRES = os.environ.get("PCXBATCH_TEST_DATABASE")


@pytest.fixture
def pg_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database on ``PCXBATCH_TEST_DATABASE``'s server,
    dropped after the test (each test its own: the queue's tables are shared otherwise)."""
    import secrets

    import psycopg

    if not POSTGRES:
        pytest.skip("no PostgreSQL: set PCXBATCH_TEST_DATABASE (.ci/run starts one)")
    name = f"pcx_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
