"""Serve a sandbox over real HTTP with uvicorn: in a background thread, or in the foreground.

In: a ``SandboxConfig`` (or a ready ``Sandbox``). Out: ``start`` returns a ``RunningSandbox``
once the port accepts connections (a context manager; ``stop`` shuts down cleanly); ``serve``
blocks until Ctrl-C, after telling ``announce`` where it listens and which key to use.

The socket is bound here rather than by uvicorn so that port 0 works (the real port is known
before serving) and a busy port is an ``UnusableError``, not a ``sys.exit`` from uvicorn.
Access logs are off: at thousands of requests a second they would cost more than the app.
"""

from __future__ import annotations

import gc
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import uvicorn

from pcxbatch.errors import UnusableError
from pcxbatch.rules import is_loopback

from .config import SandboxConfig, key_prefix
from .state import PREFIX, Sandbox


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise UnusableError(f"the sandbox cannot listen on {host}:{port}: {exc.strerror}") from exc


def _uvicorn_server(sandbox: Sandbox, *, log_config: Any) -> uvicorn.Server:
    config = uvicorn.Config(
        sandbox.app,
        lifespan="off",
        ws="none",
        access_log=False,
        log_config=log_config,
        log_level="warning",
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=2,
    )
    return uvicorn.Server(config)


def _url(host: str, port: int) -> str:
    # A server on every interface is reached locally through loopback.
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


class RunningSandbox:
    """A sandbox served by uvicorn in a background thread, on ``base_url``."""

    def __init__(self, sandbox: Sandbox, sock: socket.socket) -> None:
        self.sandbox = sandbox
        self.host: str = sock.getsockname()[0]
        self.port: int = sock.getsockname()[1]
        self.base_url = _url(self.host, self.port) + PREFIX
        self._server = _uvicorn_server(sandbox, log_config=None)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"pcx-sandbox-{self.port}",
            daemon=True,
        )

    @property
    def api_key(self) -> str:
        """The admin API key the sandbox accepts."""
        return self.sandbox.api_key

    @property
    def jwt(self) -> str:
        """The bearer token the sandbox accepts."""
        return self.sandbox.jwt

    @property
    def readonly_api_key(self) -> str:
        """A valid key whose role may not change statuses (403 on the PUTs)."""
        return self.sandbox.readonly_api_key

    def _start(self, timeout: float) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the sandbox did not start on {self.base_url}")
            time.sleep(0.005)

    def stop(self, *, wait: bool = True) -> None:
        """Stop serving (idempotent); with ``wait``, return once the server thread has finished.

        uvicorn takes a few tenths of a second to wind down; ``wait=False`` lets a caller
        stopping many sandboxes (a test suite) join them later with ``join``.
        """
        self._server.should_exit = True
        if wait:
            self.join()

    def join(self, timeout: float = 10) -> None:
        """Wait for the server thread to finish after ``stop``."""
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start(config: SandboxConfig | None = None, *, sandbox: Sandbox | None = None) -> RunningSandbox:
    """Serve a sandbox on loopback in a background thread; return once it accepts connections.

    Pass ``sandbox`` to serve one built beforehand (with test clocks, say); ``config`` then only
    supplies ``host`` and ``port`` when the sandbox's own config is not wanted.
    """
    sandbox = sandbox or Sandbox(config or SandboxConfig())
    net = config or sandbox.config
    running = RunningSandbox(sandbox, _bind(net.host, net.port))
    running._start(timeout=15)
    return running


def startup_lines(sandbox: Sandbox, url: str) -> list[str]:
    """What a person needs to use a sandbox at ``url``: where it is, which credential to use.

    Credentials the sandbox generated are shown in full (they exist only in this process);
    a key given on the command line is shown by its prefix only, since its owner has it.
    """
    config = sandbox.config
    source = f"users from {config.users_file}" if config.users_file else f"seed {config.seed}"
    lines = [f"PCX sandbox listening on {url} ({sandbox.user_count} users, {source})."]
    if not is_loopback(config.host):
        lines.append(f"WARNING: listening on {config.host}: reachable from beyond this machine.")
    lines.append("Point pcxbatch at it with:")
    lines.append(f"  export PCX_BASE_URL={url}{PREFIX}")
    if config.api_key is None:
        lines.append(f"  export PCX_API_KEY={sandbox.api_key}")
    else:
        lines.append(f"  export PCX_API_KEY=<the key you gave: {key_prefix(sandbox.api_key)}_...>")
    if config.jwt is None:
        lines.append("For the JWT flow instead:")
        lines.append(f"  export PCX_JWT={sandbox.jwt}")
    if config.readonly_api_key is None:
        lines.append(f"Read-only key (403 on status changes): {sandbox.readonly_api_key}")
    lines.extend(_behaviour_lines(config))
    lines.append("Press Ctrl-C to stop.")
    return lines


def _behaviour_lines(config: SandboxConfig) -> list[str]:
    lines = ["Behaviour:"]
    if config.rate is not None:
        after = ", with Retry-After" if config.retry_after else ""
        lines.append(
            f"  throttle: {config.rate:g} requests/s per key, burst {config.effective_burst}{after}"
        )
    if config.latency_ms > 0:
        lines.append(f"  latency: {config.latency_ms:g} ms +/- {config.effective_jitter_ms:g} ms")
    if config.fail_rate or config.ghost_rate or config.drop_rate:
        lines.append(
            f"  faults (seed {config.seed}): fail {config.fail_rate:.1%}, "
            f"ghost {config.ghost_rate:.1%}, drop {config.drop_rate:.1%}"
        )
    lines.append(
        f"  already inactive -> {config.deactivate_inactive}; same status -> {config.same_status}"
    )
    lines.extend(f"  {line}" for line in _misbehaviour_lines(config))
    return lines


def _misbehaviour_lines(config: SandboxConfig) -> list[str]:
    lines = []
    if config.gateway_missing_path:
        lines.append("unknown paths -> 403 Missing Authentication Token (API Gateway style)")
    if config.retry_after_seconds is not None:
        lines.append(f"every 429 says Retry-After: {config.retry_after_seconds}")
    if config.trickle_ms:
        lines.append(f"answers to changes trickle, one byte every {config.trickle_ms:g} ms")
    if config.repeat_page_key:
        lines.append("GET /users/list repeats its page key: paging never ends")
    if config.echo_credential:
        lines.append("the credential is reflected in a WWW-Authenticate header")
    return lines


def serve(
    config: SandboxConfig,
    announce: Callable[[str], None],
    *,
    sandbox: Sandbox | None = None,
) -> None:
    """Serve in the foreground until Ctrl-C (SIGINT) or SIGTERM, then return normally.

    ``announce`` receives the startup lines one by one, then a closing line.
    """
    sandbox = sandbox or Sandbox(config)
    # The users live as long as the process: moving them out of the cyclic GC's sight keeps full
    # collections from rescanning them under load (pauses of 100+ ms with 100k users).
    gc.collect()
    gc.freeze()
    sock = _bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    server = _uvicorn_server(sandbox, log_config=uvicorn.config.LOGGING_CONFIG)
    for line in startup_lines(sandbox, _url(host, port)):
        announce(line)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn shuts down gracefully on the first Ctrl-C, then re-raises the signal.
        pass
    finally:
        sock.close()
    served = len(sandbox.requests)
    announce(f"PCX sandbox stopped after {served} request{'' if served == 1 else 's'}.")
