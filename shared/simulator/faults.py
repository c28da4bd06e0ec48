"""Decide which simulated calls fail, and how, from per-model fault settings and a seeded draw.

A fault set for one model replaces the ``"*"`` fault for that model; it is not merged with it.
Each faulted call draws one number from the plan's seeded generator, so a given seed and order
of calls always gives the same outcomes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass

ANY_MODEL = "*"
MALFORMED_KINDS = ("truncated", "html", "no_choices", "error_200")
RATES = ("error_rate", "rate_429", "hang_rate")

# What a call does, besides answering normally.
ANSWER = "answer"
ERROR = "error"
RATE_LIMITED = "rate_limited"
HANG = "hang"
MALFORMED = "malformed"


class FaultError(ValueError):
    """A fault setting is malformed."""


@dataclass(frozen=True)
class Fault:
    """How one model (or ``"*"``, every model) misbehaves."""

    error_rate: float = 0.0
    rate_429: float = 0.0
    retry_after_s: float | None = 1.0
    hang_rate: float = 0.0
    latency_ms: float | None = None
    malformed: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What one call does: ``kind`` is one of the constants above."""

    kind: str
    fault: Fault | None = None


def parse_fault(data: object) -> tuple[str, Fault]:
    """Return the model id and the fault a JSON object describes; raise ``FaultError`` if bad."""
    if not isinstance(data, Mapping):
        raise FaultError("a fault must be a JSON object")
    unknown = set(data) - {"model", *Fault.__dataclass_fields__}
    if unknown:
        raise FaultError(f"unknown fault fields: {', '.join(sorted(unknown))}")
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise FaultError('"model" must be a model id or "*"')
    fault = Fault(
        error_rate=_rate(data, "error_rate"),
        rate_429=_rate(data, "rate_429"),
        retry_after_s=_number(data, "retry_after_s", 1.0),
        hang_rate=_rate(data, "hang_rate"),
        latency_ms=_number(data, "latency_ms", None),
        malformed=_malformed(data.get("malformed")),
    )
    if sum(getattr(fault, name) for name in RATES) > 1.0:
        raise FaultError(f"{', '.join(RATES)} must add up to at most 1")
    return model.strip(), fault


class FaultPlan:
    """The faults in force, and the seeded generator that draws each call's outcome."""

    def __init__(self, faults: Mapping[str, Fault], seed: int) -> None:
        self._faults = dict(faults)
        self._random = random.Random(seed)

    def set(self, model: str, fault: Fault) -> None:
        """Put a fault in force for one model, or for every model with ``"*"``."""
        self._faults[model] = fault

    def clear(self, model: str | None = None) -> None:
        """Lift the faults of one model, or all of them."""
        if model is None:
            self._faults.clear()
        else:
            self._faults.pop(model, None)

    def fault_for(self, model: str) -> Fault | None:
        """Return the fault in force for a model, if any."""
        return self._faults.get(model) or self._faults.get(ANY_MODEL)

    def decide(self, model: str) -> Outcome:
        """Draw what the next call to a model does."""
        fault = self.fault_for(model)
        if fault is None:
            return Outcome(ANSWER)
        draw = self._random.random()
        for kind, rate in (
            (ERROR, fault.error_rate),
            (RATE_LIMITED, fault.rate_429),
            (HANG, fault.hang_rate),
        ):
            if draw < rate:
                return Outcome(kind, fault)
            draw -= rate
        return Outcome(MALFORMED if fault.malformed else ANSWER, fault)

    def as_json(self) -> dict:
        """Return the faults in force, by model id."""
        return {model: asdict(fault) for model, fault in sorted(self._faults.items())}


def _rate(data: Mapping, name: str) -> float:
    value = _number(data, name, 0.0)
    if value is None or value > 1.0:
        raise FaultError(f'"{name}" must be a number from 0 to 1')
    return value


def _number(data: Mapping, name: str, default: float | None) -> float | None:
    value = data.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultError(f'"{name}" must be a non-negative number')
    if not math.isfinite(value) or value < 0:
        raise FaultError(f'"{name}" must be a non-negative number')
    return float(value)


def _malformed(value: object) -> str | None:
    if value is None or value in MALFORMED_KINDS:
        return value  # type: ignore[return-value]
    raise FaultError(f'"malformed" must be one of {", ".join(MALFORMED_KINDS)}, or null')
