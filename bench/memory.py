"""Where does a worker's memory go with hundreds of rounds in flight? Break its RSS down.

    .venv/bin/python -m bench.memory --concurrency 500 --rounds 1000 --poll-ms 200 \\
        --max-polls-per-s 200
    .venv/bin/python -m bench.memory --concurrency 500 --rounds 1000 --poll-ms 200 \\
        --max-polls-per-s 200 --tracemalloc 25

starts the system as ``bench.rounds`` does, with this module as the workers' Celery app (the
same tasks as ``workers.app``, plus a probe on ``SIGUSR2``), drives it with the same closed
loop (polls at intervals), and reads the worker process once a second. It prints one JSON line
with what the worker held before its first round (``before_load``) and at its highest RSS:

- ``maps``: resident MiB by kind of mapping, from ``/proc/<pid>/smaps``: thread stacks (an
  anonymous mapping right after a guard page), glibc's arenas of threads (the reserved 64 MiB
  regions), the main heap, other anonymous memory (Python's object arenas, blocks too large
  for the heaps), files (libraries and mmapped files);
- ``sockets``: open TCP sockets by what is at the other end (Redis, the simulator), and open
  files by name (each SQLite connection holds the database and its WAL open);
- ``probe``, what the worker reported of itself when its RSS last grew by
  ``--probe-every-mib``: threads by name, counts of the objects that stand for a connection
  or a round (``WATCHED``) and of the most numerous types, what Python's object allocator
  (not reported while tracing) and glibc's malloc hold (in use, and kept free), and, with
  ``--tracemalloc N``, tracemalloc's current and peak totals;
- with ``--tracemalloc N`` (the worker traces with N frames from the moment it has imported
  everything, before its first round): the Python allocations alive at the last probe, by the
  library that allocated them, by the innermost frame in the project's code, by line and by
  traceback. Tracing costs memory of its own: read RSS from a run without it.

    .venv/bin/python -m bench.memory --store-threads 500

starts no system: it measures in this process what a SQLite store connection costs, as the
RSS that N threads add when each reads a session through one ``SqliteStore`` (so each opens a
connection of its own) against N threads that read nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from celery.signals import worker_init

from workers import tasks  # noqa: F401 - registers the tasks on the app
from workers.app import app  # noqa: F401 - the Celery app the workers load from here

if TYPE_CHECKING:
    from bench.harness import SystemOptions
    from bench.load import LoadPlan

PROBE_DIR = "MEMORY_PROBE_DIR"  # where the worker writes what the probe found
TRACE_FRAMES = "MEMORY_TRACE_FRAMES"  # trace the worker's allocations with this many frames
PROBE_WAIT_S = 120.0
STORED_SESSIONS = 2000  # sessions in the database whose connections are measured
MIB = 1024 * 1024
ROOT = f"{Path(__file__).resolve().parents[1]}/"
OWN_CODE = (f"{ROOT}shared/", f"{ROOT}workers/")
# Objects that each hold memory outside Python's heap or stand for a round in flight.
WATCHED = ("sqlite3.Connection", "_asyncio.Task", "aiohttp.client_proto.ResponseHandler",
           "redis.connection.Connection", "redis.asyncio.connection.Connection",
           "threading.Thread")


# In the worker.

@worker_init.connect
def _install_probe(**_: object) -> None:
    # Tracing starts once the worker has imported everything: what imports hold is the
    # footprint before the first round, and tracing them makes the start several times slower.
    frames = int(os.environ.get(TRACE_FRAMES) or 0)
    if frames:
        tracemalloc.start(frames)
    signal.signal(signal.SIGUSR2, _probe)


def _probe(signum: int, frame: object) -> None:
    """Write this process's threads, object counts and (when tracing) allocations."""
    folder = Path(os.environ[PROBE_DIR])
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(str(folder / "snapshot.tmp"))
        os.replace(folder / "snapshot.tmp", folder / "snapshot")
    names = Counter(re.sub(r"[-_ ]?\d+.*$", "", t.name) for t in threading.enumerate())
    objects = gc.get_objects()
    types = Counter(type(o).__qualname__ for o in objects)
    watched = Counter(name for o in objects if (name := _type_name(o)) in WATCHED)
    del objects
    traced, traced_peak = tracemalloc.get_traced_memory()
    found = {"threads": dict(names.most_common()), "watched": dict(watched),
             "objects": dict(types.most_common(30)), "traced_mib": round(traced / MIB, 1),
             "traced_peak_mib": round(traced_peak / MIB, 1), "pymalloc": _pymalloc_stats(),
             "malloc": _malloc_stats()}
    (folder / "probe.tmp").write_text(json.dumps(found))
    os.replace(folder / "probe.tmp", folder / "probe.json")


