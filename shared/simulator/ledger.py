"""Count what the simulated provider was asked, so tests can prove what was (not) called."""

from __future__ import annotations

import time
import weakref
from collections import Counter, deque

from shared.simulator.faults import Outcome


class Ledger:
    """Count calls, outcomes and connections, and remember the latest requests."""

    def __init__(self, max_recorded: int) -> None:
        self.requests: deque[dict] = deque(maxlen=max_recorded)
        self.models_seen: set[str] = set()
        self.in_flight = 0
        self._transports: weakref.WeakSet = weakref.WeakSet()
        self.reset()

    def reset(self) -> None:
        """Zero the counters and forget the recorded requests (open connections stay known)."""
        self.calls: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.connections = 0
        self.requests.clear()

    def note_connection(self, transport: object) -> None:
        """Count a connection the first time it carries a request."""
        if transport is not None and transport not in self._transports:
            self._transports.add(transport)
            self.connections += 1

    def note_call(self, model: str, messages: list[dict], outcome: Outcome) -> None:
        """Count one completion request and record what it asked, when, and what it got.

        ``at`` is the simulator's ``time.monotonic()`` at arrival: compare it only with other
        requests' ``at``.
        """
        self.calls[model] += 1
        self.outcomes[outcome.kind] += 1
        self.models_seen.add(model)
        self.requests.append({"model": model, "messages": messages, "at": time.monotonic(),
                              "outcome": outcome.kind})

    def as_json(self) -> dict:
        """Return the counters as the stats route shows them."""
        return {
            "total": sum(self.calls.values()),
            "calls": dict(self.calls),
            "connections": self.connections,
            "in_flight": self.in_flight,
            "outcomes": dict(self.outcomes),
        }
