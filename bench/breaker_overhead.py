"""What the shared breaker and pace cost per provider call, and how long the loop is blocked.

pybreaker's Redis storage is synchronous: its round trips run on the worker's event loop and
block every other round of the process meanwhile. This measures them against a real Redis
server on loopback (started here, on a free port), next to the in-memory breaker, and the pace's
one asynchronous script call. One JSON line per variant::

    .venv/bin/python -m bench.breaker_overhead --calls 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import tempfile
import time

import redis
import redis.asyncio

from shared.embedded import redis_server_binary
from shared.provider.breaker import FleetBreakers
from shared.provider.pace import FleetPace
from shared.roster import Model

MODEL = Model(id="bench/model", name="model")
LIMITED = Model(id="bench/limited", name="limited", rpm=10**9, max_concurrency=10**6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    calls = parser.parse_args().calls
    with tempfile.TemporaryDirectory() as folder, _redis_server(folder) as url:
        client = redis.Redis.from_url(url, decode_responses=False)
        _report("breaker, memory", calls, _breaker_us(FleetBreakers(5, 60, "bench", None), calls))
        _report("breaker, redis, busy model", calls,
                _breaker_us(FleetBreakers(5, 60, "bench", client), calls))
        cold = max(10, calls // 100)
        _report("breaker, redis, one call per 0.15 s", cold,
                _breaker_us(FleetBreakers(5, 60, "bench", client), cold, pause_s=0.15))
        for model in (MODEL, LIMITED):
            us = asyncio.run(_pace_us(url, model, calls))
            _report(f"pace, redis, {'limits' if model.rpm else 'pause check only'}", calls, us)
        client.close()


def _breaker_us(breakers: FleetBreakers, calls: int, pause_s: float = 0.0) -> float:
    """Return the synchronous (loop-blocking) time per successful call, in microseconds."""
    breaker = breakers.for_model(MODEL.id)
    spent = 0.0
    for _ in range(calls):
        time.sleep(pause_s)  # past the state cache: every call reads and writes Redis
        started = time.perf_counter()
        token = breaker.admit(60)
        with breaker.calling():
            pass
        breaker.release(token)
        spent += time.perf_counter() - started
    return spent / calls * 1e6


async def _pace_us(url: str, model: Model, calls: int) -> float:
    """Return the time per slot taken and given back (asynchronous: the loop is not blocked)."""
    pace = FleetPace("bench", redis.asyncio.Redis.from_url(url))
    started = time.perf_counter()
    for _ in range(calls):
        async with pace.slot(model, None, 60):
            pass
    elapsed = time.perf_counter() - started
    await pace.aclose()
    return elapsed / calls * 1e6


def _report(variant: str, calls: int, us_per_call: float) -> None:
    print(json.dumps({"variant": variant, "calls": calls, "us_per_call": round(us_per_call, 1)}))


class _redis_server:  # noqa: N801 - used as a context manager, like open()
    def __init__(self, folder: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.folder = folder

    def __enter__(self) -> str:
        argv = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--dir", self.folder]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{self.port}/0"
        probe = redis.Redis.from_url(url)
        for _ in range(100):
            try:
                probe.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        probe.close()
        return url

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(10)


if __name__ == "__main__":
    main()