def _pymalloc_stats() -> dict[str, float]:
    """Return what Python's small-object allocator holds (``sys._debugmallocstats``), in MiB."""
    text = _c_stderr(sys._debugmallocstats)
    wanted = {"arenas allocated current": "arenas (1 MiB)", "arenas highwater mark":
              "arenas at most", "bytes in allocated blocks": "in_use_mib",
              "bytes in available blocks": "free_blocks_mib", "unused pools": "empty_pools_mib"}
    found = {}
    for line in text.splitlines():
        name, _, value = line.lstrip("#").partition("=")
        name = re.sub(r"^\d+ | \*.*$", "", name.strip())
        if name in wanted:
            number = int(value.strip().replace(",", ""))
            found[wanted[name]] = number if name.startswith("arenas") else round(number / MIB, 1)
    return found


def _malloc_stats() -> dict[str, float]:
    """Return what glibc's malloc holds, in MiB: the main arena, the threads' arenas, mmaps.

    "system" is what an arena took from the kernel, "in use" what is allocated in it now; the
    difference is free memory the arena keeps (fragmentation, or not yet reused).
    """
    text = _c_stderr(ctypes.CDLL(None).malloc_stats)
    arenas = re.findall(r"Arena (\d+):\s+system bytes\s+=\s+(\d+)\s+in use bytes\s+=\s+(\d+)",
                        text)
    total = re.search(r"Total \(incl. mmap\):\s+system bytes\s+=\s+(\d+)\s+"
                      r"in use bytes\s+=\s+(\d+)", text)
    found = {"thread_arenas": len(arenas) - 1}
    for name, rows in (("main", arenas[:1]), ("threads", arenas[1:])):
        found[f"{name}_system_mib"] = round(sum(int(r[1]) for r in rows) / MIB, 1)
        found[f"{name}_in_use_mib"] = round(sum(int(r[2]) for r in rows) / MIB, 1)
    if total:
        in_arenas = sum(int(r[1]) for r in arenas)
        found["mmapped_mib"] = round((int(total[1]) - in_arenas) / MIB, 1)
    return found


def _c_stderr(report: Callable[[], object]) -> str:
    """Return what ``report`` writes to the process's C-level stderr."""
    with tempfile.TemporaryFile("w+") as out:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)
        try:
            report()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        return out.read()


def _type_name(thing: object) -> str:
    kind = type(thing)
    return f"{kind.__module__}.{kind.__qualname__}"


# In the benchmark.

