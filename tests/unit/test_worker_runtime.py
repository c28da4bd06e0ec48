"""The worker's runtime: store calls on the store threads, and the event loop it runs rounds on."""
from __future__ import annotations

import asyncio
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import uvloop

from shared.logs import bind_log_ids, log_ids, unbind_log_ids
from shared.records import new_session
from shared.settings import SettingsError, load_settings
from shared.store.sqlite import SqliteStore
from workers.runtime import StoreOnThreads, new_event_loop


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


def test_the_worker_loop_is_uvloops_unless_asyncios_is_asked_for():
    fast, standard = new_event_loop("uvloop"), new_event_loop("asyncio")
    try:
        assert isinstance(fast, uvloop.Loop)
        assert not isinstance(standard, uvloop.Loop)
        assert fast.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
    finally:
        fast.close()
        standard.close()


def test_without_uvloop_installed_the_worker_says_so_and_runs_asyncios(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes ``import uvloop`` fail
    loop = new_event_loop("uvloop")
    loop.close()
    assert not isinstance(loop, uvloop.Loop)
    assert "uvloop is not installed" in caplog.text


def test_an_unknown_event_loop_is_refused_by_name():
    assert load_settings({"WORKER_EVENT_LOOP": "Asyncio"}).worker_event_loop == "asyncio"
    with pytest.raises(SettingsError, match="WORKER_EVENT_LOOP"):
        load_settings({"WORKER_EVENT_LOOP": "trio"})
