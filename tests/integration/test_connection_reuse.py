"""A worker process keeps one pool of provider connections and reuses it across rounds.

Counted at the simulator, which sees every new TCP connection: rounds run one after another
never need more connections than one stage has calls, and a burst of rounds needs no more than
its calls in flight at once, far fewer than the calls it makes.
"""

from __future__ import annotations

import pytest

from tests.conftest import MEMBERS
from tests.integration.test_round_trip import poll_until_terminal

pytestmark = pytest.mark.integration

MEMBER_COUNT = len(MEMBERS.split(","))
CALLS_PER_ROUND = 2 * MEMBER_COUNT + 1
ONE_BY_ONE = 5
AT_ONCE = 10


def submit(client, question: str) -> str:
    response = client.post("/v1/sessions", json={"question": question})
    assert response.status_code == 202
    return response.headers["Location"]


def test_rounds_reuse_the_worker_processes_provider_connections(client, worker, sim):
    worker()
    for number in range(ONE_BY_ONE):
        finished = poll_until_terminal(client, submit(client, f"One by one {number}?"))
        assert finished["rounds"][0]["status"] == "completed"
    one_by_one = sim.stats()
    assert one_by_one["total"] == ONE_BY_ONE * CALLS_PER_ROUND
    assert one_by_one["connections"] <= MEMBER_COUNT, "each stage reuses the last one's"

    locations = [submit(client, f"At once {number}?") for number in range(AT_ONCE)]
    for location in locations:
        assert poll_until_terminal(client, location)["rounds"][0]["status"] == "completed"
    burst = sim.stats()
    assert burst["total"] == (ONE_BY_ONE + AT_ONCE) * CALLS_PER_ROUND
    new_connections = burst["connections"] - one_by_one["connections"]
    assert new_connections <= AT_ONCE * MEMBER_COUNT - MEMBER_COUNT, (
        "the burst opens connections only beyond those already pooled"
    )
    assert burst["connections"] * 3 < burst["total"]
