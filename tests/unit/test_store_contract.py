"""One contract, every store: the SQLite file, the Mongo adapter on mongomock, and real MongoDB.

The real MongoDB run needs ``MONGODB_URL`` (docker-compose starts a server); without it that
variant is skipped.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
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
from shared.settings import Settings, SettingsError, load_settings
from shared.store import (
    BUSY,
    CLAIMED,
    EXHAUSTED,
    FINISHED,
    MISSING,
    DuplicateKey,
    SessionQuery,
    Store,
    StoreUnavailable,
    mongo_schema,
    open_store,
    sqlite_schema,
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
def real_mongodb() -> Iterator[tuple[pymongo.MongoClient, str]]:
    """Yield a client of the MongoDB at ``MONGODB_URL`` and a throwaway database name."""
    url = os.environ.get("MONGODB_URL")
    if not url:
        pytest.skip("MONGODB_URL not set: real MongoDB contract run skipped")
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=5_000)
    database = f"llm_council_test_{uuid.uuid4().hex[:12]}"
    try:
        yield client, database
    finally:
        client.drop_database(database)
        client.close()


@contextmanager
def mongodb_store(tmp_path: Path) -> Iterator[Store]:
    with real_mongodb() as (client, database):
        yield MongoStore(client, database)


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


def ids_of(sessions: list[dict]) -> list[str]:
    return [session["id"] for session in sessions]


def delivery(attempt: int) -> dict:
    return {"attempt": attempt, "at": NOW + attempt + 0.123456789, "status": 500 + attempt,
            "error": None, "url": "https://example.test/hook"}


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


def test_every_session_field_reads_back_unchanged(store):
    session = new_session(
        "Why?", MEMBERS, CHAIRMAN, owner="alice", now=NOW, mode="chat", pinned=True,
        share_token="token-1", callback_url="https://example.test/hook", priority="batch",
        branched_from={"session_id": "parent", "round_no": 2},
        deliveries=[delivery(1)], min_answers=3, min_ballots=2,
    )
    store.create_session(session)
    assert store.get_session(session["id"]) == session
    assert store.list_sessions(SessionQuery(), 10) == [session]


def test_new_session_refuses_an_unknown_mode_or_priority():
    assert new_session("Why?", MEMBERS, CHAIRMAN)["deliveries"] == []
    with pytest.raises(ValueError):
        new_session("Why?", MEMBERS, CHAIRMAN, mode="debate")
    with pytest.raises(ValueError):
        new_session("Why?", MEMBERS, CHAIRMAN, priority="urgent")


def test_list_is_newest_first_and_filtered_by_owner(store):
    alice = [add_session(store, "alice", NOW + i)["id"] for i in range(3)]
    bob = add_session(store, "bob", NOW + 10)["id"]
    assert ids_of(store.list_sessions(SessionQuery(owner="alice"), 10)) == alice[::-1]
    assert ids_of(store.list_sessions(SessionQuery(), 10)) == [bob, *alice[::-1]]
    assert store.list_sessions(SessionQuery(owner="carol"), 10) == []
    assert store.list_sessions(SessionQuery(owner="alice"), 0) == []
    assert store.list_sessions(SessionQuery(owner="alice"), 1)[0] == store.get_session(alice[-1])


def test_list_puts_pinned_sessions_first(store):
    old_pinned = add_session(store, "alice", NOW)["id"]
    newer = add_session(store, "alice", NOW + 1)["id"]
    new_pinned = add_session(store, "alice", NOW + 2)["id"]
    for session_id in (old_pinned, new_pinned):
        store.update_session(session_id, {"pinned": True}, NOW + 3)
    assert ids_of(store.list_sessions(SessionQuery(), 10)) == [new_pinned, old_pinned, newer]


def test_list_filters_combine(store):
    plan = [  # owner, created_at offset, question, finished, pinned
        ("alice", 0, "Why is the sky blue?", True, True),
        ("alice", 1, "Why is the sea blue?", False, False),
        ("alice", 2, "How do tides work?", True, False),
        ("bob", 3, "Why is the sky blue?", True, True),
    ]
    ids = []
    for owner, offset, question, finished, pinned in plan:
        session = new_session(question, MEMBERS, CHAIRMAN, owner=owner, now=NOW + offset,
                              pinned=pinned)
        store.create_session(session)
        if finished:
            store.finish_round(session["id"], 1, claim(store, session).attempt, COMPLETED, {})
        ids.append(session["id"])

    def listed(**query) -> list[str]:
        return ids_of(store.list_sessions(SessionQuery(**query), 10))

    assert listed(owner="alice", status=COMPLETED) == [ids[0], ids[2]]
    assert listed(owner="alice", status=COMPLETED, pinned=False) == [ids[2]]
    assert listed(status=COMPLETED, pinned=True) == [ids[3], ids[0]]
    assert listed(owner="alice", text="BLUE") == [ids[0], ids[1]]
    assert listed(owner="alice", text="blue", status=QUEUED) == [ids[1]]
    assert listed(text="sky", pinned=True, owner="bob") == [ids[3]]
    assert listed(owner="bob", status=QUEUED) == []
    assert listed(pinned=False) == [ids[2], ids[1]]


def test_list_text_matches_any_round_literally_and_ignoring_case(store):
    session, attempt = running_session(store)
    store.finish_round(session["id"], 1, attempt, COMPLETED, {})
    store.append_round(session["id"], new_round(2, "And in the ÉTÉ of 100% (a.k.a. summer)?", NOW))
    add_session(store, now=NOW + 1)  # the same first question, no follow-up

    def listed(text: str) -> list[str]:
        return ids_of(store.list_sessions(SessionQuery(text=text), 10))

    for text in ("été", "100%", "(A.K.A.", "SKY blue", "in the"):
        assert session["id"] in listed(text), text
    assert listed("été") == [session["id"]]
    for text in ("a_k", "100_", "a.k.a.*", "1.0%"):
        assert listed(text) == [], text


def test_list_pages_neither_skip_nor_repeat(store):
    # Two sessions share each created_at, so the id must break ties in the cursor; pinned
    # sessions come first, and pages cross from the pinned ones to the others.
    ids = [add_session(store, "alice", NOW + i // 2)["id"] for i in range(9)]
    add_session(store, "bob", NOW + 1)
    for session_id in ids[1:6:2]:
        store.update_session(session_id, {"pinned": True}, NOW + 10)
    store.delete_session(ids[4], NOW + 10)
    expected = store.list_sessions(SessionQuery(owner="alice"), 100)
    assert len(expected) == 8
    seen, after, pages = [], None, 0
    while page := store.list_sessions(SessionQuery(owner="alice"), 3, after):
        assert len(page) <= 3 and pages < 10
        pages += 1
        seen += ids_of(page)
        after = (page[-1]["pinned"], page[-1]["created_at"], page[-1]["id"])
    assert pages == 3
    assert seen == ids_of(expected)
    order = [(not s["pinned"], -s["created_at"], tuple(-ord(c) for c in s["id"])) for s in expected]
    assert order == sorted(order)
    assert [s["pinned"] for s in expected] == [True] * 3 + [False] * 5


def test_list_reads_a_page_in_three_queries(tmp_path):
    store = SqliteStore(tmp_path / "council.sqlite3")
    statements: list[str] = []
    store._connection().set_trace_callback(statements.append)
    try:
        for count in (1, 12):
            for _ in range(count):
                session, attempt = running_session(store)
                store.save_answer(session["id"], 1, answer(MEMBERS[0]))
                store.finish_round(session["id"], 1, attempt, COMPLETED, {})
                store.append_round(session["id"], new_round(2, "More?", NOW))
            statements.clear()
            assert len(store.list_sessions(SessionQuery(), 50)) >= count
            assert len([s for s in statements if s.lstrip().startswith("SELECT")]) == 3
    finally:
        store.close()


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


# Editing, deleting and sharing sessions.


def test_update_session_changes_the_title_and_the_pin(store):
    session = add_session(store)
    updated = store.update_session(session["id"], {"title": "Sky", "pinned": True}, NOW + 7)
    assert updated == store.get_session(session["id"])
    assert (updated["title"], updated["pinned"], updated["updated_at"]) == ("Sky", True, NOW + 7)
    updated = store.update_session(session["id"], {"pinned": False}, NOW + 8)
    assert (updated["title"], updated["pinned"], updated["updated_at"]) == ("Sky", False, NOW + 8)


def test_update_session_refuses_other_fields_and_wrong_types(store):
    session = add_session(store)
    for changes in ({"status": COMPLETED}, {"title": "Sky", "owner": "bob"}, {"pinned": "yes"},
                    {"title": None}):
        with pytest.raises(ValueError):
            store.update_session(session["id"], changes, NOW + 1)
    assert store.get_session(session["id"]) == session


def test_update_of_a_missing_or_deleted_session_is_none(store):
    session = add_session(store)
    assert store.delete_session(session["id"], NOW + 1)
    assert store.update_session(session["id"], {"title": "Sky"}, NOW + 2) is None
    assert store.update_session("no-such-session", {"pinned": True}, NOW + 2) is None


def test_a_deleted_session_vanishes_from_every_read(store):
    session, kept = add_session(store), add_session(store)
    assert store.set_share_token(session["id"], "token-1")
    assert store.delete_session(session["id"], NOW + 5)
    assert store.get_session(session["id"]) is None
    assert store.get_shared_session("token-1") is None
    assert ids_of(store.list_sessions(SessionQuery(), 10)) == [kept["id"]]
    assert ids_of(store.list_sessions(SessionQuery(owner="alice", text="sky"), 10)) == [kept["id"]]
    assert not store.delete_session(session["id"], NOW + 6)
    assert not store.delete_session("no-such-session", NOW + 6)
    assert not store.set_share_token(session["id"], "token-2")
    assert store.get_session(kept["id"]) == kept


def test_deleting_clears_the_share_token_for_another_session(store):
    session, other = add_session(store), add_session(store)
    store.set_share_token(session["id"], "token-1")
    store.delete_session(session["id"], NOW + 1)
    assert store.set_share_token(other["id"], "token-1")
    assert store.get_shared_session("token-1")["id"] == other["id"]


def test_deleting_cancels_the_unfinished_round(store):
    queued = add_session(store)
    running, attempt = running_session(store)
    finished, finished_attempt = running_session(store)
    store.finish_round(finished["id"], 1, finished_attempt, COMPLETED, {})
    for session in (queued, running, finished):
        assert store.delete_session(session["id"], NOW + 5)
    assert claim(store, queued, now=NOW + 1000).outcome == FINISHED
    assert store.stale_rounds(now=NOW + 1000, queued_before=NOW + 1000) == [(running["id"], 1)]
    lease = store.renew_lease(running["id"], 1, attempt, NOW + 500)
    assert (lease.held, lease.cancel_requested) == (True, True)
    assert store.finish_round(running["id"], 1, attempt, CANCELLED, {})
    assert store.stale_rounds(now=NOW + 1000, queued_before=NOW + 1000) == []


def test_delete_sessions_of_one_owner_or_of_everyone(store):
    alice = [add_session(store, "alice", NOW + i) for i in range(3)]
    bob = add_session(store, "bob", NOW + 5)
    anonymous = add_session(store, None, NOW + 6)
    store.delete_session(alice[0]["id"], NOW + 7)
    assert store.delete_sessions("alice", NOW + 8) == 2
    assert store.delete_sessions("alice", NOW + 9) == 0
    assert ids_of(store.list_sessions(SessionQuery(), 10)) == [anonymous["id"], bob["id"]]
    assert claim(store, alice[1], now=NOW + 10).outcome == FINISHED
    assert store.delete_sessions(None, NOW + 10) == 2
    assert store.list_sessions(SessionQuery(), 10) == []
    assert claim(store, bob, now=NOW + 10).outcome == FINISHED


def test_a_share_token_reads_the_session_until_it_is_revoked(store):
    session = add_session(store)
    assert store.get_shared_session("token-1") is None
    assert store.set_share_token(session["id"], "token-1")
    shared = store.get_shared_session("token-1")
    assert shared == store.get_session(session["id"])
    assert shared["share_token"] == "token-1"
    assert store.set_share_token(session["id"], "token-2")
    assert store.get_shared_session("token-1") is None
    assert store.set_share_token(session["id"], None)
    assert store.get_shared_session("token-2") is None
    assert store.get_session(session["id"])["share_token"] is None
    assert not store.set_share_token("no-such-session", "token-3")


def test_a_share_token_belongs_to_one_session(store):
    first, second, third = add_session(store), add_session(store), add_session(store)
    store.set_share_token(first["id"], "token-1")
    with pytest.raises(DuplicateKey):
        store.set_share_token(second["id"], "token-1")
    assert store.set_share_token(first["id"], "token-1")
    assert store.get_session(second["id"])["share_token"] is None
    assert store.get_shared_session("token-1")["id"] == first["id"]
    assert store.set_share_token(third["id"], None)  # any number of sessions share nothing


# Retention and webhook deliveries.


def stored_rows(store: Store, session_id: str) -> int:
    """Count what the store still holds of a session: its rows, or its document."""
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store._path) as conn:
            return sum(
                conn.execute(f"SELECT count(*) FROM {table} WHERE {column} = ?",
                             (session_id,)).fetchone()[0]
                for table, column in (("sessions", "id"), ("rounds", "session_id"),
                                      ("round_calls", "session_id"))
            )
    return store._sessions.count_documents({"_id": session_id})


def test_purge_removes_old_sessions_with_their_rounds_and_calls(store):
    old, attempt = running_session(store)
    store.save_answer(old["id"], 1, answer(MEMBERS[0]))
    store.finish_round(old["id"], 1, attempt, COMPLETED, {})
    store.append_round(old["id"], new_round(2, "More?", NOW + 1))
    deleted_old = add_session(store, now=NOW + 1)
    store.delete_session(deleted_old["id"], NOW + 2)
    young = add_session(store, now=NOW + 100)
    assert stored_rows(store, old["id"]) > 0
    assert store.purge_sessions(created_before=NOW + 50) == 2
    assert stored_rows(store, old["id"]) == stored_rows(store, deleted_old["id"]) == 0
    assert store.get_session(old["id"]) is None
    assert store.get_session(young["id"]) == young
    assert store.purge_sessions(created_before=NOW + 50) == 0


def test_purge_takes_the_oldest_first_up_to_the_limit(store):
    ids = [add_session(store, now=NOW + i)["id"] for i in range(4)]
    assert store.purge_sessions(created_before=NOW + 10, limit=3) == 3
    assert ids_of(store.list_sessions(SessionQuery(), 10)) == ids[3:]
    assert store.purge_sessions(created_before=NOW + 10, limit=0) == 0


def test_record_delivery_appends_attempts_in_order(store):
    session = add_session(store)
    store.record_delivery(session["id"], delivery(1))
    store.record_delivery(session["id"], delivery(2))
    stored = store.get_session(session["id"])
    assert stored["deliveries"] == [delivery(1), delivery(2)]
    assert stored["updated_at"] == session["updated_at"]
    store.record_delivery("no-such-session", delivery(1))


# Idempotency records.

FINGERPRINT = "sha256:body-1"
# MongoDB expires idempotency records a day after their creation: keep them younger than that.
RECENT = float(int(time.time()))


def test_an_idempotency_key_is_reserved_once_then_replayed(store):
    assert store.begin_idempotent("alice", "key-1", FINGERPRINT, RECENT) is None
    in_flight = store.begin_idempotent("alice", "key-1", "sha256:body-2", RECENT + 1)
    assert in_flight == {
        "fingerprint": FINGERPRINT, "status": None, "body": None, "headers": {},
        "created_at": RECENT,
    }
    body, headers = {"id": "s-1", "status": "queued"}, {"Location": "/v1/sessions/s-1"}
    store.finish_idempotent("alice", "key-1", 202, body, headers)
    store.finish_idempotent("alice", "key-1", 500, {"error": "late"}, {})
    replay = store.begin_idempotent("alice", "key-1", FINGERPRINT, RECENT + 2)
    assert replay == {
        "fingerprint": FINGERPRINT, "status": 202, "body": body, "headers": headers,
        "created_at": RECENT,
    }


def test_idempotency_keys_belong_to_their_owner(store):
    assert store.begin_idempotent("alice", "key-1", FINGERPRINT, RECENT) is None
    assert store.begin_idempotent("bob", "key-1", FINGERPRINT, RECENT) is None
    assert store.begin_idempotent("", "key-1", FINGERPRINT, RECENT) is None
    assert store.begin_idempotent("", "key-1", FINGERPRINT, RECENT)["status"] is None


def test_release_forgets_a_reservation_or_an_answer(store):
    store.begin_idempotent("alice", "key-1", FINGERPRINT, RECENT)
    store.begin_idempotent("bob", "key-1", FINGERPRINT, RECENT)
    store.release_idempotent("alice", "key-1")
    assert store.begin_idempotent("alice", "key-1", "sha256:body-2", RECENT + 1) is None
    assert store.begin_idempotent("bob", "key-1", FINGERPRINT, RECENT + 1)["status"] is None
    store.finish_idempotent("alice", "key-1", 202, {"id": "s-1"}, {})
    store.release_idempotent("alice", "key-1")  # an expired answer that no sweep removed yet
    store.release_idempotent("alice", "no-such-key")
    assert store.begin_idempotent("alice", "key-1", FINGERPRINT, RECENT + 2) is None


def test_a_reservation_whose_request_died_may_be_reclaimed(store):
    store.begin_idempotent("alice", "stale", FINGERPRINT, RECENT)
    store.begin_idempotent("alice", "fresh", FINGERPRINT, RECENT + 50)
    store.begin_idempotent("alice", "done", FINGERPRINT, RECENT)
    store.finish_idempotent("alice", "done", 202, {}, {})
    later = RECENT + 100

    def begin(key: str) -> dict | None:
        return store.begin_idempotent("alice", key, "sha256:body-2", later, reclaim_after=60)

    assert begin("stale") is None
    assert begin("stale")["created_at"] == later  # the reclaimer's own reservation
    assert begin("stale")["fingerprint"] == "sha256:body-2"
    assert begin("fresh")["status"] is None
    assert begin("done")["status"] == 202


def test_purge_idempotency_deletes_old_records(store):
    for offset, key in enumerate(("old-1", "old-2", "young")):
        store.begin_idempotent("alice", key, FINGERPRINT, RECENT + offset * 10)
    store.finish_idempotent("alice", "old-1", 202, {}, {})
    assert store.purge_idempotency(created_before=RECENT + 15) == 2
    assert store.begin_idempotent("alice", "old-1", FINGERPRINT, RECENT + 30) is None
    young = store.begin_idempotent("alice", "young", FINGERPRINT, RECENT + 30)
    assert young["created_at"] == RECENT + 20


def test_concurrent_requests_with_one_key_reserve_it_once(store):
    threads = 10
    start = threading.Barrier(threads)

    def begin(number: int) -> dict | None:
        start.wait(timeout=30)
        return store.begin_idempotent("alice", "key-1", f"sha256:{number}", RECENT + number)

    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(begin, range(threads)))
    reserved = [number for number, outcome in enumerate(outcomes) if outcome is None]
    assert len(reserved) == 1
    winner = f"sha256:{reserved[0]}"
    assert all(outcome["fingerprint"] == winner for outcome in outcomes if outcome is not None)


# API keys.


def api_key(key_id: str, created_at: float = NOW, **fields) -> dict:
    return {
        "id": key_id, "name": f"{key_id} key", "scope": "client", "key_hash": f"hash-{key_id}",
        "created_at": created_at, "revoked_at": None, "callback_url": None,
        "priority": "interactive", **fields,
    }


def test_api_keys_are_found_by_hash_and_listed_oldest_first(store):
    keys = [
        api_key("k-2", NOW + 2, scope="admin"),
        api_key("k-1", NOW + 1, callback_url="https://example.test/hook", priority="batch"),
        api_key("k-3", NOW + 3),
    ]
    for key in keys:
        store.create_api_key(key)
    assert store.find_api_key("hash-k-1") == keys[1]
    assert store.find_api_key("hash-k-2")["scope"] == "admin"
    assert store.find_api_key("no-such-hash") is None
    assert store.list_api_keys() == [keys[1], keys[0], keys[2]]


def test_a_revoked_api_key_is_still_found_with_its_revocation(store):
    store.create_api_key(api_key("k-1"))
    assert store.revoke_api_key("k-1", NOW + 5)
    assert not store.revoke_api_key("k-1", NOW + 6)
    assert not store.revoke_api_key("no-such-key", NOW + 6)
    assert store.find_api_key("hash-k-1")["revoked_at"] == NOW + 5
    assert store.list_api_keys()[0]["revoked_at"] == NOW + 5


def test_api_key_hashes_and_ids_are_unique(store):
    store.create_api_key(api_key("k-1"))
    with pytest.raises(DuplicateKey):
        store.create_api_key(api_key("k-2", key_hash="hash-k-1"))
    with pytest.raises(DuplicateKey):
        store.create_api_key(api_key("k-1", key_hash="hash-other"))
    with pytest.raises(ValueError):
        store.create_api_key(api_key("k-3", scope="root"))
    assert [key["id"] for key in store.list_api_keys()] == ["k-1"]


# Upgrading stores written by older versions.


def test_an_older_sqlite_file_upgrades_in_place(tmp_path):
    path = tmp_path / "council.sqlite3"
    session = new_session("Why is the sky blue?", MEMBERS, CHAIRMAN, owner="alice", now=NOW)
    with sqlite3.connect(path) as conn:
        for statement in sqlite_schema.MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO sessions (id, owner, title, created_at, updated_at, members, chairman)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (session["id"], "alice", session["title"], NOW, NOW, json.dumps(MEMBERS), CHAIRMAN),
        )
        conn.execute(
            "INSERT INTO rounds (session_id, round_no, question, status, created_at, queued_at)"
            " VALUES (?, 1, ?, 'queued', ?, ?)",
            (session["id"], "Why is the sky blue?", NOW, NOW),
        )
    conn.close()
    store = SqliteStore(path)
    try:
        assert store.get_session(session["id"]) == session
        assert store.update_session(session["id"], {"pinned": True}, NOW + 1)["pinned"]
        assert ids_of(store.list_sessions(SessionQuery(pinned=True), 10)) == [session["id"]]
        store.begin_idempotent("alice", "key-1", FINGERPRINT, NOW)
        store.create_api_key(api_key("k-1"))
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == sqlite_schema.SCHEMA_VERSION
            indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        conn.close()
        assert "sessions_by_owner" not in indexes
        assert {"sessions_listed_by_owner", "sessions_by_share_token"} <= indexes
    finally:
        store.close()
    SqliteStore(path).close()  # opening an upgraded file again changes nothing


@pytest.fixture(params=["mongomock", "mongodb"])
def mongo_database(request: pytest.FixtureRequest) -> Iterator[tuple[pymongo.MongoClient, str]]:
    """Yield a client and an empty database name, for tests of MongoDB's own machinery."""
    if request.param == "mongomock":
        yield mongomock.MongoClient(), "llm_council_test"
        return
    with real_mongodb() as found:
        yield found