def main(argv: list[str] | None = None) -> int:
    # Imported here, not above: the worker loads this module as its app, and what it imports
    # there counts in the memory being measured.
    from bench.harness import SystemOptions
    from bench.load import LoadPlan

    args = _parser().parse_args(argv)
    if args.store_threads:
        print(json.dumps(_store_threads(args.store_threads)), flush=True)
        return 0
    folder = Path(tempfile.mkdtemp(prefix="llm-council-memory-"))
    worker_env = {PROBE_DIR: str(folder)}
    if args.tracemalloc:
        worker_env[TRACE_FRAMES] = str(args.tracemalloc)
    options = SystemOptions(worker_concurrency=args.concurrency, celery_app="bench.memory",
                            settings=dict(s.split("=", 1) for s in args.set),
                            worker_env=worker_env)
    plan = LoadPlan(concurrency=args.concurrency, rounds=args.rounds,
                    first_poll_s=options.floor_ms / 1000, poll_interval_s=args.poll_ms / 1000,
                    max_polls_per_s=args.max_polls_per_s)
    try:
        result = _measure(options, plan, folder, args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result["command"] = " ".join([".venv/bin/python -m bench.memory",
                                  *(sys.argv[1:] if argv is None else argv)])
    print(json.dumps(result), flush=True)
    return 0


def _measure(
    options: SystemOptions, plan: LoadPlan, folder: Path, args: argparse.Namespace
) -> dict:
    from bench.harness import System
    from bench.load import closed_loop

    with System(options) as system:
        pid = system.worker_processes()[0]
        start = {"rss_mib": _status(pid)["VmRSS"], "maps": _maps(pid)}
        load = threading.Thread(target=asyncio.run, args=(closed_loop(system.api_url, plan),))
        load.start()
        ports = {_port(system.redis_url): "redis", _port(system.sim_root): "simulator",
                 _port(system.api_url): "api"}
        peak = _watch(pid, load, folder, ports, args.probe_every_mib)
        load.join()
        result = {"bench": "memory", "concurrency": args.concurrency,
                  "tracemalloc_frames": args.tracemalloc, "before_load": start, **peak,
                  "peak_rss_mib": _status(pid)["VmHWM"]}
    if (folder / "snapshot").exists():
        result["python_allocations"] = _allocations(folder / "snapshot", args.top)
    return result


def _store_threads(count: int) -> dict:
    """Return the RSS that ``count`` threads add, reading a session each or nothing."""
    from shared.records import new_session
    from shared.store.sqlite import SqliteStore

    folder = Path(tempfile.mkdtemp(prefix="llm-council-memory-"))
    try:
        store = SqliteStore(folder / "council.sqlite3")
        ids = []
        for number in range(STORED_SESSIONS):
            session = new_session(f"Question {number}: why is the sky blue? " * 5,
                                  ["sim/alpha", "sim/beta", "sim/gamma", "sim/delta"],
                                  "sim/chair")
            store.create_session(session)
            ids.append(session["id"])
        idle = _threads_rss_mib(count, lambda number: None)
        reading = _threads_rss_mib(count, lambda number: store.get_session(ids[number % len(ids)]))
        store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"bench": "memory", "threads": count, "idle_threads_mib": idle,
            "reading_threads_mib": reading,
            "kib_per_connection": round(1024 * (reading - idle) / count, 1)}


def _threads_rss_mib(count: int, work: Callable[[int], object]) -> float:
    """Return the RSS that ``count`` live threads add once each has done ``work``."""
    done, release = threading.Barrier(count + 1), threading.Event()

    def run(number: int) -> None:
        work(number)
        done.wait()
        release.wait()

    before = _status(os.getpid())["VmRSS"]
    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    done.wait()
    added = _status(os.getpid())["VmRSS"] - before
    release.set()
    for thread in threads:
        thread.join()
    return round(added, 1)


def _watch(pid: int, load: threading.Thread, folder: Path, ports: dict[int, str],
           probe_every_mib: float) -> dict:
    """Read the worker once a second while the load runs; return what it held at its peak."""
    peak: dict = {"rss_mib": 0.0}
    probe: dict = {"rss_mib": 0.0}
    while load.is_alive():
        status = _status(pid)
        if status["VmRSS"] > peak["rss_mib"]:
            peak = {"rss_mib": status["VmRSS"], "status_mib": status,
                    "maps": _maps(pid), "sockets": _sockets(pid, ports)}
            if status["VmRSS"] >= probe["rss_mib"] + probe_every_mib:
                probe = {"rss_mib": status["VmRSS"], **_ask_probe(pid, folder)}
        time.sleep(1.0)
    return {**peak, "probe": probe}


def _ask_probe(pid: int, folder: Path) -> dict:
    answer = folder / "probe.json"
    answer.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + PROBE_WAIT_S
    while not answer.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return json.loads(answer.read_text()) if answer.exists() else {}


