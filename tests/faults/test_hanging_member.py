"""A member that never answers: the stage deadline ends the wait, and the worker moves on."""

from __future__ import annotations

import pytest

from tests.conftest import MEMBERS
from tests.faults.checks import asked, assert_nothing_lost, submit, wait_until_finished

pytestmark = pytest.mark.faults

HANGING = MEMBERS.split(",")[0]


@pytest.fixture
def environ(environ):
    # One round at a time: the next round runs only if the hung one let go of the worker.
    return {**environ, "STAGE_DEADLINE_SECONDS": "2", "PROVIDER_TIMEOUT": "60",
            "WORKER_CONCURRENCY": "1"}


def test_the_stage_deadline_ends_a_hanging_call_and_frees_the_worker(client, worker, sim):
    sim.set_faults(model=HANGING, hang_rate=1.0)
    worker()
    question = "Is anybody there?"
    hung = submit(client, question)

    round_ = wait_until_finished(client, [hung])[0]["rounds"][0]
    assert round_["status"] == "degraded"
    answer = next(a for a in round_["answers"] if a["member"] == HANGING)
    assert answer["content"] is None and "no answer before the" in answer["error"]
    assert any(note.startswith("alpha did not answer: no answer before the")
               for note in round_["notes"]), round_["notes"]
    assert len(asked(sim, question, model=HANGING)) == 1, "the deadline leaves no time to retry"
    assert round_["synthesis"]["content"], "the round went on with the other members"

    sim.set_faults(model=HANGING, hang_rate=0.0)
    following = submit(client, "And now?")
    assert wait_until_finished(client, [following])[0]["rounds"][0]["status"] == "completed"
    assert_nothing_lost(client, [hung, following], sim)
