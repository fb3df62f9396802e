"""``python -m pcxbatch.sandbox``: serve a sandbox without the full CLI (used by ``bench/``).

In: a few flags, named as in ``pcxbatch sandbox``. Out: the startup lines on stdout, then
serving until Ctrl-C.
"""

from __future__ import annotations

import argparse

from .config import SandboxConfig
from .server import serve


def main(argv: list[str] | None = None) -> None:
    """Parse the flags, then serve in the foreground."""
    parser = argparse.ArgumentParser(prog="python -m pcxbatch.sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--burst", type=int, default=None)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--ghost-rate", type=float, default=0.0)
    parser.add_argument("--drop-rate", type=float, default=0.0)
    parser.add_argument("--deactivate-inactive", type=int, choices=(409, 200), default=409)
    args = parser.parse_args(argv)
    config = SandboxConfig(
        host=args.host,
        port=args.port,
        users=args.users,
        seed=args.seed,
        api_key=args.api_key,
        rate=args.rate,
        burst=args.burst,
        latency_ms=args.latency_ms,
        fail_rate=args.fail_rate,
        ghost_rate=args.ghost_rate,
        drop_rate=args.drop_rate,
        deactivate_inactive=args.deactivate_inactive,
    )
    serve(config, print)


if __name__ == "__main__":
    main()
