"""What does the store cost per round? Count and time every store call of real rounds.

    .venv/bin/python -m bench.store --store sqlite --rounds 300 --concurrency 50

runs rounds in this one process: the real round engine (``execute_round``) with the real
provider client against the simulator (started here), on one event loop whose store calls run
in threads, as in a worker. The store (``sqlite``: a file in a scratch folder; ``mongomock``:
in memory, so its counts are real but its times are not MongoDB's; ``mongo``: ``MONGODB_URL``)
is wrapped so that every call is counted and its thread CPU time measured. No cache and no
Redis: this is the store alone. It prints one JSON line: calls, writes and CPU per round, by
method.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import mongomock

from bench.harness import CHAIRMAN, MEMBERS, ROOT
from shared import records
from shared.council.policy import RoundPolicy
from shared.council.run import Council, execute_round
from shared.provider.client import build_http_client
from shared.provider.resilient import build_provider
from shared.settings import load_settings
from shared.store import open_store
from shared.store.mongo import MongoStore

READS = frozenset({"get_session", "list_sessions", "stale_rounds", "ping"})


class CountingStore:
    """Count the calls to a store and the thread CPU seconds each method spends."""

    def __init__(self, store: object) -> None:
        self._store = store
        self.calls: Counter[str] = Counter()
        self.cpu_s: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        method = getattr(self._store, name)
        if not callable(method):
            return method

        def counted(*args, **kwargs):
            started = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                with self._lock:
                    self.calls[name] += 1
                    self.cpu_s[name] += time.thread_time() - started

        return counted


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="llm-council-store-") as folder:
        simulator, base_url = _start_simulator(args.latency_ms)
        try:
            environ = {
                "DATA_DIR": folder, "OPENROUTER_BASE_URL": base_url, "REDIS_ENABLED": "false",
                "COUNCIL_MEMBERS": ",".join(MEMBERS), "COUNCIL_CHAIRMAN": CHAIRMAN,
                "PROVIDER_MAX_CONNECTIONS": str(4 * args.concurrency),
                **({"MONGODB_URL": args.mongodb_url} if args.store == "mongo" else {}),
            }
            settings = load_settings(environ)
            store = CountingStore(_open(args.store, settings))
            started = time.monotonic()
            outcomes = asyncio.run(_run_rounds(settings, store, args.rounds, args.concurrency))
            wall_s = time.monotonic() - started
        finally:
            simulator.terminate()
            simulator.wait(10)
    rounds = max(1, args.rounds)
    writes = sum(n for name, n in store.calls.items() if name not in READS)
    result = {
        "bench": "store", "store": args.store, "rounds": args.rounds,
        "concurrency": args.concurrency, "outcomes": dict(Counter(outcomes)),
        "wall_s": round(wall_s, 2),
        "calls_per_round": {n: round(c / rounds, 2) for n, c in store.calls.most_common()},
        "writes_per_round": round(writes / rounds, 2),
        "cpu_ms_per_round": round(1000 * sum(store.cpu_s.values()) / rounds, 2),
        "cpu_ms_per_round_by_method": {
            n: round(1000 * s / rounds, 3) for n, s in store.cpu_s.most_common()
        },
        "command": " ".join([".venv/bin/python -m bench.store",
                             *(sys.argv[1:] if argv is None else argv)]),
    }
    print(json.dumps(result), flush=True)
    return 0


def _open(kind: str, settings) -> object:
    if kind == "mongomock":
        return MongoStore(mongomock.MongoClient(), "bench")
    return open_store(settings)


async def _run_rounds(settings, store: CountingStore, count: int, concurrency: int) -> list[str]:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(settings.effective_store_pool_size, "store"))
    ids = []
    for number in range(count):
        session = records.new_session(f"Store question {number}?", MEMBERS, CHAIRMAN)
        store.create_session(session)
        ids.append(session["id"])
    async with build_http_client(settings) as http:
        provider = build_provider(settings, http)
        council = Council(store=store, provider=provider, roster=settings.roster,
                          lease_s=settings.round_lease_s, max_attempts=3,
                          policy=RoundPolicy.from_settings(settings))
        slots = asyncio.Semaphore(concurrency)

        async def one(session_id: str) -> str:
            async with slots:
                return await execute_round(council, session_id, 1)

        try:
            return await asyncio.gather(*(one(session_id) for session_id in ids))
        finally:
            await provider.aclose()


def _start_simulator(latency_ms: float) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.simulator", "--port", "0", "--latency-ms", str(latency_ms)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline()
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return process, line[line.index("http://"):].strip()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=("sqlite", "mongomock", "mongo"), default="sqlite")
    parser.add_argument("--mongodb-url", help="MongoDB to use with --store mongo")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=50, help="rounds in flight")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="simulated call latency")
    return parser


if __name__ == "__main__":
    sys.exit(main())
