"""Run one Celery worker of the council: ``python -m workers <celery worker's options>``.

This is ``celery -A workers.app worker`` with the same options, parsing and behaviour, minus the
``celery`` command around it: that command first imports every installed plugin of its own
(Flower with its web server, the REPL), 10.7 MiB in every worker process that never uses them
(bench/RESULTS.md). Beat and Flower still run as ``celery -A workers.app beat|flower``.
"""

from __future__ import annotations

import sys

from celery.bin.base import CLIContext
from celery.bin.worker import worker

from workers.app import app

PROG = "python -m workers"


def main(argv: list[str] | None = None) -> None:
    """Start a worker with ``celery worker``'s options; exit with its status."""
    context = CLIContext(app=app, no_color=True, workdir=None)
    worker.main(args=sys.argv[1:] if argv is None else argv, prog_name=PROG, obj=context)


if __name__ == "__main__":
    main()
