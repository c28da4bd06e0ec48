"""Read what service processes spend from ``/proc``: CPU seconds of whole process trees, peak RSS.

A tree's CPU is the user+system time of every live process in it plus the time its members
collected from children they already reaped, so children that come and go are counted once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    return text[text.rindex(")") + 2 :].split()


def parent_of(pid: int) -> int | None:
    """Return the parent pid of a live process, or ``None`` when it is gone."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def descendants(root: int) -> list[int]:
    """Return ``root`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            parent = parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def process_cpu_s(pid: int) -> float:
    """Return a process's own user+system seconds plus those of the children it reaped."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return (utime + stime + cutime + cstime) / CLOCK_TICKS


def tree_cpu_s(roots: Iterable[int]) -> float:
    """Return the CPU seconds of the process trees under ``roots`` so far."""
    return sum(process_cpu_s(pid) for root in roots for pid in descendants(root))


def peak_rss_mib(pid: int) -> float:
    """Return the most memory a process has held resident (``VmHWM``), in MiB."""
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine_busy_s() -> tuple[float, float]:
    """Return the machine's (busy, total) CPU seconds so far, over every core."""
    fields = [int(value) for value in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user time
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS
