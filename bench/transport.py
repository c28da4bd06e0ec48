"""What does one provider call cost the caller's CPU, per HTTP client? One JSON line per client.

    .venv/bin/python -m bench.transport --calls 3000 --concurrency 50 400

sends chat completions to the simulator (started here, ``--latency-ms``) from this process,
``--concurrency`` at a time, and reads the process's own CPU time (user+system) per call for:

- ``httpx-httpcore``: ``httpx.AsyncClient`` on its own transport, one pool of that many
  connections (keep-alive sized to the pool);
- ``httpx-aiohttp``: ``httpx.AsyncClient`` on ``shared.provider.transport.AiohttpTransport``,
  calling ``post(url, json=...)``;
- ``provider-client``: ``shared.provider.client.ProviderClient`` on what ``build_http_client``
  builds, as the worker calls it (a request built once per call, no cookie jar);
- ``aiohttp``: ``aiohttp.ClientSession`` alone, the floor for a Python client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time

import aiohttp
import httpx

from bench.store import _start_simulator
from shared.provider.client import ProviderClient, build_http_client
from shared.provider.transport import AiohttpTransport
from shared.roster import Model
from shared.settings import Settings

WARMUP_CALLS = 100
BODY = {"model": "sim/alpha", "messages": [{"role": "user", "content": "Why is the sky blue?"}]}


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(call, calls: int, concurrency: int) -> dict:
    slots = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with slots:
            await call()

    await asyncio.gather(*(one() for _ in range(WARMUP_CALLS)))
    cpu, wall = _cpu_s(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    cpu, wall = _cpu_s() - cpu, time.perf_counter() - wall
    return {"cpu_us_per_call": round(1e6 * cpu / calls), "calls_per_s": round(calls / wall)}


async def _httpx(url: str, transport: httpx.AsyncBaseTransport, calls: int, concurrency: int):
    async with httpx.AsyncClient(transport=transport, timeout=30) as http:
        async def call() -> None:
            (await http.post(url, json=BODY)).json()

        return await _measure(call, calls, concurrency)


async def _aiohttp(url: str, calls: int, concurrency: int) -> dict:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def call() -> None:
            async with http.post(url, json=BODY) as response:
                await response.json()

        return await _measure(call, calls, concurrency)


async def _provider_client(base_url: str, calls: int, concurrency: int) -> dict:
    settings = Settings(provider_max_connections=concurrency, provider_timeout_s=30.0)
    async with build_http_client(settings) as http:
        client = ProviderClient(http, base_url, None, settings.provider_timeout_s)
        model = Model(id=BODY["model"], name="alpha")

        async def call() -> None:
            await client.complete(model, BODY["messages"])

        return await _measure(call, calls, concurrency)


async def _client(name: str, url: str, calls: int, concurrency: int) -> dict:
    if name == "aiohttp":
        return await _aiohttp(url, calls, concurrency)
    if name == "provider-client":
        return await _provider_client(url.removesuffix("/chat/completions"), calls, concurrency)
    if name == "httpx-aiohttp":
        return await _httpx(url, AiohttpTransport(concurrency), calls, concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return await _httpx(url, httpx.AsyncHTTPTransport(limits=limits), calls, concurrency)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transport", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[50, 400])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args(argv)
    simulator, base_url = _start_simulator(args.latency_ms)
    url = f"{base_url}/chat/completions"
    try:
        for concurrency in args.concurrency:
            for name in ("httpx-httpcore", "httpx-aiohttp", "provider-client", "aiohttp"):
                figures = asyncio.run(_client(name, url, args.calls, concurrency))
                print(json.dumps({"bench": "transport", "client": name,
                                  "concurrency": concurrency, "calls": args.calls,
                                  "latency_ms": args.latency_ms, **figures}), flush=True)
    finally:
        simulator.terminate()
        simulator.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
