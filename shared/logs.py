"""JSON logs: one object per line, with the ids a log reader needs to follow a round.

The ids of the work in hand (``request_id``, ``session_id``, ``round_no``, ``task_id``,
``model``) live in a context variable: the API binds them per request, a worker per task (they
travel from the API to the task in the Celery message's headers), and a filter adds them to
every record written meanwhile. A record's own ``extra`` wins over the bound ids.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Coroutine, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

from pythonjsonlogger.json import JsonFormatter

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
RENAMED = {"asctime": "timestamp", "levelname": "level"}
LOG_IDS = ("request_id", "session_id", "round_no", "task_id", "model")

T = TypeVar("T")

_bound: ContextVar[dict[str, Any]] = ContextVar("log_ids", default={})  # noqa: B039 - never mutated


def configure_logging(level: str = "INFO") -> None:
    """Send every log record to stderr as one JSON object per line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(FORMAT, rename_fields=RENAMED, timestamp=False))
    handler.addFilter(BoundIds())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


class BoundIds(logging.Filter):
    """Add the ids bound in the current context to each record that lacks them."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _bound.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def log_ids() -> dict[str, Any]:
    """Return the ids bound in the current context."""
    return dict(_bound.get())


def bind_log_ids(**ids: Any) -> object:
    """Add ids to the current context (``None`` values are left out); return a reset token."""
    known = {name: value for name, value in ids.items() if name in LOG_IDS and value is not None}
    return _bound.set({**_bound.get(), **known})


def unbind_log_ids(token: object) -> None:
    """Restore the ids bound before the ``bind_log_ids`` call that returned ``token``."""
    _bound.reset(token)  # type: ignore[arg-type]


@contextlib.contextmanager
def bound_log_ids(**ids: Any) -> Iterator[None]:
    """Bind ids for the duration of a block."""
    token = bind_log_ids(**ids)
    try:
        yield
    finally:
        unbind_log_ids(token)


async def carrying_log_ids(ids: dict[str, Any], coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` with ``ids`` bound, whichever thread's loop runs it.

    The ids are bound inside the coroutine, so they hold for it and every task and thread it
    starts, however it was handed to the loop (a thread pool, a loop that copies no context).
    """
    with bound_log_ids(**ids):
        return await coroutine
