"""Time every garbage collection of a bench service process.

``bench.harness`` puts this folder first on the services' ``PYTHONPATH`` and names a folder in
``BENCH_GC_DIR``; each process then appends one line per collection, ``generation seconds``, to
the file named after its pid there (``System.gc_s_by_role`` adds them up).
"""

import gc
import os
import time


def _record_collections(folder: str) -> None:
    started: list[float] = []

    def on_collection(phase: str, info: dict) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            spent = time.perf_counter() - started.pop()
            with open(os.path.join(folder, str(os.getpid())), "a") as log:
                log.write(f"{info['generation']} {spent:.6f}\n")

    gc.callbacks.append(on_collection)


if os.environ.get("BENCH_GC_DIR"):
    _record_collections(os.environ["BENCH_GC_DIR"])
