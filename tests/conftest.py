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
