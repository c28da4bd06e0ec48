"""What every fault test submits, waits for and checks at its end.

Each test ends by proving that nothing accepted was lost (every round it submitted reached a
terminal state) and that no paid call was made twice: a call the simulator answered is paid
for, and the round engine checkpoints its result, so the same request (same model, same
messages) answered twice means a checkpointed call was made again.
"""

from __future__ import annotations

import json
import time
from collections import Counter

from tests.support.processes import wait_for

TERMINAL = {"completed", "degraded", "failed", "cancelled"}
ANSWERED = "answer"  # the simulator's outcome for a request it answered normally
POLL_S = 0.25


def submit(client, question: str, **fields: object) -> str:
    """Submit a question; return the session's location (the test fails unless it is 202)."""
    response = client.post("/v1/sessions", json={"question": question, **fields})
    assert response.status_code == 202, response.get_json()
    return response.headers["Location"]


def wait_until_finished(client, locations: list[str], timeout_s: float = 90) -> list[dict]:
    """Wait until the last round of every session is terminal; return the sessions, in order."""
    finished: dict[str, dict] = {}

    def all_finished():
        for location in set(locations) - set(finished):
            session = read(client, location)
            if session["rounds"][-1]["status"] in TERMINAL:
                finished[location] = session
        if len(finished) < len(set(locations)):
            time.sleep(POLL_S)
            return None
        return [finished[location] for location in locations]

    return wait_for(all_finished, f"{len(locations)} rounds to finish", timeout_s)


def read(client, location: str) -> dict:
    """Return a session (the test fails unless it is 200)."""
    response = client.get(location)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def repeated_paid_calls(sim) -> int:
    """Return how many answered requests repeated one answered before (same model, messages)."""
    answered = Counter(
        (request["model"], json.dumps(request["messages"], sort_keys=True))
        for request in sim.requests()
        if request["outcome"] == ANSWERED
    )
    return sum(count - 1 for count in answered.values())


def assert_nothing_lost(client, locations: list[str], sim, repeats_allowed: int = 0) -> None:
    """Every accepted round is terminal, and no paid call was made again (beyond an allowance)."""
    for location in locations:
        round_ = read(client, location)["rounds"][-1]
        assert round_["status"] in TERMINAL, (location, round_["status"])
    assert repeated_paid_calls(sim) <= repeats_allowed


def asked(sim, question: str, model: str | None = None) -> list[dict]:
    """Return the recorded requests whose messages mention ``question``."""
    return [r for r in sim.requests(model=model) if question in json.dumps(r["messages"])]
