"""How long publishing a progress event holds the worker's event loop, with Redis up and down.

The round engine calls ``on_event`` on the worker's asyncio loop, which every round of the
process shares. Three ways to publish, each timed per event on the calling (loop) thread:

- ``sync``: ``EventLog.append`` right there (one XADD + EXPIRE round trip, blocking);
- ``asyncio``: ``await`` the same round trip on a ``redis.asyncio`` client (the loop is free
  meanwhile, but each event costs the loop a task and a round trip; order across events is not
  kept once two are in flight on different connections);
- ``handoff``: ``EventPublisher`` (what the worker runs): a put on a bounded queue; one thread
  appends in order, in batches.

With Redis down, ``sync`` blocks for the connect timeout and redis-py's retries per event.
One JSON line per variant::

    .venv/bin/python -m bench.event_publish --events 20000
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

from bench.harness import _free_port, _wait_until
from shared.embedded import redis_server_binary
from shared.events import FIELD, EventLog, EventPublisher, stream_key

EVENT = {"member": "sim/alpha", "ok": True}
DOWN_EVENTS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    count = parser.parse_args().events
    with tempfile.TemporaryDirectory() as folder:
        port = _free_port()
        server = subprocess.Popen([redis_server_binary(), "--port", str(port), "--save", "",
                                   "--dir", folder], stdout=subprocess.DEVNULL)
        try:
            client = redis.Redis(port=port)
            _wait_until(client.ping, "redis-server")
            _report("sync", "up", count, _sync_us(EventLog(client, 1000, 3600), count))
            _report("asyncio", "up", count, asyncio.run(_asyncio_us(port, count)))
            _report("handoff", "up", count, *_handoff(EventLog(client, 1000, 3600), count))
        finally:
            server.terminate()
            server.wait(10)
    down = redis.Redis(port=_free_port(), socket_connect_timeout=2, socket_timeout=2)
    _report("sync", "down", DOWN_EVENTS, _sync_us(EventLog(down, 1000, 3600), DOWN_EVENTS))
    _report("handoff", "down", DOWN_EVENTS, _handoff(EventLog(down, 1000, 3600), DOWN_EVENTS)[0])


def _sync_us(events: EventLog, count: int) -> list[float]:
    samples = []
    for number in range(count):
        started = time.perf_counter()
        events.append(f"bench-sync-{number % 500}", {"type": "answer.recorded", **EVENT})
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


async def _asyncio_us(port: int, count: int) -> list[float]:
    client = redis.asyncio.Redis(port=port)
    samples = []
    for number in range(count):
        started = time.perf_counter()
        await client.xadd(stream_key(f"bench-async-{number % 500}"),
                          {FIELD: json.dumps({"type": "answer.recorded", **EVENT})},
                          maxlen=1000, approximate=True)
        samples.append((time.perf_counter() - started) * 1e6)
    await client.aclose()
    return samples


def _handoff(events: EventLog, count: int) -> tuple[list[float], dict]:
    publisher = EventPublisher(events)
    samples = []
    began = time.perf_counter()
    for number in range(count):
        started = time.perf_counter()
        publisher(f"bench-handoff-{number % 500}", 1, "answer", EVENT)
        samples.append((time.perf_counter() - started) * 1e6)
    publisher.close(timeout_s=60)
    return samples, {"drained_events_per_s": round(count / (time.perf_counter() - began))}


def _report(variant: str, redis_state: str, count: int, samples: list[float],
            extra: dict | None = None) -> None:
    ordered = sorted(samples)
    print(json.dumps({
        "variant": variant, "redis": redis_state, "events": count,
        "loop_us_p50": round(ordered[len(ordered) // 2], 1),
        "loop_us_p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        "loop_us_max": round(ordered[-1], 1), **(extra or {}),
    }), flush=True)


if __name__ == "__main__":
    socket.setdefaulttimeout(10)
    main()
