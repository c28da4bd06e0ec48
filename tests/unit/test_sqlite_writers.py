"""Many threads of one process write to the SQLite store at once without giving up on the lock."""

from __future__ import annotations

import threading
import time

from shared import records
from shared.store.base import StoreUnavailable
from shared.store.sqlite import SqliteStore

THREADS = 64
WRITES_EACH = 20
SHORT_BUSY_TIMEOUT_S = 0.02  # far shorter than the wait of the last of 64 writers in line


def test_writers_of_one_process_queue_for_the_lock_instead_of_timing_out(tmp_path):
    store = SqliteStore(tmp_path / "council.sqlite3", busy_timeout_s=SHORT_BUSY_TIMEOUT_S)
    ids = []
    for number in range(THREADS):
        session = records.new_session(f"Question {number}?", ["a", "b", "c", "d"], "e")
        store.create_session(session)
        store.claim_round(session["id"], 1, time.time(), time.time() + 60, 3)
        ids.append(session["id"])
    refused: list[StoreUnavailable] = []

    def write(session_id: str) -> None:
        for number in range(WRITES_EACH):
            answer = {"member": f"m{number}", "content": "x" * 2000, "error": None,
                      "usage": {}, "latency_ms": 1}
            try:
                store.save_answer(session_id, 1, answer)
            except StoreUnavailable as error:
                refused.append(error)

    threads = [threading.Thread(target=write, args=(session_id,)) for session_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()

    assert refused == []
    reopened = SqliteStore(tmp_path / "council.sqlite3")
    assert all(
        len(reopened.get_session(session_id)["rounds"][0]["answers"]) == WRITES_EACH
        for session_id in ids
    )
    reopened.close()
