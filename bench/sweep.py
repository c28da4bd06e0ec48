"""Run a named set of ``bench.rounds`` runs one after another; append their JSON lines to a file.

    .venv/bin/python -m bench.sweep candidates --out bench/out/candidates.jsonl

Each run starts and stops its own system, so runs do not disturb each other. Sweeps take
minutes: start them in the background and watch the output file.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 600

SWEEPS: dict[str, list[list[str]]] = {
    # The worker concurrency models, at the same load.
    "candidates": [
        [*pool, "--concurrency", str(concurrency), "--label", f"{name}-{concurrency}"]
        for concurrency in (100, 500)
        for name, pool in (
            ("threads-shared-loop", ["--pool", "threads"]),
            ("gevent-shared-loop", ["--pool", "gevent"]),
            ("threads-loop-per-round", ["--pool", "threads", "--app", "bench.variants"]),
            ("prefork-loop-per-child", ["--pool", "prefork", "--workers", "8",
                                        "--worker-concurrency", "1"]),
        )
    ],
    # The chosen model across concurrency, one worker process up to 500, then four. Clients
    # long-poll each round; one that gets no wait slot polls again after --poll-ms, and polls
    # are capped per second across clients.
    "concurrency": [
        ["--concurrency", "10", "--rounds", "200", "--label", "threads-10"],
        ["--concurrency", "50", "--rounds", "400", "--label", "threads-50"],
        ["--concurrency", "100", "--rounds", "600", "--label", "threads-100"],
        ["--concurrency", "100", "--rounds", "600", "--jitter-ms", "100",
         "--label", "threads-100-jitter"],
        ["--concurrency", "100", "--rounds", "600", "--workers", "2",
         "--worker-concurrency", "50", "--label", "threads-2x50-100"],
        ["--concurrency", "500", "--rounds", "1500", "--poll-ms", "200",
         "--max-polls-per-s", "200", "--label", "threads-500"],
        # As many long-poll slots as clients: a third API process (SSE_MAX_STREAMS each).
        ["--concurrency", "500", "--rounds", "1500", "--poll-ms", "200",
         "--max-polls-per-s", "200", "--api-workers", "3", "--label", "threads-500-3api"],
        # 2000 clients polling at intervals over 64 connections: 2000 long polls would need
        # more connections than two gunicorn processes accept (worker_connections, 1000 each).
        ["--concurrency", "2000", "--workers", "4", "--worker-concurrency", "500",
         "--rounds", "2000", "--poll-ms", "500", "--max-polls-per-s", "200", "--ramp-s", "30",
         "--wait-s", "0", "--label", "threads-4x500-2000"],
    ],
    # Every round queued first, then the workers start: they hold all they are allowed at once.
    "preloaded": [
        ["--preload", "--concurrency", "500", "--rounds", "500", "--poll-ms", "250",
         "--max-polls-per-s", "200", "--label", "preloaded-1x500"],
        ["--preload", "--concurrency", "2000", "--rounds", "2000", "--workers", "4",
         "--worker-concurrency", "500", "--poll-ms", "500", "--max-polls-per-s", "200",
         "--label", "preloaded-4x500"],
    ],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", choices=sorted(SWEEPS))
    parser.add_argument("--out", type=Path, required=True, help="JSON lines are appended here")
    parser.add_argument("extra", nargs="*", help="more bench.rounds arguments for every run")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for run in SWEEPS[args.sweep]:
        command = [sys.executable, "-m", "bench.rounds", *run, *args.extra]
        line = _run(command)
        if not line.startswith("{"):
            line = f'{{"bench": "rounds", "failed_to_run": {" ".join(run)!r}}}'.replace("'", '"')
        with args.out.open("a") as out:
            out.write(line + "\n")
        print(line, flush=True)
    return 0


def _run(command: list[str]) -> str:
    """Run one benchmark; return its JSON line, or "" when it printed none in time."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        out, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.terminate()  # the run stops its services on SIGTERM
        out, _ = process.communicate(timeout=60)
    lines = out.strip().splitlines()
    return lines[-1] if lines else ""


if __name__ == "__main__":
    sys.exit(main())
