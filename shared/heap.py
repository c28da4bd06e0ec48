"""Make CPython's garbage collector cheap for a long-running service process.

A service process builds hundreds of thousands of objects once (modules, the app, its schemas,
clients) and keeps them; CPython's oldest generation rescans every one of them on each full
collection. Measured here (bench/RESULTS.md, "Third pass"): in the API under 200 submissions
per second, full collections of 30 to 100 ms, during which no thread of the process ran, about
once a second; a worker at 100 rounds in flight spent 1.1 to 1.35 s collecting per 600 rounds,
in full collections of 30 to 140 ms. So, once a process has built what it keeps:

- ``gc.freeze`` moves every object alive into a generation that is never scanned;
- the youngest generation is collected every ``YOUNG_THRESHOLD`` net allocations instead of
  CPython's 700: with hundreds of rounds in flight most young objects are still alive when it
  runs, and each collection rescans them all.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def tune_collector() -> int:
    """Exempt every object alive now from later collections, and collect young ones less often.

    Return how many objects are exempt.
    """
    gc.collect()  # startup's garbage is freed, not kept for good
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
    return gc.get_freeze_count()
