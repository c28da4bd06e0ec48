"""Hundreds of SSE streams against one gunicorn process: which worker class serves them.

Starts a Redis server and one gunicorn worker process of the API (no Celery worker: events are
appended here, straight into the sessions' streams), opens ``--streams`` concurrent
``GET /v1/sessions/{id}/events`` streams, then measures, with the streams open: ``/health`` and
session read latency, the delay from XADD to arrival at every client (fan-out), the worker's CPU
while the streams idle on heartbeats, its resident memory, and that every stream ends after its
``round.finished``. One JSON line per variant::

    .venv/bin/python -m bench.sse_streams --streams 200
    .venv/bin/python -m bench.sse_streams --streams 300 --variant gthread-512 --variant gevent
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

from bench import procstat
from bench.harness import ROOT, _free_port, _wait_until
from shared import records
from shared.embedded import redis_server_binary
from shared.events import stream_key
from shared.settings import load_settings
from shared.store import open_store

VARIANTS = {
    "gthread-8": ["--worker-class", "gthread", "--threads", "8"],  # the former setting
    "gthread-256": ["--worker-class", "gthread", "--threads", "256"],  # the Procfile's
    "gthread-512": ["--worker-class", "gthread", "--threads", "512"],
    "gevent": ["--worker-class", "gevent", "--worker-connections", "1000"],
}
HEARTBEAT_S = 5
IDLE_S = 12
PROBES = 40
PROBE_TIMEOUT_S = 5
CONNECT_TIMEOUT_S = 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--variant", choices=sorted(VARIANTS), action="append")
    options = parser.parse_args()
    for variant in options.variant or sorted(VARIANTS):
        with tempfile.TemporaryDirectory(prefix="llm-council-sse-") as folder:
            print(json.dumps(run(variant, options.streams, Path(folder))), flush=True)


def run(variant: str, streams: int, folder: Path) -> dict:
    """Measure one worker class with ``streams`` streams open."""
    port = _free_port()
    processes = [subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--maxclients", "10000", "--dir", str(folder)], stdout=subprocess.DEVNULL)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATA_DIR": str(folder / "data"),
           "REDIS_URL": f"redis://127.0.0.1:{port}/0", "SSE_HEARTBEAT_SECONDS": str(HEARTBEAT_S),
           "RATE_LIMIT_REQUESTS": str(10**9), "LOG_LEVEL": "WARNING",
           "SSE_MAX_STREAMS": str(streams)}
    try:
        client = redis.Redis.from_url(env["REDIS_URL"])
        _wait_until(client.ping, "redis-server")
        session_ids = _sessions(env, streams)
        api_port = _free_port()
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{api_port}",
             "--workers", "1", *VARIANTS[variant], "api:create_app()"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        url = f"http://127.0.0.1:{api_port}"
        _wait_until(lambda: httpx.get(f"{url}/health").status_code == 200, "the API")
        worker = procstat.descendants(processes[-1].pid)[-1]
        result = asyncio.run(_measure(url, session_ids, client, worker))
        return {"variant": variant, "streams": streams, **result}
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(20)


def _sessions(env: dict, count: int) -> list[str]:
    settings = load_settings(env)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings)
    ids = []
    for number in range(count):
        session = records.new_session(f"question {number}", ["a/x", "b/y"], "a/x")
        store.create_session(session)
        ids.append(session["id"])
    store.close()
    return ids


async def _measure(url: str, session_ids: list[str], client: redis.Redis, worker: int) -> dict:
    limits = httpx.Limits(max_connections=len(session_ids) + 10, max_keepalive_connections=10)
    async with httpx.AsyncClient(base_url=url, timeout=None, limits=limits) as http:
        connected = {sid: asyncio.Event() for sid in session_ids}
        arrived: dict[str, float] = {}
        began = time.monotonic()
        readers = [asyncio.create_task(_follow(http, sid, connected[sid], arrived))
                   for sid in session_ids]
        waiting = [asyncio.create_task(event.wait()) for event in connected.values()]
        done, _ = await asyncio.wait(waiting, timeout=CONNECT_TIMEOUT_S)
        connect_s = time.monotonic() - began
        health_ms = await _latencies(http, "/health")
        read_ms = await _latencies(http, f"/v1/sessions/{session_ids[0]}")
        cpu_before = procstat.process_cpu_s(worker)
        await asyncio.sleep(IDLE_S)
        idle_cpu_ms_per_s = (procstat.process_cpu_s(worker) - cpu_before) * 1000 / IDLE_S
        fanout = await asyncio.to_thread(_fan_out, client, session_ids, arrived)
        ended = await asyncio.wait(readers, timeout=CONNECT_TIMEOUT_S)
        for reader in ended[1]:
            reader.cancel()
        return {
            "connected": len(done), "connect_all_s": round(connect_s, 2),
            "health_ms": health_ms, "session_read_ms": read_ms,
            "fanout_ms": fanout, "idle_cpu_ms_per_s": round(idle_cpu_ms_per_s, 1),
            "rss_mib": round(procstat.peak_rss_mib(worker), 1),
            "threads": _threads(worker),
            "ended_after_finished": sum(1 for r in ended[0] if r.result() == "ended"),
        }


async def _follow(http: httpx.AsyncClient, session_id: str, connected: asyncio.Event,
                  arrived: dict[str, float]) -> str:
    async with http.stream("GET", f"/v1/sessions/{session_id}/events") as response:
        async for line in response.aiter_lines():
            if line.startswith("retry:"):
                connected.set()
            elif line.startswith("event: stage.started"):
                arrived[session_id] = time.monotonic()
    return "ended"


async def _latencies(http: httpx.AsyncClient, path: str) -> dict:
    samples = []
    for _ in range(PROBES):
        started = time.monotonic()
        try:
            await asyncio.wait_for(http.get(path), timeout=PROBE_TIMEOUT_S)
            samples.append((time.monotonic() - started) * 1000)
        except TimeoutError:
            samples.append(float("inf"))  # every thread is pinned: no use asking again
            break
    return _summary(samples)


def _fan_out(client: redis.Redis, session_ids: list[str], arrived: dict[str, float]) -> dict:
    """Append one event to every stream at once; return how long each took to arrive."""
    pipe = client.pipeline(transaction=False)
    for sid in session_ids:
        pipe.xadd(stream_key(sid), {b"event": json.dumps(
            {"type": "stage.started", "round_no": 1, "stage": "answers"})})
    sent = time.monotonic()
    pipe.execute()
    deadline = sent + 30
    while len(arrived) < len(session_ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    result = _summary([(arrived.get(sid, float("inf")) - sent) * 1000 for sid in session_ids])
    for sid in session_ids:  # end every stream
        pipe.xadd(stream_key(sid), {b"event": json.dumps(
            {"type": "round.finished", "round_no": 1, "status": "completed"})})
    pipe.execute()
    return result


def _summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"p50": round(statistics.median(ordered), 1), "p99": round(p99, 1),
            "max": round(ordered[-1], 1)}


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    main()
