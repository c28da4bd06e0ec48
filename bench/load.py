"""Drive the API over HTTP like many polling clients at once, and time what they see.

``closed_loop`` keeps ``concurrency`` rounds in flight: each slot submits a question, polls the
session until its round is terminal, then submits the next, until ``rounds`` were submitted.
With ``wait_s`` set, a slot polls at once with ``?wait=<wait_s>&until=finished``: the API answers
when the round has ended (a long poll), and the slot asks again every ``poll_interval_s`` if it
answered earlier (no free wait slot, or the wait ran out). Without it, a slot first polls when the
round could be done at the earliest (``first_poll_s`` after the submit, normally the simulated
floor), then every ``poll_interval_s``. A shared pacer caps the polls per second so that
thousands of slots do not turn the benchmark into a poll flood.
``paced`` sends submits and polls at a fixed rate instead, for request latency alone.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp

TERMINAL = {"completed", "degraded", "failed", "cancelled"}
API_CONNECTIONS = 64


@dataclass(frozen=True)
class LoadPlan:
    """How hard to drive the API and how closely to watch each round."""

    concurrency: int
    rounds: int
    first_poll_s: float
    poll_interval_s: float = 0.025
    max_polls_per_s: float = 1000.0
    round_timeout_s: float = 300.0
    ramp_s: float = 0.0  # the slots' first submits are spread over this long
    wait_s: float = 0.0  # long-poll each round for up to this long (0: poll at intervals)


@dataclass
class LoadReport:
    """What the clients saw: per-round outcomes and latencies, per-request latencies."""

    statuses: dict[str, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)  # submit to completed, client side
    server_latencies_s: list[float] = field(default_factory=list)  # created_at to finished_at
    submit_s: list[float] = field(default_factory=list)
    poll_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # sessions submitted by a paced run
    spans: list[tuple[float, float]] = field(default_factory=list)  # started_at, finished_at
    wall_s: float = 0.0

    @property
    def ok(self) -> int:
        return self.statuses.get("completed", 0)

    @property
    def failed(self) -> int:
        return sum(self.statuses.values()) - self.ok

    def count(self, outcome: str) -> None:
        self.statuses[outcome] = self.statuses.get(outcome, 0) + 1

    def finished(self, round_: dict, submitted: float | None = None) -> None:
        """Record a round seen terminal: its outcome, latencies and the span it ran."""
        if submitted is not None:
            self.latencies_s.append(time.monotonic() - submitted)
        self.server_latencies_s.append(_epoch(round_["finished_at"]) - _epoch(round_["created_at"]))
        if round_.get("started_at"):
            self.spans.append((_epoch(round_["started_at"]), _epoch(round_["finished_at"])))
        self.count(round_["status"])

    def peak_running(self) -> int:
        """Return the most rounds that ran at once, from the store's start and end times."""
        edges = sorted([(start, 1) for start, _ in self.spans]
                       + [(end, -1) for _, end in self.spans])
        running = peak = 0
        for _, step in edges:
            running += step
            peak = max(peak, running)
        return peak


class Pacer:
    """Space events at least ``1 / rate`` seconds apart across every coroutine that waits."""

    def __init__(self, rate: float) -> None:
        self._gap = 1.0 / rate
        self._next = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self._gap
        if slot > now:
            await asyncio.sleep(slot - now)


async def closed_loop(api_url: str, plan: LoadPlan) -> LoadReport:
    """Keep ``plan.concurrency`` rounds in flight until ``plan.rounds`` were submitted."""
    report = LoadReport()
    numbers = itertools.count()
    pacer = Pacer(plan.max_polls_per_s)

    async def slot(http: aiohttp.ClientSession, index: int) -> None:
        await asyncio.sleep(plan.ramp_s * index / plan.concurrency)
        while (number := next(numbers)) < plan.rounds:
            await _one_round(http, api_url, plan, pacer, report, number)

    started = time.monotonic()
    # A long poll holds its connection: one per slot, plus some for the submits.
    connections = plan.concurrency + API_CONNECTIONS if plan.wait_s else API_CONNECTIONS
    async with _session(connections) as http:
        await asyncio.gather(*(slot(http, index) for index in range(plan.concurrency)))
    report.wall_s = time.monotonic() - started
    return report


