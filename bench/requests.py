"""How fast does the API answer at a fixed request rate? Submits, then cached polls, then a mix.

    .venv/bin/python -m bench.requests --rate 200 --seconds 10

starts the system without workers (``--workers 0``, the default: the API alone is measured, and
submitted rounds simply stay queued), then sends requests at ``--rate`` per second whatever
their latency (an open loop), in three phases of ``--seconds`` each, after ``--warmup-s`` of
submits at that rate (reported as ``warmup``: a new gunicorn thread's first requests cost more,
and a phase that starts cold counts them in its p99):

- ``submit``: every request submits a question;
- ``poll``: every request reads one of ``--hot`` sessions submitted before; each was read once
  first, so these reads are answered from the session cache;
- ``mixed``: one request in ten submits, the others poll.

It prints one JSON line with each phase's p50/p99/max latency and outcome counts, and the API's
and Redis' CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from bench.harness import System, SystemOptions
from bench.load import LoadReport, Request, paced, percentiles_ms

MIXED_SUBMIT_EVERY = 10


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = SystemOptions(worker_processes=args.workers, api_workers=args.api_workers,
                            api_threads=args.api_threads, log_level=args.log_level,
                            settings=dict(s.split("=", 1) for s in args.set))
    with System(options) as system:
        result = {"bench": "requests", "rate": args.rate, "seconds": args.seconds,
                  "api_workers": args.api_workers, "api_threads": args.api_threads,
                  "worker_processes": args.workers,
                  "warmup_s": args.warmup_s,
                  **run_phases(system, args.rate, args.seconds, args.hot, args.warmup_s)}
    arguments = sys.argv[1:] if argv is None else argv
    result["command"] = " ".join([".venv/bin/python -m bench.requests", *arguments])
    result["at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    print(json.dumps(result), flush=True)
    return 0


def run_phases(
    system: System, rate: float, seconds: float, hot: int, warmup_s: float = 0.0
) -> dict:
    """Run the warm-up, submit, poll and mixed phases; return each one's figures."""
    url = system.api_url
    warm = asyncio.run(paced(url, 50, hot / 50, lambda n: Request(submit=True)))
    ids = warm.ids[:hot]
    asyncio.run(paced(url, 50, len(ids) / 50, lambda n: Request(False, ids[n % len(ids)])))

    def poll(n: int) -> Request:
        return Request(False, ids[n % len(ids)])

    def mixed(n: int) -> Request:
        return Request(True) if n % MIXED_SUBMIT_EVERY == 0 else poll(n)

    phases = {}
    plan = [("submit", seconds, lambda n: Request(True)), ("poll", seconds, poll),
            ("mixed", seconds, mixed)]
    if warmup_s:
        plan.insert(0, ("warmup", warmup_s, lambda n: Request(True)))
    for name, length_s, choose in plan:
        before = system.cpu_s_by_role()
        report = asyncio.run(paced(url, rate, length_s, choose))
        after = system.cpu_s_by_role()
        phases[name] = _figures(report, before, after)
    return phases


def _figures(report: LoadReport, before: dict, after: dict) -> dict:
    requests = max(1, len(report.submit_s) + len(report.poll_s))
    cpu = {role: round(1000 * (after[role] - before[role]) / requests, 2)
           for role in ("api", "redis")}
    figures = {
        "requests": requests,
        "achieved_rate": round(requests / report.wall_s, 1),
        "outcomes": report.statuses,
        "cpu_ms_per_request": cpu,
    }
    for kind, samples in (("submit", report.submit_s), ("poll", report.poll_s)):
        if samples:
            figures[f"{kind}_ms"] = {**percentiles_ms(samples),
                                     "max": round(1000 * max(samples), 1)}
    return figures


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.requests", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--warmup-s", type=float, default=2.0,
                        help="submits at --rate before the phases (0: none)")
    parser.add_argument("--hot", type=int, default=50, help="sessions the poll phase reads")
    parser.add_argument("--workers", type=int, default=0, help="worker processes to start too")
    parser.add_argument("--api-workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--api-threads", type=int, default=256,
                        help="gunicorn threads per worker (the Procfile's 256)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    return parser


if __name__ == "__main__":
    sys.exit(main())
