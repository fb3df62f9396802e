"""One sender of the client-cost benchmark, run as its own process (bench only).

In: ``--sender NAME``, ``--base-url``, ``--ids FILE`` (one user ID a line), ``--concurrency``;
the key in ``PCX_API_KEY``. Out: every ID deactivated once, then one JSON line on stdout:
``{"sent": n, "statuses": {...}}``. The parent (``bench/client_cost.py``) measures this
process's CPU with ``os.wait4``, so everything a sender does (start-up included) counts.

Senders:

- ``aiohttp``: a bare aiohttp loop, ``concurrency`` workers on one ``ClientSession`` (the
  floor the issue compares against: no pacing, no retries, no checks).
- ``pcxclient``: the same requests through ``pcxbatch.client.PcxClient`` (its limiter at no
  pacing, its retries, deadline, capped body reading and outcome parsing), as the run's
  execute stage calls it.
- ``pcxclient-httpx``: the same client over httpx's own transports, as it sent before
  issue 16 (small pools, the least busy first): the earlier figure, re-measured beside.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

BODY = {"updated_by": "bench", "reason": "client cost benchmark"}


async def send_aiohttp(base_url: str, key: str, ids: list[str], concurrency: int) -> Counter[int]:
    """The floor: ``concurrency`` workers, one shared session, read each answer whole."""
    import aiohttp

    headers = {"Authorization": "NONE", "X-Api-Key": key}
    statuses: Counter[int] = Counter()
    todo = iter(ids)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for user_id in todo:
                url = f"{base_url}/users/{user_id}/deactivate"
                async with session.put(url, json=BODY, headers=headers) as response:
                    await response.read()
                    statuses[response.status] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def send_pcxclient(
    base_url: str, key: str, ids: list[str], concurrency: int, transport: Any = None
) -> Counter[int]:
    """The same requests through PcxClient, as ``execute`` sends them (``transport``: an
    httpx transport instead of its own wire)."""
    import math

    from pcxbatch.client import PcxClient
    from pcxbatch.credentials import Credentials
    from pcxbatch.limiter import Limiter

    credentials = Credentials.from_env({"PCX_API_KEY": key})
    assert credentials is not None
    statuses: Counter[int] = Counter()
    todo = iter(ids)
    limiter = Limiter(math.inf)
    async with PcxClient(
        base_url, credentials, limiter=limiter, max_connections=concurrency, transport=transport
    ) as api:

        async def worker() -> None:
            for user_id in todo:
                result = await api.deactivate(user_id, updated_by="bench", reason=BODY["reason"])
                statuses[result.http_status or 0] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


class _Pools:
    """httpx transports in small pools, each request through the least busy one: how
    ``PcxClient`` sent before it moved to aiohttp (httpcore scans every connection of a pool
    on every request, so one pool of 32 cost more)."""

    def __init__(self, connections: int, per_pool: int = 4) -> None:
        import httpx

        limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
        count = -(-connections // per_pool)
        self._pools = [httpx.AsyncHTTPTransport(limits=limits) for _ in range(count)]
        self._busy = [0] * count

    async def handle_async_request(self, request: Any) -> Any:
        pool = self._busy.index(min(self._busy))
        self._busy[pool] += 1
        try:
            return await self._pools[pool].handle_async_request(request)
        finally:
            self._busy[pool] -= 1

    async def aclose(self) -> None:
        await asyncio.gather(*(p.aclose() for p in self._pools))


async def send_pcxclient_httpx(
    base_url: str, key: str, ids: list[str], concurrency: int
) -> Counter[int]:
    """The same client over httpx's transports: the client before issue 16, side by side."""
    import httpx

    class Pools(_Pools, httpx.AsyncBaseTransport):
        pass

    return await send_pcxclient(base_url, key, ids, concurrency, transport=Pools(concurrency))


SENDERS = {
    "aiohttp": send_aiohttp,
    "pcxclient": send_pcxclient,
    "pcxclient-httpx": send_pcxclient_httpx,
}


def main() -> None:
    """Send, then print what was sent as one JSON line."""
    parser = argparse.ArgumentParser(prog="bench/senders.py")
    parser.add_argument("--sender", choices=sorted(SENDERS), required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--ids", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    ids = args.ids.read_text(encoding="utf-8").split()
    send = SENDERS[args.sender]
    statuses = asyncio.run(send(args.base_url, os.environ["PCX_API_KEY"], ids, args.concurrency))
    print(json.dumps({"sent": sum(statuses.values()), "statuses": dict(statuses)}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
