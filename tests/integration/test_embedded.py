"""The README's first command: ``llm-council up`` runs everything with no outside service."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.processes import LoggedProcess, free_port, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def embedded(tmp_path):
    """Run ``llm-council up`` with no Redis, MongoDB or provider key configured."""
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if key not in {"REDIS_URL", "MONGODB_URL", "BROKER_URL", "OPENROUTER_API_KEY"}}
    argv = [sys.executable, "-m", "shared.cli", "up", "--port", str(port),
            "--data-dir", str(tmp_path / "data"), "--simulator-latency-ms", "20"]
    process = LoggedProcess(argv, env, "llm-council up")
    process.wait_for_line("LLM Council is up", timeout_s=60)
    yield f"http://127.0.0.1:{port}", process, tmp_path / "data"
    process.stop()


def test_up_runs_a_round_end_to_end_and_stops_everything_on_sigterm(embedded):
    url, process, data_dir = embedded
    ask = subprocess.run(
        [sys.executable, "-m", "shared.cli", "ask", "--url", url, "Why is the sky blue?"],
        capture_output=True, text=True, timeout=120,
    )
    assert ask.returncode == 0, ask.stderr
    assert "status: completed" in ask.stdout
    assert "ranking (mean rank" in ask.stdout
    assert "[simulated" in ask.stdout.split("final answer", 1)[1]
    assert (data_dir / "council.sqlite3").exists()
    assert httpx.get(f"{url}/ready").json()["status"] == "ready"

    os.killpg(process.process.pid, signal.SIGTERM)
    assert process.process.wait(30) == 0
    wait_for(lambda: not _children_alive(data_dir), "every child process to exit")


def test_a_second_sigterm_while_stopping_leaves_no_child_running(embedded):
    _, process, data_dir = embedded
    os.killpg(process.process.pid, signal.SIGTERM)
    process.wait_for_line("Worker exiting")  # the stop is under way
    os.killpg(process.process.pid, signal.SIGTERM)
    assert process.process.wait(30) == 0
    wait_for(lambda: not _children_alive(data_dir), "every child process to exit")


def test_the_alive_check_sees_the_running_system(embedded):
    _, _, data_dir = embedded
    assert len(_children_alive(data_dir)) >= 5  # redis, simulator, worker, beat, gunicorn


def _children_alive(data_dir: Path) -> list[int]:
    """Return the pids of processes that name the data folder in their command or environment."""
    marker = str(data_dir.resolve()).encode()
    alive = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            seen = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:
            continue
        if marker in seen:
            alive.append(int(proc.name))
    return alive
