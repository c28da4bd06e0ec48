"""The round engine called directly: a real SQLite store and the simulator over real HTTP."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from shared import records
from shared.council.run import Council, execute_round
from shared.provider.client import ProviderClient
from shared.store.base import FINISHED
from shared.store.sqlite import SqliteStore
from tests.conftest import CHAIRMAN, MEMBERS

pytestmark = pytest.mark.integration

MEMBER_IDS = MEMBERS.split(",")


@pytest.fixture
def store(tmp_path):
    store = SqliteStore(tmp_path / "council.sqlite3")
    yield store
    store.close()


def conduct(store, settings, session_id: str, round_no: int = 1, **council_options) -> str:
    """Run one round to its end on a fresh loop and client, as a worker process would."""

    async def run() -> str:
        async with httpx.AsyncClient() as http:
            provider = ProviderClient(http, settings.provider_base_url, None, 10.0)
            council = Council(store=store, provider=provider, roster=settings.roster,
                              lease_s=settings.round_lease_s, max_attempts=3, **council_options)
            return await execute_round(council, session_id, round_no)

    return asyncio.run(run())


def submit(store, question: str = "What is 2 + 2?") -> dict:
    session = records.new_session(question, MEMBER_IDS, CHAIRMAN)
    store.create_session(session)
    return session


def test_a_member_that_fails_leaves_a_degraded_round_that_names_it(store, settings, sim):
    sim.set_faults(model=MEMBER_IDS[0], error_rate=1.0)
    session = submit(store)
    assert conduct(store, settings, session["id"]) == records.DEGRADED
    round_ = store.get_session(session["id"])["rounds"][0]
    failed = [a for a in round_["answers"] if a["error"]]
    assert [a["member"] for a in failed] == [MEMBER_IDS[0]]
    assert any("alpha" in note and "did not answer" in note for note in round_["notes"])
    assert {s["member"] for s in round_["aggregate"]} == set(MEMBER_IDS[1:])
    assert round_["synthesis"]["content"]


def test_with_one_answer_the_rankings_are_skipped_and_the_reason_given(store, settings, sim):
    for member in MEMBER_IDS[1:]:
        sim.set_faults(model=member, error_rate=1.0)
    session = submit(store)
    assert conduct(store, settings, session["id"]) == records.DEGRADED
    round_ = store.get_session(session["id"])["rounds"][0]
    assert round_["ballots"] == []
    assert "rankings skipped: fewer than 2 members answered" in round_["notes"]
    assert round_["synthesis"]["content"]
    assert sim.stats()["calls"].get(CHAIRMAN) == 1


def test_a_round_of_a_deleted_session_ends_without_a_call(store, settings, sim):
    session = submit(store)
    abandoned = time.time() - 1000  # a worker claimed it, then died
    store.claim_round(session["id"], 1, abandoned, abandoned + 1, 3)
    assert store.delete_session(session["id"], time.time())
    assert conduct(store, settings, session["id"]) == records.CANCELLED
    assert store.claim_round(session["id"], 1, time.time(), time.time() + 60, 3).outcome == FINISHED
    assert sim.stats()["total"] == 0


def test_when_every_member_fails_the_round_fails_with_a_reason(store, settings, sim):
    sim.set_faults(model="*", error_rate=1.0)
    session = submit(store)
    assert conduct(store, settings, session["id"]) == records.FAILED
    round_ = store.get_session(session["id"])["rounds"][0]
    assert round_["error"] == "no council member answered"
    assert CHAIRMAN not in sim.stats()["calls"]


def test_a_failing_chairman_fails_the_round_but_keeps_the_answers(store, settings, sim):
    sim.set_faults(model=CHAIRMAN, error_rate=1.0)
    session = submit(store)
    assert conduct(store, settings, session["id"]) == records.FAILED
    round_ = store.get_session(session["id"])["rounds"][0]
    assert round_["error"].startswith("chairman chair failed")
    assert len(round_["answers"]) == len(MEMBER_IDS)
    assert round_["aggregate"]


def test_a_cancel_during_stage_one_stops_the_round_between_calls(store, settings, sim):
    sim.set_faults(model="*", latency_ms=3000)
    session = submit(store)

    async def cancel_soon():
        await asyncio.sleep(0.5)
        await asyncio.to_thread(store.request_cancel, session["id"], 1, time.time())

    async def both():
        async with httpx.AsyncClient() as http:
            provider = ProviderClient(http, settings.provider_base_url, None, 10.0)
            council = Council(store=store, provider=provider, roster=settings.roster,
                              lease_s=30, max_attempts=3, watch_interval_s=0.1)
            outcome, _ = await asyncio.gather(execute_round(council, session["id"], 1),
                                              cancel_soon())
            return outcome

    assert asyncio.run(both()) == records.CANCELLED
    round_ = store.get_session(session["id"])["rounds"][0]
    assert round_["status"] == records.CANCELLED
    assert round_["answers"] == [] and round_["synthesis"] is None


def test_a_round_another_worker_took_over_is_left_alone(store, settings, sim):
    session = submit(store)
    now = time.time()
    first = store.claim_round(session["id"], 1, now - 100, now - 50, 3)
    second = store.claim_round(session["id"], 1, now, now + 60, 3)
    assert (first.attempt, second.attempt) == (1, 2)
    assert conduct(store, settings, session["id"]) == "busy"
    assert sim.stats()["total"] == 0


def test_events_follow_the_round_in_order(store, settings, sim):
    events = []
    session = submit(store)
    outcome = conduct(store, settings, session["id"],
                      on_event=lambda sid, n, kind, data: events.append((sid, n, kind, data)))
    assert outcome == records.COMPLETED
    kinds = [kind for _, _, kind, _ in events]
    assert kinds[0] == "stage" and kinds[-1] == "finished"
    assert kinds.count("answer") == len(MEMBER_IDS) and kinds.count("ballot") == len(MEMBER_IDS)
    assert [d["stage"] for _, _, k, d in events if k == "stage"] == [
        "answers", "rankings", "synthesis"]
    assert {(sid, n) for sid, n, _, _ in events} == {(session["id"], 1)}


def test_the_sweeper_purges_sessions_past_retention_and_old_idempotency_keys(store):
    from shared.council.sweep import purge_expired

    old = records.new_session("old", MEMBER_IDS, CHAIRMAN, now=1000.0)
    new = records.new_session("new", MEMBER_IDS, CHAIRMAN, now=5000.0)
    for session in (old, new):
        store.create_session(session)
    store.begin_idempotent("", "stale", "fp", 1000.0)
    store.begin_idempotent("", "fresh", "fp", 5000.0)
    assert purge_expired(store, retention_s=2000.0, idempotency_ttl_s=2000.0, now=5500.0) == (1, 1)
    assert store.get_session(old["id"]) is None and store.get_session(new["id"])
    assert store.begin_idempotent("", "stale", "fp", 5500.0) is None
    assert store.begin_idempotent("", "fresh", "fp", 5500.0) is not None
    assert purge_expired(store, retention_s=None, idempotency_ttl_s=2000.0, now=5500.0) == (0, 0)
