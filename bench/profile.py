"""Where does a service spend its CPU under load? Sample it with py-spy, summarise by function.

    .venv/bin/python -m bench.profile --role worker --concurrency 100 --rounds 600

starts the system as ``bench.rounds`` does, drives it with the same closed loop, records every
process of one role with ``py-spy record --format raw`` (py-spy is a measuring tool: install it
into the venv, it is not a dependency), and prints one JSON line: the share of samples that fall
in each of the top functions (inclusive) and in each module group (self time). Only the thread
holding the GIL is sampled (``--gil``), so shares are shares of the process's Python CPU.

    .venv/bin/python -m bench.profile --in-process --concurrency 100 --rounds 600

runs the rounds in this one process instead, through the worker's task body (``run_round``,
without Celery's consumer) on the worker's runtime, against the same Redis and simulator, and
adds the CPU per round of each kind of thread (the event loop, the store threads, the event
publisher, the tasks' threads) and the Redis commands per round, measured first; py-spy then
samples ``--seconds`` of more rounds (``--seconds 0``: none).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import procstat
from bench.harness import CHAIRMAN, MEMBERS, POOLS, System, SystemOptions
from bench.load import LoadPlan, closed_loop
from shared import records
from shared.logs import configure_logging
from workers.runtime import current_runtime
from workers.tasks import run_round

WARMUP_ROUNDS = 40

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
    if args.in_process:
        print(json.dumps(in_process(args)))
        return 0
    options = SystemOptions(pool=args.pool, worker_concurrency=args.concurrency,
                            log_level=args.log_level,
                            settings=dict(s.split("=", 1) for s in args.set))
    plan = LoadPlan(concurrency=args.concurrency, rounds=args.rounds,
                    first_poll_s=options.floor_ms / 1000, poll_interval_s=args.poll_ms / 1000)
    with System(options) as system:
        asyncio.run(closed_loop(system.api_url, LoadPlan(10, 20, options.floor_ms / 1000)))
        pids = [pid for root in system.pids(args.role) for pid in procstat.descendants(root)]
        outputs = [system.workdir / f"profile-{pid}.txt" for pid in pids]
        recorders = [_record(pid, args, out) for pid, out in zip(pids, outputs, strict=True)]
        load = threading.Thread(target=asyncio.run, args=(closed_loop(system.api_url, plan),))
        load.start()
        for recorder in recorders:
            recorder.wait()
        load.join()
        stacks = Counter()
        for out in outputs:
            stacks.update(_read_raw(out))
    _keep(stacks, args.raw)
    print(json.dumps(summarise(stacks, args.top) | {"role": args.role, "pool": args.pool,
                                                    "concurrency": args.concurrency}))
    return 0


def in_process(args: argparse.Namespace) -> dict:
    """Run rounds in this process as a worker's tasks would; return CPU by thread and samples."""
    options = SystemOptions(worker_processes=0, worker_concurrency=args.concurrency,
                            log_level=args.log_level,
                            settings=dict(s.split("=", 1) for s in args.set))
    with System(options) as system:
        os.environ.update(system.environment())  # the runtime reads its settings from here
        log = os.open(system.workdir / "rounds.log", os.O_WRONLY | os.O_CREAT)
        os.dup2(log, 2)  # the rounds' JSON logs, as a worker writes them
        configure_logging(args.log_level)
        runtime = current_runtime()
        tasks = ThreadPoolExecutor(args.concurrency, "task")

        def run(count: int) -> list[str]:
            ids = []
            for number in range(count):
                session = records.new_session(f"Question {number}?", MEMBERS, CHAIRMAN)
                runtime.store.create_session(session)
                ids.append(session["id"])
            return list(tasks.map(lambda session_id: run_round.run(session_id, 1), ids))

        run(max(WARMUP_ROUNDS, args.concurrency))  # every connection the load needs, opened
        commands, threads = system.redis_commands(), _thread_cpu_s()
        started = time.process_time()
        outcomes = run(args.rounds)
        cpu_s = time.process_time() - started
        threads = {name: s - threads.get(name, 0.0) for name, s in _thread_cpu_s().items()}
        commands = {n: c - commands.get(n, 0) for n, c in system.redis_commands().items()}
        if args.seconds:  # sampled apart: py-spy stops the process for each sample
            spy = _record(os.getpid(), args, system.workdir / "profile.txt")
            while spy.poll() is None:
                run(args.concurrency)
        runtime.close()
        stacks = _read_raw(system.workdir / "profile.txt")
    _keep(stacks, args.raw)
    per_round = 1000 / max(1, args.rounds)
    return summarise(stacks, args.top) | {
        "in_process": True, "concurrency": args.concurrency, "rounds": args.rounds,
        "outcomes": dict(Counter(outcomes)), "cpu_ms_per_round": round(cpu_s * per_round, 2),
        "cpu_ms_per_round_by_thread": {n: round(s * per_round, 2) for n, s in threads.items()},
        "redis_commands_per_round": {n: round(c * per_round / 1000, 2)
                                     for n, c in sorted(commands.items(), key=lambda i: -i[1])
                                     if c},
    }


def _thread_cpu_s() -> dict[str, float]:
    """Return the CPU seconds of this process's threads so far, summed by kind of thread."""
    spent: Counter = Counter()
    for thread in threading.enumerate():
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:
            continue  # ended meanwhile
        fields = stat[stat.rindex(")") + 2:].split()
        kind = thread.name.split("_")[0].rstrip("0123456789-")  # "store_3" -> "store"
        spent[kind] += (int(fields[11]) + int(fields[12])) / procstat.CLOCK_TICKS
    return dict(spent)


def _record(pid: int, args: argparse.Namespace, out: Path) -> subprocess.Popen:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--format", "raw", "--rate",
                             str(args.rate), "--duration", str(args.seconds), "--output",
                             str(out), "--gil"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _keep(stacks: Counter, path: str | None) -> None:
    """Write the folded stacks where asked, for a flame graph or a closer look."""
    if path:
        Path(path).write_text("".join(f"{stack} {count}\n" for stack, count in stacks.items()))


def _read_raw(path: Path) -> Counter:
    stacks: Counter = Counter()
    if path.exists():
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                stacks[stack] += int(count)
    return stacks


def summarise(stacks: Counter, top: int) -> dict:
    """Return the top functions by inclusive and by self share, and every group's self share."""
    total = sum(stacks.values()) or 1
    inclusive: Counter = Counter()
    groups: Counter = Counter()
    own: Counter = Counter()
    for stack, count in stacks.items():
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] += count
        groups[_group(frames[-1])] += count
        own[frames[-1]] += count
    return {
        "samples": total,
        "self_by_group_pct": {g: round(100 * n / total, 1) for g, n in groups.most_common()},
        "inclusive_pct": {f: round(100 * n / total, 1) for f, n in inclusive.most_common(top)},
        "self_pct": {f: round(100 * n / total, 1) for f, n in own.most_common(top)},
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
    parser.add_argument("--raw", metavar="PATH", help="also write the folded stacks here")
    parser.add_argument("--in-process", action="store_true",
                        help="run the rounds in this process, without Celery (see above)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
