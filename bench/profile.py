"""Where does a service spend its CPU under load? Sample it with py-spy, summarise by function.

    .venv/bin/python -m bench.profile --role worker --concurrency 100 --rounds 600

starts the system as ``bench.rounds`` does, drives it with the same closed loop, records every
process of one role with ``py-spy record --format raw`` (py-spy is a measuring tool: install it
into the venv, it is not a dependency), and prints one JSON line: the share of samples that fall
in each of the top functions (inclusive) and in each module group (self time). Only the thread
holding the GIL is sampled (``--gil``), so shares are shares of the process's Python CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from bench import procstat
from bench.harness import POOLS, System, SystemOptions
from bench.load import LoadPlan, closed_loop

GROUPS = (
    ("sqlite", ("shared/store/sqlite", "sqlite3")),
    ("httpx", ("httpx/", "httpcore/", "h11/", "anyio/")),
    ("aiohttp", ("aiohttp/", "yarl/", "multidict/")),
    ("resilience", ("pybreaker/", "tenacity/", "shared/provider/breaker", "shared/provider/pace",
                    "shared/provider/retry", "shared/provider/resilient")),
    ("asyncio", ("asyncio/",)),
    ("celery/kombu", ("celery/", "kombu/", "billiard/", "vine/", "amqp/")),
    ("redis-py", ("redis/",)),
    ("logging", ("logging/", "pythonjsonlogger/")),
    ("flask/werkzeug/gunicorn", ("flask/", "werkzeug/", "gunicorn/", "marshmallow/")),
    ("json", ("json/",)),
    ("threading", ("threading.py", "concurrent/", "queue.py")),
    ("prometheus", ("prometheus_client/",)),
    ("council code", ("shared/", "api/", "workers/")),
)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    options = SystemOptions(pool=args.pool, worker_concurrency=args.concurrency,
                            log_level=args.log_level,
                            settings=dict(s.split("=", 1) for s in args.set))
    plan = LoadPlan(concurrency=args.concurrency, rounds=args.rounds,
                    first_poll_s=options.floor_ms / 1000, poll_interval_s=args.poll_ms / 1000)
    with System(options) as system:
        asyncio.run(closed_loop(system.api_url, LoadPlan(10, 20, options.floor_ms / 1000)))
        pids = [pid for root in system.pids(args.role) for pid in procstat.descendants(root)]
        outputs = [system.workdir / f"profile-{pid}.txt" for pid in pids]
        recorders = [
            subprocess.Popen([spy, "record", "--pid", str(pid), "--format", "raw", "--rate",
                              str(args.rate), "--duration", str(args.seconds), "--output",
                              str(out), "--gil"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for pid, out in zip(pids, outputs, strict=True)
        ]
        load = threading.Thread(target=asyncio.run, args=(closed_loop(system.api_url, plan),))
        load.start()
        for recorder in recorders:
            recorder.wait()
        load.join()
        stacks = Counter()
        for out in outputs:
            stacks.update(_read_raw(out))
    print(json.dumps(summarise(stacks, args.top) | {"role": args.role, "pool": args.pool,
                                                    "concurrency": args.concurrency}))
    return 0


def _read_raw(path: Path) -> Counter:
    stacks: Counter = Counter()
    if path.exists():
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                stacks[stack] += int(count)
    return stacks


def summarise(stacks: Counter, top: int) -> dict:
    """Return the top functions by inclusive share and every group's self share, in %."""
    total = sum(stacks.values()) or 1
    inclusive: Counter = Counter()
    groups: Counter = Counter()
    for stack, count in stacks.items():
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] += count
        groups[_group(frames[-1])] += count
    return {
        "samples": total,
        "self_by_group_pct": {g: round(100 * n / total, 1) for g, n in groups.most_common()},
        "inclusive_pct": {f: round(100 * n / total, 1) for f, n in inclusive.most_common(top)},
    }


def _group(frame: str) -> str:
    for name, markers in GROUPS:
        if any(marker in frame for marker in markers):
            return name
    return "other"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=("worker", "api", "simulator"), default="worker")
    parser.add_argument("--pool", choices=POOLS, default="threads")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=600)
    parser.add_argument("--seconds", type=int, default=15, help="how long to sample")
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--poll-ms", type=float, default=25.0)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    return parser


if __name__ == "__main__":
    sys.exit(main())
