"""The event loops our asyncio processes run on: uvloop's where installed, else asyncio's."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)

UVLOOP = "uvloop"
ASYNCIO = "asyncio"
EVENT_LOOPS = (UVLOOP, ASYNCIO)


def new_event_loop(kind: str = UVLOOP) -> asyncio.AbstractEventLoop:
    """Return a new event loop: uvloop's (the default) or asyncio's.

    With 32 store threads (MongoDB's default) a worker on uvloop spends ~7% less CPU per round,
    and the simulator ~10% less per call; with SQLite's 4 store threads the worker's difference
    is within noise (bench/RESULTS.md, "Fourth pass"). Where uvloop is not installed (it is not
    built for Windows), say so and return asyncio's.
    """
    if kind == UVLOOP:
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed; running asyncio's event loop")
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def loop_kind(loop: asyncio.AbstractEventLoop) -> str:
    """Return which kind of event loop ``loop`` is."""
    return UVLOOP if type(loop).__module__.startswith(UVLOOP) else ASYNCIO