def test_older_mongodb_documents_upgrade_in_place(mongo_database):
    client, name = mongo_database
    db = client[name]
    session = new_session("Why is the sky blue?", MEMBERS, CHAIRMAN, owner="alice", now=NOW)
    old_fields = ("owner", "title", "created_at", "updated_at", "members", "chairman", "rounds",
                  "status")
    db["sessions"].insert_one({"_id": session["id"], **{f: session[f] for f in old_fields}})
    db["sessions"].create_index([("owner", 1), ("created_at", -1), ("_id", -1)],
                                name="owner_newest_first")
    db["idempotency"].insert_one({"owner": "", "key": "key-1", "fingerprint": FINGERPRINT,
                                  "status": None, "body": None, "headers": {},
                                  "created_at": RECENT})
    db["idempotency"].create_index("created_at", name="expire", expireAfterSeconds=86_400)
    store = MongoStore(client, name)
    assert store.get_session(session["id"]) == session
    assert ids_of(store.list_sessions(SessionQuery(pinned=False), 10)) == [session["id"]]
    for collection, created_at in (("sessions", NOW), ("idempotency", RECENT)):
        stamp = db[collection].find_one()["created_on"]
        assert stamp.replace(tzinfo=dt.UTC).timestamp() == created_at
    assert "owner_newest_first" not in db["sessions"].index_information()
    assert "expire" not in db["idempotency"].index_information()
    assert db["meta"].find_one({"_id": "schema"})["version"] == mongo_schema.SCHEMA_VERSION
    MongoStore(client, name)  # opening an upgraded database again changes nothing


