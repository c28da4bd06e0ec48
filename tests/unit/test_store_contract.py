"""One contract, every store: the SQLite file, the Mongo adapter on mongomock, and real MongoDB.

The real MongoDB run needs ``MONGODB_URL`` (docker-compose starts a server); without it that
variant is skipped.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import mongomock
import pymongo
import pytest

from shared.records import (
    CANCELLED,
    COMPLETED,
    DEGRADED,
    FAILED,
    QUEUED,
    RUNNING,
    new_round,
    new_session,
)
from shared.settings import Settings
from shared.store import (
    BUSY,
    CLAIMED,
    EXHAUSTED,
    FINISHED,
    MISSING,
    Store,
    StoreUnavailable,
    open_store,
)
from shared.store.mongo import MongoStore
from shared.store.sqlite import SqliteStore

NOW = 1_700_000_000.0
LEASE_S = 60.0
MEMBERS = ("model/alpha", "model/beta", "model/gamma")
CHAIRMAN = "model/alpha"
USAGE = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}


@contextmanager
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = SqliteStore(tmp_path / "council.sqlite3")
    yield store
    store.close()


@contextmanager
def mongomock_store(tmp_path: Path) -> Iterator[Store]:
    yield MongoStore(mongomock.MongoClient(), "llm_council_test")


@contextmanager
def mongodb_store(tmp_path: Path) -> Iterator[Store]:
    url = os.environ.get("MONGODB_URL")
    if not url:
        pytest.skip("MONGODB_URL not set: real MongoDB contract run skipped")
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=5_000)
    database = f"llm_council_test_{uuid.uuid4().hex[:12]}"
    try:
        yield MongoStore(client, database)
    finally:
        client.drop_database(database)
        client.close()


BACKENDS = {"sqlite": sqlite_store, "mongomock": mongomock_store, "mongodb": mongodb_store}


@pytest.fixture(params=list(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with BACKENDS[request.param](tmp_path) as opened:
        yield opened


def add_session(store: Store, owner: str | None = "alice", now: float = NOW) -> dict:
    session = new_session("Why is the sky blue?", MEMBERS, CHAIRMAN, owner=owner, now=now)
    store.create_session(session)
    return session


def claim(store: Store, session: dict, now: float = NOW, round_no: int = 1, max_attempts: int = 3):
    return store.claim_round(session["id"], round_no, now, now + LEASE_S, max_attempts)


def running_session(store: Store) -> tuple[dict, int]:
    session = add_session(store)
    return session, claim(store, session).attempt


def answer(member: str, content: str = "Rayleigh scattering.") -> dict:
    return {"member": member, "content": content, "error": None, "usage": USAGE, "latency_ms": 120}


def ballot(reviewer: str, ranking: list[str]) -> dict:
    labels = {f"Response {chr(65 + i)}": member for i, member in enumerate(ranking)}
    return {
        "reviewer": reviewer, "labels": labels, "ranking": ranking, "valid": True,
        "raw": "FINAL RANKING: ...", "error": None, "usage": USAGE, "latency_ms": 80,
    }


def synthesis(content: str = "The sky is blue because...") -> dict:
    return {"model": CHAIRMAN, "content": content, "error": None, "usage": USAGE, "latency_ms": 300}


def round_of(store: Store, session: dict, round_no: int = 1) -> dict:
    return store.get_session(session["id"])["rounds"][round_no - 1]


# Sessions.


def test_created_session_reads_back_unchanged(store):
    session = add_session(store)
    assert store.get_session(session["id"]) == session


def test_copied_session_keeps_the_calls_of_its_rounds(store):
    session = new_session("Why?", MEMBERS, CHAIRMAN, owner="alice", now=NOW)
    done = session["rounds"][0]
    done.update(status=COMPLETED, attempts=1, started_at=NOW, finished_at=NOW + 5)
    done.update(answers=[answer(m) for m in MEMBERS], ballots=[ballot(MEMBERS[0], list(MEMBERS))])
    done.update(synthesis=synthesis(), notes=["a note"], aggregate=[{"member": MEMBERS[0]}])
    session["rounds"].append(new_round(2, "And at sunset?", NOW + 6))
    store.create_session(session)
    assert store.get_session(session["id"]) == session


def test_unknown_session_reads_as_none(store):
    assert store.get_session("no-such-session") is None


def test_list_is_newest_first_and_filtered_by_owner(store):
    alice = [add_session(store, "alice", NOW + i)["id"] for i in range(3)]
    bob = add_session(store, "bob", NOW + 10)["id"]
    assert [s["id"] for s in store.list_sessions("alice", 10)] == alice[::-1]
    assert [s["id"] for s in store.list_sessions(None, 10)] == [bob, *alice[::-1]]
    assert store.list_sessions("carol", 10) == []
    assert store.list_sessions("alice", 0) == []
    assert store.list_sessions("alice", 1)[0] == store.get_session(alice[-1])


def test_list_pages_neither_skip_nor_repeat(store):
    # Two sessions share each created_at, so the id must break ties in the cursor.
    ids = [add_session(store, "alice", NOW + i // 2)["id"] for i in range(7)]
    add_session(store, "bob", NOW + 1)
    seen, before = [], None
    while page := store.list_sessions("alice", 2, before):
        assert len(page) <= 2
        seen += [s["id"] for s in page]
        before = (page[-1]["created_at"], page[-1]["id"])
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen))
    stamps = [store.get_session(i)["created_at"] for i in seen]
    assert stamps == sorted(stamps, reverse=True)


# Follow-up rounds.


def test_append_round_is_refused_while_the_last_round_is_unfinished(store):
    session = add_session(store)
    assert not store.append_round(session["id"], new_round(2, "More?", NOW + 1))
    attempt = claim(store, session).attempt
    assert not store.append_round(session["id"], new_round(2, "More?", NOW + 1))
    assert store.finish_round(session["id"], 1, attempt, COMPLETED, {})
    assert store.append_round(session["id"], new_round(2, "More?", NOW + 1))
    stored = store.get_session(session["id"])
    assert [r["round_no"] for r in stored["rounds"]] == [1, 2]
    assert stored["rounds"][1] == new_round(2, "More?", NOW + 1)
    assert stored["status"] == QUEUED


def test_append_round_is_refused_for_a_wrong_number_or_session(store):
    session = add_session(store)
    assert store.request_cancel(session["id"], 1, NOW) == CANCELLED
    for round_no in (1, 3, 0):
        assert not store.append_round(session["id"], new_round(round_no, "More?", NOW))
    assert not store.append_round("no-such-session", new_round(2, "More?", NOW))
    assert store.append_round(session["id"], new_round(2, "More?", NOW))
    assert not store.append_round(session["id"], new_round(2, "Again?", NOW))


# Claims.


def test_claim_takes_a_queued_round_as_attempt_one(store):
    session = add_session(store)
    claimed = claim(store, session)
    assert (claimed.outcome, claimed.attempt) == (CLAIMED, 1)
    assert claimed.round == round_of(store, session)
    assert claimed.round["status"] == RUNNING
    assert claimed.round["lease_until"] == NOW + LEASE_S
    assert claimed.round["started_at"] == NOW
    assert store.get_session(session["id"])["status"] == RUNNING


def test_claim_is_busy_while_the_lease_holds(store):
    session = add_session(store)
    claim(store, session)
    assert claim(store, session, now=NOW + LEASE_S - 1).outcome == BUSY
    assert round_of(store, session)["attempts"] == 1


def test_claim_retakes_an_expired_lease_as_the_next_attempt(store):
    session = add_session(store)
    claim(store, session)
    store.save_answer(session["id"], 1, answer(MEMBERS[0]))
    later = NOW + LEASE_S + 1
    retaken = claim(store, session, now=later)
    assert (retaken.outcome, retaken.attempt) == (CLAIMED, 2)
    assert retaken.round["started_at"] == NOW
    assert retaken.round["lease_until"] == later + LEASE_S
    assert retaken.round["answers"] == [answer(MEMBERS[0])]


def test_claim_marks_the_round_failed_when_attempts_ran_out(store):
    session = add_session(store)
    assert claim(store, session, max_attempts=2).attempt == 1
    assert claim(store, session, now=NOW + 100, max_attempts=2).attempt == 2
    exhausted = claim(store, session, now=NOW + 200, max_attempts=2)
    assert exhausted.outcome == EXHAUSTED
    stored = store.get_session(session["id"])
    assert stored["status"] == FAILED
    assert stored["rounds"][0]["status"] == FAILED
    assert stored["rounds"][0]["error"]
    assert stored["rounds"][0]["finished_at"] is not None
    assert claim(store, session, now=NOW + 300, max_attempts=2).outcome == FINISHED


def test_claim_of_a_terminal_round_is_finished(store):
    session, attempt = running_session(store)
    store.finish_round(session["id"], 1, attempt, COMPLETED, {})
    assert claim(store, session, now=NOW + 1000).outcome == FINISHED


def test_claim_of_an_unknown_round_is_missing(store):
    session = add_session(store)
    assert claim(store, session, round_no=2).outcome == MISSING
    assert store.claim_round("no-such-session", 1, NOW, NOW + 1, 3).outcome == MISSING


# Leases.


def test_renew_lease_extends_it_and_records_the_stage(store):
    session, attempt = running_session(store)
    lease = store.renew_lease(session["id"], 1, attempt, NOW + 500, stage="rankings")
    assert (lease.held, lease.cancel_requested) == (True, False)
    assert round_of(store, session)["lease_until"] == NOW + 500
    assert round_of(store, session)["stage"] == "rankings"
    assert store.renew_lease(session["id"], 1, attempt, NOW + 600).held
    assert round_of(store, session)["stage"] == "rankings"


def test_renew_lease_is_not_held_by_an_older_attempt(store):
    session, _ = running_session(store)
    assert claim(store, session, now=NOW + LEASE_S + 1).attempt == 2
    assert not store.renew_lease(session["id"], 1, 1, NOW + 500).held
    assert round_of(store, session)["lease_until"] == NOW + 2 * LEASE_S + 1


def test_renew_lease_is_not_held_after_the_round_finished(store):
    session, attempt = running_session(store)
    store.finish_round(session["id"], 1, attempt, COMPLETED, {})
    assert not store.renew_lease(session["id"], 1, attempt, NOW + 500).held
    assert not store.renew_lease("no-such-session", 1, 1, NOW + 500).held


def test_renew_lease_reports_a_cancel_request(store):
    session, attempt = running_session(store)
    store.request_cancel(session["id"], 1, NOW + 1)
    lease = store.renew_lease(session["id"], 1, attempt, NOW + 500)
    assert (lease.held, lease.cancel_requested) == (True, True)


# Checkpoints.


def test_checkpoints_first_write_wins_in_write_order(store):
    session, _ = running_session(store)
    for member in (MEMBERS[2], MEMBERS[0]):
        store.save_answer(session["id"], 1, answer(member))
    store.save_answer(session["id"], 1, answer(MEMBERS[2], "a re-delivered call"))
    store.save_ballot(session["id"], 1, ballot(MEMBERS[1], [MEMBERS[0], MEMBERS[2]]))
    store.save_ballot(session["id"], 1, ballot(MEMBERS[1], [MEMBERS[2], MEMBERS[0]]))
    store.save_synthesis(session["id"], 1, synthesis())
    store.save_synthesis(session["id"], 1, synthesis("a second synthesis"))
    stored = round_of(store, session)
    assert stored["answers"] == [answer(MEMBERS[2]), answer(MEMBERS[0])]
    assert stored["ballots"] == [ballot(MEMBERS[1], [MEMBERS[0], MEMBERS[2]])]
    assert stored["synthesis"] == synthesis()


def test_checkpoints_survive_the_finish(store):
    session, attempt = running_session(store)
    store.save_answer(session["id"], 1, answer(MEMBERS[0]))
    store.save_synthesis(session["id"], 1, synthesis())
    store.finish_round(session["id"], 1, attempt, DEGRADED, {"notes": ["beta was lost"]})
    stored = round_of(store, session)
    assert stored["answers"] == [answer(MEMBERS[0])]
    assert stored["synthesis"] == synthesis()


def test_checkpoints_are_ignored_unless_the_round_runs(store):
    session = add_session(store)
    store.save_answer(session["id"], 1, answer(MEMBERS[0]))
    assert round_of(store, session)["answers"] == []
    attempt = claim(store, session).attempt
    store.finish_round(session["id"], 1, attempt, COMPLETED, {})
    store.save_answer(session["id"], 1, answer(MEMBERS[0]))
    store.save_ballot(session["id"], 1, ballot(MEMBERS[0], [MEMBERS[1]]))
    store.save_synthesis(session["id"], 1, synthesis())
    stored = round_of(store, session)
    assert (stored["answers"], stored["ballots"], stored["synthesis"]) == ([], [], None)
    store.save_answer("no-such-session", 1, answer(MEMBERS[0]))


def test_checkpoint_moves_updated_at_forward(store):
    session, _ = running_session(store)
    before = store.get_session(session["id"])["updated_at"]
    store.save_answer(session["id"], 1, answer(MEMBERS[0]))
    assert store.get_session(session["id"])["updated_at"] > before


# Finishing.


def test_finish_round_records_the_outcome(store):
    session, attempt = running_session(store)
    aggregate = [{"member": MEMBERS[0], "mean_rank": 1.0, "ballots": 2, "disagreement": 0.0}]
    outcome = {"aggregate": aggregate, "notes": ["gamma timed out"], "error": None}
    assert store.finish_round(session["id"], 1, attempt, DEGRADED, outcome)
    stored = store.get_session(session["id"])
    assert stored["status"] == DEGRADED
    round_ = stored["rounds"][0]
    assert (round_["status"], round_["aggregate"], round_["notes"]) == (
        DEGRADED, aggregate, ["gamma timed out"],
    )
    assert round_["finished_at"] is not None
    assert round_["lease_until"] is None


def test_finish_round_only_by_the_lease_holder(store):
    session, _ = running_session(store)
    retaken = claim(store, session, now=NOW + LEASE_S + 1)
    assert not store.finish_round(session["id"], 1, 1, FAILED, {"error": "late"})
    assert round_of(store, session)["status"] == RUNNING
    assert store.finish_round(session["id"], 1, retaken.attempt, COMPLETED, {})


def test_finish_round_only_once(store):
    session, attempt = running_session(store)
    assert store.finish_round(session["id"], 1, attempt, FAILED, {"error": "chairman failed"})
    assert not store.finish_round(session["id"], 1, attempt, COMPLETED, {})
    assert round_of(store, session)["status"] == FAILED
    assert round_of(store, session)["error"] == "chairman failed"


def test_finish_round_needs_a_running_round(store):
    session = add_session(store)
    assert not store.finish_round(session["id"], 1, 0, COMPLETED, {})
    assert not store.finish_round("no-such-session", 1, 1, COMPLETED, {})
    assert round_of(store, session)["status"] == QUEUED


def test_finish_round_rejects_what_it_cannot_record(store):
    session, attempt = running_session(store)
    with pytest.raises(ValueError):
        store.finish_round(session["id"], 1, attempt, RUNNING, {})
    with pytest.raises(ValueError):
        store.finish_round(session["id"], 1, attempt, COMPLETED, {"status": "completed"})
    assert round_of(store, session)["status"] == RUNNING


# Cancelling.


def test_cancel_of_a_queued_round_is_immediate(store):
    session = add_session(store)
    assert store.request_cancel(session["id"], 1, NOW + 5) == CANCELLED
    stored = store.get_session(session["id"])
    assert stored["status"] == CANCELLED
    assert stored["rounds"][0]["finished_at"] == NOW + 5
    assert claim(store, session).outcome == FINISHED


def test_cancel_of_a_running_round_flags_it(store):
    session, attempt = running_session(store)
    assert store.request_cancel(session["id"], 1, NOW + 5) == RUNNING
    round_ = round_of(store, session)
    assert (round_["status"], round_["cancel_requested"]) == (RUNNING, True)
    assert store.finish_round(session["id"], 1, attempt, CANCELLED, {})
    assert store.get_session(session["id"])["status"] == CANCELLED


def test_cancel_leaves_a_terminal_round_alone(store):
    session, attempt = running_session(store)
    store.finish_round(session["id"], 1, attempt, COMPLETED, {})
    assert store.request_cancel(session["id"], 1, NOW + 5) == COMPLETED
    round_ = round_of(store, session)
    assert (round_["status"], round_["cancel_requested"]) == (COMPLETED, False)


def test_cancel_of_an_unknown_round_is_none(store):
    session = add_session(store)
    assert store.request_cancel(session["id"], 2, NOW) is None
    assert store.request_cancel("no-such-session", 1, NOW) is None


# The sweeper.


def test_stale_rounds_are_old_queued_ones_and_expired_leases(store):
    late = add_session(store, now=NOW)
    fresh = add_session(store, now=NOW + 100)
    expired = add_session(store, now=NOW)
    claim(store, expired, now=NOW)
    leased = add_session(store, now=NOW)
    claim(store, leased, now=NOW + 100)
    done = add_session(store, now=NOW)
    store.finish_round(done["id"], 1, claim(store, done).attempt, COMPLETED, {})
    stale = store.stale_rounds(now=NOW + LEASE_S + 1, queued_before=NOW + 50)
    assert sorted(stale) == sorted([(late["id"], 1), (expired["id"], 1)])
    assert fresh["id"] not in {session_id for session_id, _ in stale}


def test_touch_queued_makes_a_round_fresh(store):
    late = add_session(store, now=NOW)
    store.touch_queued(late["id"], 1, NOW + 100)
    assert round_of(store, late)["queued_at"] == NOW + 100
    assert store.stale_rounds(now=NOW + 1, queued_before=NOW + 50) == []
    finished = add_session(store, now=NOW)
    store.finish_round(finished["id"], 1, claim(store, finished).attempt, COMPLETED, {})
    store.touch_queued(finished["id"], 1, NOW + 300)
    assert round_of(store, finished)["queued_at"] == NOW


def test_an_abandoned_round_is_offered_again_once_per_period(store):
    abandoned = add_session(store, now=NOW)
    claim(store, abandoned, now=NOW)
    after_lease = NOW + LEASE_S + 1
    assert store.stale_rounds(now=after_lease, queued_before=after_lease) == [
        (abandoned["id"], 1)
    ]
    store.touch_queued(abandoned["id"], 1, after_lease)
    assert store.stale_rounds(now=after_lease + 1, queued_before=after_lease) == []
    assert store.stale_rounds(now=after_lease + 60, queued_before=after_lease + 30) == [
        (abandoned["id"], 1)
    ]


def test_stale_rounds_respect_the_limit(store):
    for _ in range(3):
        add_session(store)
    assert len(store.stale_rounds(now=NOW, queued_before=NOW + 1, limit=2)) == 2


def test_stale_rounds_include_a_follow_up_round(store):
    session, attempt = running_session(store)
    store.finish_round(session["id"], 1, attempt, COMPLETED, {})
    store.append_round(session["id"], new_round(2, "More?", NOW))
    assert store.stale_rounds(now=NOW, queued_before=NOW + 1) == [(session["id"], 2)]


def test_ping_answers(store):
    store.ping()


# Opening stores and losing them.


def test_open_store_defaults_to_sqlite_in_the_data_folder(tmp_path):
    store = open_store(Settings(data_dir=tmp_path / "nested" / "data"))
    try:
        assert isinstance(store, SqliteStore)
        session = add_session(store)
        assert store.get_session(session["id"]) == session
        assert (tmp_path / "nested" / "data" / "council.sqlite3").exists()
    finally:
        store.close()


def test_a_locked_sqlite_file_is_unavailable(tmp_path):
    path = tmp_path / "council.sqlite3"
    store = SqliteStore(path, busy_timeout_s=0.05)
    session = add_session(store)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable):
            store.save_answer(session["id"], 1, answer(MEMBERS[0]))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.close()


def test_an_unreachable_mongodb_is_unavailable():
    client = pymongo.MongoClient(
        "mongodb://127.0.0.1:9/", serverSelectionTimeoutMS=100, connect=False
    )
    try:
        with pytest.raises(StoreUnavailable):
            MongoStore(client, "llm_council_test")
    finally:
        client.close()


# Several processes on one SQLite file.

RACE_SESSIONS = 30
RACE_THREADS = 4


def race(path: str, name: str, barrier, results) -> None:
    """Claim and checkpoint every round from several threads, starting with the other racer."""
    store = SqliteStore(Path(path))
    session_ids = [s["id"] for s in store.list_sessions(None, RACE_SESSIONS)]
    barrier.wait(timeout=60)

    def work(session_id: str) -> tuple[str, str]:
        outcome = store.claim_round(session_id, 1, time.time(), time.time() + 600, 3).outcome
        for member in (f"{name}-1", f"{name}-2", "shared"):
            store.save_answer(session_id, 1, answer(member, f"from {name}"))
        return session_id, outcome

    with ThreadPoolExecutor(RACE_THREADS) as pool:
        results.put((name, list(pool.map(work, session_ids))))
    store.close()


def test_processes_sharing_a_sqlite_file_lose_no_write(tmp_path):
    path = tmp_path / "council.sqlite3"
    store = SqliteStore(path)
    ids = [add_session(store, now=time.time())["id"] for _ in range(RACE_SESSIONS)]
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    racers = [
        context.Process(target=race, args=(str(path), name, barrier, results))
        for name in ("first", "second")
    ]
    for racer in racers:
        racer.start()
    outcomes = dict(results.get(timeout=120) for _ in racers)
    for racer in racers:
        racer.join(timeout=30)
        assert racer.exitcode == 0
    for session_id in ids:
        taken = [dict(outcomes[name])[session_id] for name in ("first", "second")]
        assert sorted(taken) == [BUSY, CLAIMED]
        round_ = round_of(store, {"id": session_id})
        assert round_["attempts"] == 1
        members = sorted(a["member"] for a in round_["answers"])
        assert members == ["first-1", "first-2", "second-1", "second-2", "shared"]
    store.close()
