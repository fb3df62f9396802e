"""The PCX sandbox as its own process, writing what it saw to a file when it stops (bench only).

In: the flags of ``pcxbatch sandbox`` (the ones the benchmark needs) plus ``--log-out
FILE``. Out: the same startup lines on stdout, then serving until SIGINT; on the way out, FILE
gets one JSON object: ``{"time": [...], "status": [...], "user_id": [...]}``, the arrival
time (epoch seconds), answer status and user of every request, in arrival order.

Why a wrapper and not ``pcxbatch sandbox``: the request log lives inside the sandbox
process, and the benchmark wants the server's own view (when requests arrived, how many were
answered 429), not only the client's. It serves the same ``Sandbox`` through the same ``serve``
(uvicorn, uvloop, access log off, ``gc.freeze``); it only reads the log once serving is over.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pcxbatch.sandbox import SandboxConfig, serve
from pcxbatch.sandbox.state import Sandbox


def main(argv: list[str] | None = None) -> None:
    """Parse the flags, serve until SIGINT, then write the request log's times and statuses."""
    parser = argparse.ArgumentParser(prog="python bench/sandbox_logged.py")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--burst", type=int, default=None)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--log-out", type=Path, required=True)
    args = parser.parse_args(argv)
    config = SandboxConfig(
        host="127.0.0.1",
        port=args.port,
        users=args.users,
        seed=args.seed,
        api_key=args.api_key,
        rate=args.rate,
        burst=args.burst,
        latency_ms=args.latency_ms,
    )
    sandbox = Sandbox(config)
    serve(config, lambda line: print(line, flush=True), sandbox=sandbox)
    records = sandbox.requests
    log = {
        "time": [r.time for r in records],
        "status": [r.status for r in records],
        "user_id": [r.user_id for r in records],
    }
    args.log_out.write_text(json.dumps(log))


if __name__ == "__main__":
    main()