def test_mongodb_expires_records_by_a_bson_date(mongo_database):
    client, name = mongo_database
    store = MongoStore(client, name)
    session = add_session(store)
    store.begin_idempotent("alice", "key-1", FINGERPRINT, RECENT)
    for collection in ("sessions", "idempotency"):
        assert isinstance(client[name][collection].find_one()["created_on"], dt.datetime)
    expiry = client[name]["idempotency"].index_information()["expire_on"]
    assert expiry["key"] == [("created_on", 1)]
    assert expiry["expireAfterSeconds"] == mongo_schema.IDEMPOTENCY_TTL_S
    assert "created_on" not in store.get_session(session["id"])


def test_mongodb_session_retention_follows_the_setting(mongo_database):
    client, name = mongo_database
    indexes = client[name]["sessions"].index_information
    MongoStore(client, name)
    assert mongo_schema.SESSION_TTL_INDEX not in indexes()
    MongoStore(client, name, retention_s=2.5 * 86_400)
    expiry = indexes()[mongo_schema.SESSION_TTL_INDEX]
    assert (expiry["key"], expiry["expireAfterSeconds"]) == ([("created_on", 1)], 216_000)
    MongoStore(client, name, retention_s=None)
    assert mongo_schema.SESSION_TTL_INDEX not in indexes()


