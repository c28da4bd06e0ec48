"""Log ids across threads and event loops, and the multiprocess metrics folder."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading

import pytest

from shared.logs import BoundIds, bound_log_ids, carrying_log_ids, log_ids
from shared.prometheus import remove_stale_files, reset_folder


@pytest.fixture
def loop():
    """An event loop running in its own thread, as a worker process has."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


async def ids_inside() -> dict:
    await asyncio.sleep(0)
    children = await asyncio.gather(asyncio.to_thread(log_ids), _child())
    return {"here": log_ids(), "thread": children[0], "task": children[1]}


async def _child() -> dict:
    return log_ids()


def test_a_tasks_ids_reach_its_coroutine_on_the_loop_and_all_it_starts(loop):
    with bound_log_ids(request_id="r1", session_id="s1", round_no=1):
        carried = asyncio.run_coroutine_threadsafe(
            carrying_log_ids(log_ids(), ids_inside()), loop).result(5)
    expected = {"request_id": "r1", "session_id": "s1", "round_no": 1}
    assert carried == {"here": expected, "thread": expected, "task": expected}
    assert log_ids() == {}
    assert asyncio.run_coroutine_threadsafe(ids_inside(), loop).result(5)["here"] == {}


def test_ids_bound_in_one_thread_stay_out_of_the_others():
    seen = {}
    with bound_log_ids(task_id="t1"):
        other = threading.Thread(target=lambda: seen.update(log_ids()))
        other.start()
        other.join(5)
    assert seen == {}


def test_bound_ids_go_on_every_record_unless_the_record_names_its_own():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "message", (), None)
    record.model = "sim/alpha"
    with bound_log_ids(request_id="r1", model="sim/beta", question="never bound"):
        assert BoundIds().filter(record)
    assert (record.request_id, record.model) == ("r1", "sim/alpha")
    assert not hasattr(record, "question")


def test_reset_folder_removes_only_sample_files(tmp_path):
    for name in ("counter_12.db", "histogram_34.db", "gauge_livesum_56.db", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    reset_folder(tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]
    reset_folder(tmp_path / "new")
    assert (tmp_path / "new").is_dir()


def test_stale_files_are_those_of_processes_that_stopped(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)
    live = tmp_path / f"counter_{os.getpid()}.db"
    (tmp_path / f"counter_{dead_pid}.db").write_bytes(b"")
    (tmp_path / f"gauge_liveall_{dead_pid}.db").write_bytes(b"")
    live.write_bytes(b"")
    assert remove_stale_files(tmp_path) == 2
    assert [path.name for path in tmp_path.iterdir()] == [live.name]


def test_gunicorn_config_leaves_prometheus_unimported_in_the_master():
    # prometheus_client picks its multiprocess mode when first imported: in the workers.
    code = "import sys, api.gunicorn_conf; print('prometheus_client' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