def _status(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            fields[name] = round(int(value.split()[0]) / 1024, 1)
        elif name == "Threads":
            fields[name] = int(value)
    keep = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads")
    return {name: fields[name] for name in keep if name in fields}


def _maps(pid: int) -> dict:
    """Return resident MiB and mapping counts by kind (see the module docstring)."""
    maps = _read_smaps(pid)
    kinds: Counter = Counter()
    counts: Counter = Counter()
    for index, (start, end, perms, path, rss_kib) in enumerate(maps):
        previous = maps[index - 1] if index else None
        following = maps[index + 1] if index + 1 < len(maps) else None
        if path:
            kind = path if path.startswith("[") else (
                "file: libraries" if ".so" in path else "file: other")
        elif perms.startswith("---"):
            kind = "reserved (no access)"
        elif previous and previous[3] == "" and previous[2].startswith("---") \
                and previous[1] == start and previous[1] - previous[0] == 4096:
            kind = "thread stacks"
        elif following and following[3] == "" and following[2].startswith("---") \
                and following[0] == end and start % (64 * MIB) == 0:
            kind = "malloc arenas (threads)"
        else:
            kind = "anonymous, other"
        kinds[kind] += rss_kib
        counts[kind] += 1
    return {kind: {"rss_mib": round(kib / 1024, 1), "mappings": counts[kind]}
            for kind, kib in kinds.most_common()}


def _read_smaps(pid: int) -> list[tuple[int, int, str, str, int]]:
    maps = []
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(None, 5)
        if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            start, end = (int(part, 16) for part in head[0].split("-"))
            maps.append([start, end, head[1], head[5].strip() if len(head) > 5 else "", 0])
        elif head[0] == "Rss:":
            maps[-1][4] = int(head[1])
    return [tuple(entry) for entry in maps]


def _sockets(pid: int, ports: dict[int, str]) -> dict[str, int]:
    """Return the process's open TCP sockets by what is at the other end, and its files."""
    inodes = set()
    files: Counter = Counter()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
        else:
            files[f"file {Path(target).name}" if target.startswith("/") else "other fd"] += 1
    found: Counter = Counter()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                found[ports.get(int(fields[2].rsplit(":", 1)[1], 16), "other")] += 1
    found["not tcp"] = len(inodes) - sum(found.values())
    return dict(found + files)


def _port(url: str) -> int:
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def _allocations(path: Path, top: int) -> dict:
    """Group the live Python allocations of a snapshot: by our caller, by line, by traceback."""
    snapshot = tracemalloc.Snapshot.load(str(path))
    by_caller: Counter = Counter()
    by_package: Counter = Counter()
    for trace in snapshot.traces:
        by_caller[_own_caller(trace.traceback)] += trace.size
        by_package[_package(trace.traceback[-1].filename)] += trace.size
    total = sum(by_caller.values())
    lines = snapshot.statistics("lineno")[:top]
    tracebacks = snapshot.statistics("traceback")[:top]
    return {
        "total_mib": round(total / MIB, 1),
        "by_allocating_package_mib": {package: round(size / MIB, 1)
                                      for package, size in by_package.most_common(top)},
        "by_project_caller_mib": {caller: round(size / MIB, 1)
                                  for caller, size in by_caller.most_common(top)},
        "by_line": [{"mib": round(s.size / MIB, 2), "blocks": s.count,
                     "at": str(s.traceback[0])} for s in lines],
        "by_traceback": [{"mib": round(s.size / MIB, 2), "blocks": s.count,
                          "frames": [str(f) for f in reversed(s.traceback)][:12]}
                         for s in tracebacks],
    }


def _own_caller(traceback: tracemalloc.Traceback) -> str:
    """Name the innermost frame in the project's code, or the outermost frame when none is."""
    for frame in reversed(traceback):  # a traceback lists the outermost frame first
        if frame.filename.startswith(OWN_CODE):
            return f"{frame.filename.removeprefix(ROOT)}:{frame.lineno}"
    return f"(no project frame) {traceback[0]}" if len(traceback) else "(no frame)"


def _package(filename: str) -> str:
    """Name the library (or the project's package) a source file belongs to."""
    for marker in ("/site-packages/", ROOT, "/lib/python3"):
        if marker in filename:
            rest = filename.split(marker, 1)[1].lstrip("0123456789./")
            return rest.split("/", 1)[0].removesuffix(".py")
    return filename


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=500, help="rounds kept in flight")
    parser.add_argument("--rounds", type=int, default=1000, help="rounds to submit")
    parser.add_argument("--poll-ms", type=float, default=200.0)
    parser.add_argument("--max-polls-per-s", type=float, default=200.0)
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                        help="trace the worker's Python allocations with this many frames")
    parser.add_argument("--probe-every-mib", type=float, default=10.0,
                        help="probe the worker again when its RSS grew by this much")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--store-threads", type=int, default=0, metavar="N",
                        help="measure N threads' SQLite connections in this process instead")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    return parser


if __name__ == "__main__":
    sys.exit(main())