def test_a_changed_retention_is_applied_to_the_ttl_index_in_place(mongo_database):
    client, name = mongo_database
    if isinstance(client, mongomock.MongoClient):
        pytest.skip("mongomock has no collMod: this runs on real MongoDB only")
    indexes = client[name]["sessions"].index_information
    MongoStore(client, name, retention_s=2 * 86_400)
    MongoStore(client, name, retention_s=86_400)
    assert indexes()[mongo_schema.SESSION_TTL_INDEX]["expireAfterSeconds"] == 86_400


def test_sessions_past_their_retention_expire():
    # mongomock applies TTL indexes as it reads; real MongoDB's monitor runs once a minute.
    store = MongoStore(mongomock.MongoClient(), "llm_council_test", retention_s=86_400)
    old = add_session(store, now=RECENT - 86_400 - 60)
    young = add_session(store, now=RECENT)
    assert store.get_session(old["id"]) is None
    assert ids_of(store.list_sessions(SessionQuery(), 10)) == [young["id"]]


def test_session_retention_is_days_or_forever():
    assert load_settings({}).session_retention_s is None
    assert load_settings({"SESSION_RETENTION_DAYS": "0"}).session_retention_s is None
    assert load_settings({"SESSION_RETENTION_DAYS": "1.5"}).session_retention_s == 129_600
    with pytest.raises(SettingsError):
        load_settings({"SESSION_RETENTION_DAYS": "-1"})


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


