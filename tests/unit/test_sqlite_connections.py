"""The SQLite store lends its connections to threads in turn: not one per thread that called."""

from __future__ import annotations

import os
import threading

from shared.records import new_session
from shared.store.sqlite import SqliteStore


def _read_from_new_threads(store: SqliteStore, session_id: str, count: int) -> list[dict]:
    read: list[dict] = []
    for _ in range(count):  # one after another: no two calls at once
        reader = threading.Thread(target=lambda: read.append(store.get_session(session_id)))
        reader.start()
        reader.join()
    return read


def test_threads_that_call_one_after_another_share_one_connection(tmp_path):
    store = SqliteStore(tmp_path / "council.sqlite3")
    session = new_session("Why is the sky blue?", ["a/b", "c/d"], "e/f")
    store.create_session(session)
    opened = len(store._opened)
    read = _read_from_new_threads(store, session["id"], 50)
    assert [s["id"] for s in read] == [session["id"]] * 50
    assert len(store._opened) == opened == 1
    store.close()


def test_calls_at_once_get_connections_of_their_own(tmp_path):
    store = SqliteStore(tmp_path / "council.sqlite3")
    session = new_session("Why is the sky blue?", ["a/b", "c/d"], "e/f")
    store.create_session(session)
    inside = threading.Barrier(3)

    def read_while_others_read() -> None:
        with store._read() as conn:  # holds its connection until all three are inside
            inside.wait(timeout=10)
            conn.execute("SELECT count(*) FROM sessions").fetchone()

    readers = [threading.Thread(target=read_while_others_read) for _ in range(3)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert len([c for pid, c in store._opened if pid == os.getpid()]) == 3
    assert store.get_session(session["id"])["id"] == session["id"]  # a lent one, given back
    assert len(store._opened) == 3
    store.close()
