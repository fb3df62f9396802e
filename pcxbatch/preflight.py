"""Preflight: one cheap read before a run's first change (and before a preview's listing).

In: where a run sends (the job, base URL and credential) and its :class:`~pcxbatch.context.
RunContext`. Out: a :class:`Preflight` when the API can be used, or an error that says what to
do about it, raised before any row was sent, so that no row is marked failed for it and a new
run leaves no folder behind. The read is ``GET /users/list?limit=1`` (``PcxClient.probe``), with
a few attempts; its answer means (pcxbatch/CONTRACT.md, "Throttling and gateway behaviour")::

    no connection, timeouts, 5xx      ApiNotAnswering (exit 3): run again later
    403 "Missing Authentication       UnusableError (exit 2): no PCX API at this base URL;
      Token" (API Gateway), 404,        "did you mean .../v1?" when the path lacks it
      2xx that is no user list
    TLS refused (https to a plain     UnusableError (exit 2), naming which it is
      port), TLS met by plain http,
      certificate not accepted
    401                               UnusableError (exit 2): the credential is refused
    any other 403                     the key may not list users: the run goes on without
                                        reads and says so once (``can_read=False``); a
                                        preview, which must read, stops (exit 2)
    429, 2xx user list, other 4xx     the API is there: go on

A plain-http attempt that the server drops is checked once more with a TLS handshake: a port
that completes one speaks TLS, and the base URL wants ``https://``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from pcxbatch.errors import StoppedError, UnusableError

if TYPE_CHECKING:
    from pcxbatch.client import PcxClient
    from pcxbatch.config import Job
    from pcxbatch.context import RunContext
    from pcxbatch.credentials import Credentials
    from pcxbatch.retry import Attempt

__all__ = ["ApiNotAnswering", "Preflight", "check_api", "preflight", "speaks_tls"]

#: What API Gateway answers for a path it has no resource for, before any authorizer runs.
MISSING_PATH = "Missing Authentication Token"
#: How long the TLS handshake check may take.
SNIFF_SECONDS = 5.0


@dataclass(frozen=True)
class Preflight:
    """The API can be used. ``can_read``: the key may list users (settling a row whose answer
    left the truth open needs it; False after a 403 on the list)."""

    can_read: bool


class ApiNotAnswering(StoppedError):
    """No answer, only timeouts or 5xx: nothing was sent; run the same command again later."""


def check_api(
    job: Job,
    base_url: str,
    credentials: Credentials | None,
    ctx: RunContext,
    to_send: Mapping[str, int] | None = None,
) -> Preflight | None:
    """The runner's preflight: :func:`preflight` through a client of its own (one connection),
    on the context's async runner. ``to_send``: the rows per action a run is about to send
    (a dry run, or nothing to send, needs no check); ``None``: a preview, which must read."""
    if credentials is None or (to_send is not None and (job.dry_run or not any(to_send.values()))):
        return None
    client = ctx.client_factory(job, base_url, credentials, connections=1)
    reads = to_send is None
    result: Preflight = ctx.run_async(preflight(client, notice=ctx.ui.notice, must_read=reads))
    return result


async def preflight(
    client: PcxClient,
    *,
    notice: Callable[[str], None],
    must_read: bool = False,
    sniff_tls: Callable[[str, int], Awaitable[bool]] | None = None,
) -> Preflight:
    """Probe the API through ``client`` (closed after) and judge the answer (module docstring).

    ``notice`` hears the one warning a usable API can deserve; ``sniff_tls`` replaces the TLS
    handshake check (:func:`speaks_tls`) in tests.
    """
    try:
        probe = await client.probe()
        url = urllib.parse.urlsplit(client.base_url)
        if probe.status is None and probe.failure == "dropped" and url.scheme == "http":
            port = url.port or 80
            if await (sniff_tls or speaks_tls)(url.hostname or "", port):
                raise UnusableError(
                    f"{url.netloc} speaks TLS, not plain HTTP: the base URL should start with"
                    f" https:// ({client.base_url}); nothing was sent"
                )
    finally:
        await client.aclose()
    return _judge(probe, client.base_url, notice, must_read)


def _judge(
    probe: Attempt, base_url: str, notice: Callable[[str], None], must_read: bool
) -> Preflight:
    """What the probe's last attempt means (the table in the module docstring)."""
    host = urllib.parse.urlsplit(base_url).netloc
    said = f"{probe.status}: {probe.message}" if probe.status is not None else probe.message
    if probe.status is None:
        _no_answer(probe, base_url, host)
    status = probe.status or 0
    if status >= 500:
        raise ApiNotAnswering(
            f"the API at {host} is not answering (HTTP {said}); nothing was sent: run the same"
            " command again later"
        )
    if status == 404 or (status == 403 and MISSING_PATH.lower() in probe.message.lower()):
        raise UnusableError(_not_here(base_url, f"GET /users/list answered {said}"))
    if status == 401:
        raise UnusableError(
            f"the API at {host} refused the credential (401: {probe.message}); check"
            " PCX_API_KEY or PCX_JWT (or the job's credentials_file); nothing was sent"
        )
    if status == 403:
        if must_read:
            raise UnusableError(
                f"the credential may not list users at {host} (403: {probe.message}), and a"
                " preview must read them; nothing was read"
            )
        notice(
            f"the credential may not list users (403: {probe.message}): the run goes on"
            " without reading statuses, so an answer that leaves a row's outcome open cannot"
            " be checked"
        )
        return Preflight(can_read=False)
    if 200 <= status < 300 and not _is_user_list(probe.body):
        raise UnusableError(_not_here(base_url, "GET /users/list answered, but not a user list"))
    return Preflight(can_read=True)


def _no_answer(probe: Attempt, base_url: str, host: str) -> NoReturn:
    """Raise what a probe without any answer means."""
    scheme = urllib.parse.urlsplit(base_url).scheme
    if probe.failure == "tls" and scheme == "https":
        raise UnusableError(
            f"{host} does not speak TLS (https:// failed: {probe.message}); is it a plain http://"
            f" port? Check the base URL ({base_url}); nothing was sent"
        )
    if probe.failure == "certificate":
        raise UnusableError(
            f"the TLS certificate of {host} was not accepted ({probe.message}); pcxbatch always"
            " checks certificates; nothing was sent"
        )
    raise ApiNotAnswering(
        f"the API at {host} is not answering ({probe.message}); nothing was sent: run the same"
        " command again later"
    )


def _not_here(base_url: str, what: str) -> str:
    path = urllib.parse.urlsplit(base_url).path.rstrip("/")
    hint = "" if path.endswith("/v1") else f"; did you mean {base_url.rstrip('/')}/v1?"
    return f"no PCX API at this base URL ({base_url}: {what}); nothing was sent{hint}"


def _is_user_list(body: dict[str, Any] | None) -> bool:
    return body is not None and isinstance(body.get("users"), list)


async def speaks_tls(host: str, port: int) -> bool:
    """Does ``host:port`` complete a TLS handshake? Only the protocol is asked about, so the
    certificate is not checked (nothing is sent over this connection)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(SNIFF_SECONDS):
            _, writer = await asyncio.open_connection(host, port, ssl=context)
    except (OSError, TimeoutError, ssl.SSLError):
        return False
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return True
