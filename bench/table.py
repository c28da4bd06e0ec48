"""Turn the JSON lines of ``bench.rounds`` runs into the Markdown table of ``bench/RESULTS.md``.

    .venv/bin/python -m bench.table bench/out/concurrency.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COLUMNS = (
    "run", "in flight", "ok / failed", "rounds/s", "e2e p50 / p99 (ms)", "floor (ms)",
    "service CPU/round (ms): api + worker + redis", "worker peak RSS (MiB)",
    "submit p50 / p99 (ms)", "poll p50 / p99 (ms)", "polls/round", "calls / new conns",
)


def row(run: dict) -> list[str]:
    """Return one run's cells."""
    roles = run["cpu_ms_per_round_by_role"]
    worker = roles.get("worker", 0) + roles.get("beat", 0)
    return [
        run.get("label") or run["pool"],
        str(run["concurrency"]),
        f"{run['rounds_ok']} / {run['rounds_failed']}",
        str(run["rounds_per_s"]),
        _pair(run["latency_ms"]),
        f"{run['floor_ms']:.0f}",
        f"{run['cpu_ms_per_round']} = {roles['api']} + {worker:.2f} + {roles['redis']}",
        str(run["worker_peak_rss_mib"]),
        _pair(run["submit_ms"]),
        _pair(run["poll_ms"]),
        str(run["polls_per_round"]),
        f"{run['provider_calls']} / {run['provider_connections']}",
    ]


def markdown(runs: list[dict]) -> str:
    """Return the table and, below it, the command of each row."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(run)) + " |" for run in runs]
    lines += ["", "Commands:", ""]
    lines += [f"- {run.get('label')}: `{run['command']}`" for run in runs if "command" in run]
    return "\n".join(lines)


def _pair(figures: dict) -> str:
    return f"{figures['p50']:.0f} / {figures['p99']:.0f}" if figures.get("p50") else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.table", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    runs = [json.loads(line) for path in args.files for line in path.read_text().splitlines()
            if line.startswith("{") and '"rounds_ok"' in line]
    print(markdown(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
