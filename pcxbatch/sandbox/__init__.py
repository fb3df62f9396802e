"""A faithful local PCX Users API, in-process (httpx, no sockets) or on loopback (uvicorn).

In: a ``SandboxConfig``. Out: a ``Sandbox`` (state, rules, request log, ASGI ``app``);
``start`` serves it in a background thread, ``serve`` in the foreground for
``pcxbatch sandbox``, ``inprocess_transport`` hands it to an ``httpx.AsyncClient``.

Modules: ``config`` (the settings), ``users`` (seeded or file users), ``throttle`` (token
bucket), ``state`` (the sandbox and its rules), ``app`` (ASGI), ``server`` (uvicorn),
``transport`` (httpx in-process).
"""

from .app import ConnectionDropped
from .config import SandboxConfig
from .server import RunningSandbox, serve, start, startup_lines
from .state import PREFIX, RequestRecord, Sandbox, encode_key
from .transport import INPROCESS_BASE_URL, inprocess_transport
from .users import STATUSES, USER_FIELDS, load_users_file, seed_users

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
    "encode_key",
    "inprocess_transport",
    "load_users_file",
    "seed_users",
    "serve",
    "start",
    "startup_lines",
]
