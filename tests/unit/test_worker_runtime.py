"""Celery's threads reach the store through the store threads: one SQLite connection each."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.logs import bind_log_ids, log_ids, unbind_log_ids
from shared.records import new_session
from shared.settings import (
    MONGODB_POOL_SIZE,
    SQLITE_STORE_THREADS,
    SettingsError,
    load_settings,
)
from shared.store.sqlite import SqliteStore
from workers.runtime import StoreOnThreads


def test_many_calling_threads_share_the_store_threads_connections(tmp_path):
    store = SqliteStore(tmp_path / "council.sqlite3")
    session = new_session("Why is the sky blue?", ["a/b", "c/d"], "e/f")
    store.create_session(session)
    threads = ThreadPoolExecutor(4, "store")
    on_threads = StoreOnThreads(store, threads)
    read = []
    callers = [threading.Thread(target=lambda: read.append(on_threads.get_session(session["id"])))
               for _ in range(50)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert [s["id"] for s in read] == [session["id"]] * 50
    assert len(store._opened) <= 1 + 4  # the creating thread's, and one per store thread
    threads.shutdown()


def test_a_call_carries_the_callers_log_ids(tmp_path):
    class Probe:
        def ids(self):
            return threading.current_thread().name, log_ids()

    threads = ThreadPoolExecutor(1, "store")
    token = bind_log_ids(request_id="r-1")
    try:
        name, ids = StoreOnThreads(Probe(), threads).ids()
    finally:
        unbind_log_ids(token)
    assert name.startswith("store") and ids.get("request_id") == "r-1"
    threads.shutdown()


def test_sqlite_gets_few_store_threads_and_mongodb_a_larger_pool_unless_set():
    assert load_settings({}).effective_store_pool_size == SQLITE_STORE_THREADS
    mongo = load_settings({"MONGODB_URL": "mongodb://db.example:27017"})
    assert mongo.effective_store_pool_size == MONGODB_POOL_SIZE > SQLITE_STORE_THREADS
    assert load_settings({"STORE_POOL_SIZE": "12"}).effective_store_pool_size == 12
    with pytest.raises(SettingsError, match="STORE_POOL_SIZE"):
        load_settings({"STORE_POOL_SIZE": "0"})
