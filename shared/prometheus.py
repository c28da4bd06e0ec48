"""Prometheus multiprocess mode: the folder of sample files, and the registry that reads it.

Under gunicorn and Celery prefork every process writes its samples to files named
``<kind>_<pid>.db`` in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client reads that variable itself,
when it is first imported), and the process that answers a scrape adds them all up. So:

- whoever starts a process tree empties its folder first (``reset_folder``): ``llm-council up``
  for its children, the gunicorn master (``api.gunicorn_conf``) for its workers; a Celery worker
  removes only the files of processes that are gone (``remove_stale_files``), so the worker
  processes of one host may share a folder and one endpoint;
- a process that exits is marked dead (``mark_dead``), which drops its live gauges;
- the API and the workers of one host must not share a folder: each would report the other's.

Without the variable each process reports only its own samples.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

SAMPLE_FILE = re.compile(r"^[a-z_]+_(?P<pid>\d+)\.db$")


def reset_folder(folder: Path) -> None:
    """Create the folder if needed and remove every sample file in it."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in _sample_files(folder):
        path.unlink(missing_ok=True)


def remove_stale_files(folder: Path) -> int:
    """Remove the sample files of processes that no longer run; return how many went."""
    folder.mkdir(parents=True, exist_ok=True)
    removed = 0
    for path in _sample_files(folder):
        if not _running(int(SAMPLE_FILE.match(path.name)["pid"])):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def mark_dead(folder: Path | None, pid: int) -> None:
    """Drop the live gauges of a process that exited (its counters stay in the sums)."""
    if folder is not None:
        multiprocess.mark_process_dead(pid, str(folder))


def scrape_registry(folder: Path | None, extra: Iterable[Collector] = ()) -> CollectorRegistry:
    """Return a registry of every process's samples (or this process's, without a folder)."""
    registry = CollectorRegistry()
    extra = list(extra)
    if folder is not None:
        multiprocess.MultiProcessCollector(registry, path=str(folder))
    else:
        registry.register(_OwnMetrics(_family_names(extra)))
    for collector in extra:
        registry.register(collector)
    return registry


class _OwnMetrics(Collector):
    """This process's default registry, less the families that ``extra`` collectors produce."""

    def __init__(self, replaced: set[str]) -> None:
        self._replaced = replaced

    def collect(self) -> Iterator:
        return (family for family in REGISTRY.collect() if family.name not in self._replaced)


def _family_names(collectors: list[Collector]) -> set[str]:
    names: set[str] = set()
    for collector in collectors:
        describe = getattr(collector, "describe", None)
        names |= {family.name for family in (describe() if describe else [])}
    return names


def _sample_files(folder: Path) -> list[Path]:
    return [path for path in folder.iterdir() if SAMPLE_FILE.match(path.name)]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
