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
- ``resilient-provider``: ``ResilientProvider`` over that client, with its breaker and pace in
  process memory and a deadline, as a round calls it (less the round's own bookkeeping);
- ``aiohttp``: ``aiohttp.ClientSession`` alone, the floor for a Python client.

``--loop`` picks the event loop (uvloop's, as the worker runs, or asyncio's).
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
from shared.event_loops import EVENT_LOOPS, UVLOOP, new_event_loop
from shared.provider.breaker import FleetBreakers
from shared.provider.client import ProviderClient, build_http_client
from shared.provider.pace import FleetPace
from shared.provider.resilient import ResilientProvider
from shared.provider.transport import AiohttpTransport
from shared.roster import Model
from shared.settings import Settings

WARMUP_CALLS = 100
CLIENTS = ("httpx-httpcore", "httpx-aiohttp", "provider-client", "resilient-provider", "aiohttp")
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


async def _provider_client(
    base_url: str, calls: int, concurrency: int, resilient: bool = False,
) -> dict:
    settings = Settings(provider_max_connections=concurrency, provider_timeout_s=30.0)
    async with build_http_client(settings) as http:
        client = ProviderClient(http, base_url, None, settings.provider_timeout_s)
        model = Model(id=BODY["model"], name="alpha")
        if resilient:
            provider = ResilientProvider(
                client, FleetBreakers(settings.circuit_breaker_fail_max,
                                      settings.circuit_breaker_timeout_s, base_url, None),
                FleetPace(base_url, None), settings.provider_max_attempts,
                settings.provider_timeout_s)

            async def call() -> None:
                await provider.complete(model, BODY["messages"], deadline=time.monotonic() + 30)
        else:
            async def call() -> None:
                await client.complete(model, BODY["messages"])

        return await _measure(call, calls, concurrency)


async def _client(name: str, url: str, calls: int, concurrency: int) -> dict:
    if name == "aiohttp":
        return await _aiohttp(url, calls, concurrency)
    if name in ("provider-client", "resilient-provider"):
        return await _provider_client(url.removesuffix("/chat/completions"), calls, concurrency,
                                      resilient=name == "resilient-provider")
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
    parser.add_argument("--loop", choices=EVENT_LOOPS, default=UVLOOP)
    args = parser.parse_args(argv)
    simulator, base_url = _start_simulator(args.latency_ms)
    url = f"{base_url}/chat/completions"
    try:
        for concurrency in args.concurrency:
            for name in CLIENTS:
                with asyncio.Runner(loop_factory=lambda: new_event_loop(args.loop)) as runner:
                    figures = runner.run(_client(name, url, args.calls, concurrency))
                print(json.dumps({"bench": "transport", "client": name, "loop": args.loop,
                                  "concurrency": concurrency, "calls": args.calls,
                                  "latency_ms": args.latency_ms, **figures}), flush=True)
    finally:
        simulator.terminate()
        simulator.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