def test_services_on_sqlite_never_import_pymongo():
    # ~6 MiB in every API and worker process that has no use for it.
    code = ("import sys, api, api.resources, workers.app, workers.tasks, workers.runtime; "
            "from shared.store import open_store; print('pymongo' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


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
    session_ids = ids_of(store.list_sessions(SessionQuery(), RACE_SESSIONS))
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


def test_queued_and_abandoned_rounds_have_their_own_reoffer_periods(store):
    waiting = add_session(store, now=NOW)
    abandoned = add_session(store, now=NOW)
    claim(store, abandoned, now=NOW)
    later = NOW + LEASE_S + 1
    stale = store.stale_rounds(now=later, queued_before=NOW, reoffer_before=later)
    assert stale == [(abandoned["id"], 1)]
    stale = store.stale_rounds(now=later, queued_before=later, reoffer_before=NOW)
    assert stale == [(waiting["id"], 1)]


def test_a_round_marked_never_offered_is_stale_at_once(store):
    fresh = add_session(store, now=NOW)
    assert store.stale_rounds(now=NOW + 1, queued_before=NOW - 100) == []
    store.touch_queued(fresh["id"], 1, 0.0)
    assert store.stale_rounds(now=NOW + 1, queued_before=NOW - 100) == [(fresh["id"], 1)]


def test_every_session_write_either_drops_the_cache_or_only_changes_an_unfinished_round():
    from shared.store.cached import ROUND_WRITES, SESSION_WRITES

    writes = {name for name, method in inspect.getmembers(Store, inspect.isfunction)
              if list(inspect.signature(method).parameters)[1:2] == ["session_id"]
              and not name.startswith("get_")}
    assert SESSION_WRITES.isdisjoint(ROUND_WRITES)
    assert writes == SESSION_WRITES | ROUND_WRITES, "classify a new write in shared.store.cached"
