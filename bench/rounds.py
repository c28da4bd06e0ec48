"""How many rounds in flight, how fast, at what CPU: one closed-loop run, one JSON line.

    .venv/bin/python -m bench.rounds --concurrency 100 --rounds 1000 --pool threads

starts the system (see ``bench.harness``), warms it up, keeps ``--concurrency`` rounds in
flight until ``--rounds`` were submitted, and prints rounds ok/failed, wall seconds, rounds per
second, end-to-end latency p50/p99 (submit to ``completed`` as the polling client saw it, and
``created_at`` to ``finished_at`` as the store recorded it), the floor (the three stages'
simulated latency), service CPU per round (API, workers, Redis and their children, read from
/proc; the load generator and the simulator are not counted), peak RSS per worker process,
submit and poll latency p50/p99, and how many provider calls and new connections the simulator
saw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from bench import procstat
from bench.harness import POOLS, System, SystemOptions
from bench.load import LoadPlan, LoadReport, await_rounds, closed_loop, percentiles_ms, preload

WARMUP_ROUNDS = 20


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = SystemOptions(
        pool=args.pool,
        worker_processes=args.workers,
        worker_concurrency=args.worker_concurrency or args.concurrency,
        provider_connections=args.provider_connections,
        api_workers=args.api_workers,
        api_threads=args.api_threads,
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        log_level=args.log_level,
        celery_app=args.app,
        settings=dict(setting.split("=", 1) for setting in args.set),
    )
    plan = LoadPlan(
        concurrency=args.concurrency,
        rounds=args.rounds or max(200, 3 * args.concurrency),
        first_poll_s=(args.first_poll_ms if args.first_poll_ms is not None
                      else options.floor_ms) / 1000,
        poll_interval_s=args.poll_ms / 1000,
        max_polls_per_s=args.max_polls_per_s,
        ramp_s=args.ramp_s,
        wait_s=args.wait_s,
    )
    with System(options) as system:
        result = measure(system, plan, args.label, args.preload)
    arguments = sys.argv[1:] if argv is None else argv
    result["command"] = " ".join([".venv/bin/python -m bench.rounds", *arguments])
    print(json.dumps(result), flush=True)
    return 0 if result["rounds_failed"] == 0 else 1


def measure(
    system: System, plan: LoadPlan, label: str | None = None, preloaded: bool = False
) -> dict:
    """Warm the system up, run the plan, and return the run's figures.

    ``preloaded``: the workers stop taking rounds, all ``plan.rounds`` are submitted, then the
    workers start again and the rounds are watched to the end: every round is in the queue at
    once, so the workers hold as many as their concurrency allows.
    """
    warmup = LoadPlan(concurrency=min(WARMUP_ROUNDS, plan.concurrency), rounds=WARMUP_ROUNDS,
                      first_poll_s=plan.first_poll_s)
    asyncio.run(closed_loop(system.api_url, warmup))
    system.reset_simulator()
    commands_before, gc_before = system.redis_commands(), system.gc_s_by_role()
    cpu_before, machine_before, own_before = (
        system.cpu_s_by_role(), procstat.machine_busy_s(), procstat.process_cpu_s(os.getpid())
    )
    report = _preloaded(system, plan) if preloaded else asyncio.run(
        closed_loop(system.api_url, plan))
    cpu_after, machine_after, own_after = (
        system.cpu_s_by_role(), procstat.machine_busy_s(), procstat.process_cpu_s(os.getpid())
    )
    sim = system.sim_stats()
    commands, gc_after = system.redis_commands(), system.gc_s_by_role()
    cpu_ms = {role: 1000 * (cpu_after[role] - cpu_before[role]) for role in cpu_before}
    simulator_ms = cpu_ms.pop("simulator")
    rounds = max(1, report.ok)
    busy, total = (after - before for after, before in zip(machine_after, machine_before,
                                                             strict=True))
    options = system.options
    return {
        "bench": "rounds",
        "label": label,
        "pool": options.pool,
        "app": options.celery_app,
        "worker_processes": options.worker_processes,
        "worker_concurrency": options.worker_concurrency,
        "concurrency": plan.concurrency,
        "rounds_ok": report.ok,
        "rounds_failed": report.failed,
        "statuses": report.statuses,
        "wall_s": round(report.wall_s, 2),
        "rounds_per_s": round(report.ok / report.wall_s, 1),
        "latency_ms": percentiles_ms(report.latencies_s),
        "server_latency_ms": percentiles_ms(report.server_latencies_s),
        "peak_running": report.peak_running(),
        "preloaded": preloaded,
        "floor_ms": options.floor_ms,
        "cpu_ms_per_round": round(sum(cpu_ms.values()) / rounds, 2),
        "cpu_ms_per_round_by_role": {role: round(ms / rounds, 2) for role, ms in cpu_ms.items()},
        "gc_ms_per_round_by_role": {role: round(1000 * (gc_after[role] - gc_before[role]) / rounds,
                                                2) for role in gc_before},
        "outside_cpu_ms_per_round": {
            "simulator": round(simulator_ms / rounds, 2),
            "load_generator": round(1000 * (own_after - own_before) / rounds, 2),
        },
        "machine_busy_pct": round(100 * busy / max(total, 1e-9), 1),
        "worker_peak_rss_mib": round(max(
            (procstat.peak_rss_mib(pid) for pid in system.worker_processes()), default=0.0
        ), 1),
        "submit_ms": percentiles_ms(report.submit_s),
        "poll_ms": percentiles_ms(report.poll_s),
        "polls_per_round": round(len(report.poll_s) / max(1, len(report.submit_s)), 2),
        "poll_wait_s": plan.wait_s,
        "redis_commands_per_round": _per_round(commands, commands_before, report.ok),
        "provider_calls": sim["total"],
        "provider_connections": sim["connections"],
        "latency_sim_ms": options.latency_ms,
        "jitter_sim_ms": options.jitter_ms,
        "service_errors": len(errors := system.service_errors()),
        "service_error_samples": [line[:300] for line in errors[:3]],
        "client_errors": report.errors[:3],
        "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _preloaded(system: System, plan: LoadPlan) -> LoadReport:
    submitted = LoadReport()
    system.consume(False)
    try:
        asyncio.run(preload(system.api_url, plan.rounds, submitted))
    finally:
        resumed = time.monotonic()
        system.consume(True)
    report = LoadReport(submit_s=submitted.submit_s, errors=submitted.errors)
    asyncio.run(await_rounds(system.api_url, submitted.ids, report, plan))
    report.wall_s = time.monotonic() - resumed  # from the moment the workers may start
    return report


def _per_round(after: dict[str, int], before: dict[str, int], rounds: int) -> dict:
    counts = {name: (calls - before.get(name, 0)) / max(1, rounds) for name, calls in after.items()}
    ranked = sorted(((n, round(c, 1)) for n, c in counts.items() if c >= 0.05),
                    key=lambda item: -item[1])
    return {"total": round(sum(counts.values()), 1), **dict(ranked)}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.rounds", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=100, help="rounds kept in flight")
    parser.add_argument("--rounds", type=int, help="rounds to submit (3 x concurrency, >= 200)")
    parser.add_argument("--pool", choices=POOLS, default="threads", help="Celery worker pool")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes (Celery instances; prefork: children of one)")
    parser.add_argument("--worker-concurrency", type=int,
                        help="rounds in flight per worker process (default: --concurrency)")
    parser.add_argument("--provider-connections", type=int,
                        help="PROVIDER_MAX_CONNECTIONS (default: 4 per round in flight)")
    parser.add_argument("--api-workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--api-threads", type=int, default=256,
                        help="gunicorn threads per worker (the Procfile's 256)")
    parser.add_argument("--latency-ms", type=float, default=200.0, help="simulated call latency")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="latency spread (uniform ±)")
    parser.add_argument("--log-level", default="INFO", help="LOG_LEVEL of the services")
    parser.add_argument("--app", default="workers.app", help="Celery app the workers load")
    parser.add_argument("--first-poll-ms", type=float,
                        help="first poll this long after the submit (default: the floor)")
    parser.add_argument("--wait-s", type=float, default=30.0,
                        help="long-poll each round (?wait=N&until=finished); 0: interval polls")
    parser.add_argument("--poll-ms", type=float, default=25.0, help="then poll this often")
    parser.add_argument("--max-polls-per-s", type=float, default=1000.0,
                        help="cap on polls per second across all clients")
    parser.add_argument("--preload", action="store_true",
                        help="queue every round first, then let the workers take them")
    parser.add_argument("--ramp-s", type=float, default=0.0,
                        help="spread the first submits over this long instead of a burst")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="another service setting, e.g. --set ROUND_LEASE_SECONDS=30")
    parser.add_argument("--label", help="a name for this run in the output")
    return parser


if __name__ == "__main__":
    sys.exit(main())
