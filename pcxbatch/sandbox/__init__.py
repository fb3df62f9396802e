"""A faithful local PCX Users API, in-process (httpx, no sockets) or on loopback (uvicorn).

In: a ``SandboxConfig``. Out: a ``Sandbox`` (state, rules, request log, ASGI ``app``);
``start`` serves it in a background thread, ``serve`` in the foreground for
``pcxbatch sandbox``, ``inprocess_transport`` hands it to an ``httpx.AsyncClient``.

Modules: ``config`` (the settings), ``users`` (seeded or file users), ``throttle`` (token
bucket), ``state`` (the sandbox and its rules), ``app`` (ASGI), ``server`` (uvicorn),
``transport`` (httpx in-process).

The server stack (``server``: uvicorn; ``transport``: httpx) is imported on first use of one
of its names, so that ``config`` (which checks a job's ``sandbox:`` settings from
``sandbox.config``) and a plain run never load it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .app import ConnectionDropped
from .config import SandboxConfig, SandboxSetting, sandbox_settings
from .state import PREFIX, RequestRecord, Sandbox, encode_key
from .users import STATUSES, USER_FIELDS, load_users_file, seed_users

if TYPE_CHECKING:
    from .server import RunningSandbox, serve, start, startup_lines
    from .transport import INPROCESS_BASE_URL, inprocess_transport

# Name -> the submodule that defines it, for the names imported on first use.
_LAZY = {
    "RunningSandbox": "server",
    "serve": "server",
    "start": "server",
    "startup_lines": "server",
    "INPROCESS_BASE_URL": "transport",
    "inprocess_transport": "transport",
}

__all__ = [
    "INPROCESS_BASE_URL",
    "PREFIX",
    "STATUSES",
    "USER_FIELDS",
    "ConnectionDropped",
    "RequestRecord",
    "RunningSandbox",
    "Sandbox",
    "SandboxConfig",
    "SandboxSetting",
    "encode_key",
    "inprocess_transport",
    "load_users_file",
    "sandbox_settings",
    "seed_users",
    "serve",
    "start",
    "startup_lines",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value