async def _one_round(
    http: aiohttp.ClientSession, api_url: str, plan: LoadPlan, pacer: Pacer,
    report: LoadReport, number: int,
) -> None:
    submitted = time.monotonic()
    try:
        status, body = await _timed(http.post(
            f"{api_url}/v1/sessions", json={"question": f"Benchmark question {number}?"}
        ), report.submit_s)
        if status != 202:
            report.count(f"http_{status}")
            return
        location = f"{api_url}/v1/sessions/{body['id']}"
        if plan.wait_s:
            location += f"?wait={plan.wait_s:g}&until=finished"
        else:
            await asyncio.sleep(max(0.0, submitted + plan.first_poll_s - time.monotonic()))
        while time.monotonic() - submitted < plan.round_timeout_s:
            await pacer.wait()
            status, body = await _timed(http.get(location), report.poll_s)
            round_ = body["rounds"][-1] if status == 200 else {}
            if round_.get("status") in TERMINAL:
                report.finished(round_, submitted)
                return
            await asyncio.sleep(plan.poll_interval_s)
        report.count("timed_out")
    except (TimeoutError, aiohttp.ClientError, ValueError, KeyError) as error:
        report.errors.append(f"{type(error).__name__}: {error}")
        report.count("client_error")


async def preload(api_url: str, rounds: int, report: LoadReport, connections: int = 32) -> None:
    """Submit ``rounds`` questions, ``connections`` at a time; keep their ids in the report."""
    numbers = iter(range(rounds))

    async def submitter(http: aiohttp.ClientSession) -> None:
        for number in numbers:
            await _paced_one(http, api_url, report, Request(True), number)

    async with _session() as http:
        await asyncio.gather(*(submitter(http) for _ in range(connections)))


async def await_rounds(
    api_url: str, ids: list[str], report: LoadReport, plan: LoadPlan
) -> None:
    """Poll every session until its round is terminal (or the plan's round timeout passes)."""
    pacer = Pacer(plan.max_polls_per_s)
    started = time.monotonic()

    async def watch(http: aiohttp.ClientSession, session_id: str) -> None:
        while time.monotonic() - started < plan.round_timeout_s:
            await pacer.wait()
            try:
                status, body = await _timed(http.get(f"{api_url}/v1/sessions/{session_id}"),
                                            report.poll_s)
            except (TimeoutError, aiohttp.ClientError, ValueError) as error:
                report.errors.append(f"{type(error).__name__}: {error}")
                continue
            round_ = body["rounds"][-1] if status == 200 else {}
            if round_.get("status") in TERMINAL:
                report.finished(round_)
                return
            await asyncio.sleep(plan.poll_interval_s)
        report.count("timed_out")

    async with _session() as http:
        await asyncio.gather(*(watch(http, session_id) for session_id in ids))
    report.wall_s = time.monotonic() - started


@dataclass(frozen=True)
class Request:
    """One request of a paced run: a submit (POST a question) or a poll (GET a session)."""

    submit: bool
    session_id: str | None = None


async def paced(
    api_url: str, rate: float, duration_s: float, choose: Callable[[int], Request],
    report: LoadReport | None = None,
) -> LoadReport:
    """Send ``rate`` requests per second for ``duration_s``, whatever the answers' latency.

    ``choose(n)`` picks the n-th request; submitted session ids are kept in ``report.ids``.
    """
    report = report or LoadReport()
    pacer = Pacer(rate)
    started = time.monotonic()
    async with _session() as http:
        tasks = []
        for number in itertools.count():
            if time.monotonic() - started >= duration_s:
                break
            await pacer.wait()
            request = choose(number)
            tasks.append(asyncio.ensure_future(_paced_one(http, api_url, report, request, number)))
        await asyncio.gather(*tasks)
    report.wall_s = time.monotonic() - started
    return report


async def _paced_one(
    http: aiohttp.ClientSession, api_url: str, report: LoadReport, request: Request, number: int
) -> None:
    try:
        if request.submit:
            status, body = await _timed(http.post(
                f"{api_url}/v1/sessions", json={"question": f"Paced question {number}?"}
            ), report.submit_s)
            if status == 202:
                report.ids.append(body["id"])
        else:
            status, _ = await _timed(http.get(f"{api_url}/v1/sessions/{request.session_id}"),
                                     report.poll_s)
        report.count("ok" if status in (200, 202) else f"http_{status}")
    except (TimeoutError, aiohttp.ClientError, ValueError) as error:
        report.errors.append(f"{type(error).__name__}: {error}")
        report.count("client_error")


def _session(connections: int = API_CONNECTIONS) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))


async def _timed(request, into: list[float]) -> tuple[int, dict]:
    started = time.monotonic()
    async with request as response:
        body = await response.json(content_type=None)
        into.append(time.monotonic() - started)
        return response.status, body


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def percentiles_ms(samples: list[float], points: tuple[int, ...] = (50, 99)) -> dict[str, float]:
    """Return ``{"p50": ms, "p99": ms}`` (nearest rank) of samples in seconds."""
    if not samples:
        return {f"p{point}": None for point in points}
    ordered = sorted(samples)
    return {
        f"p{point}": round(1000 * ordered[min(len(ordered) - 1, len(ordered) * point // 100)], 1)
        for point in points
    }
