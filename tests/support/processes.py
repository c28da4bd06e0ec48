"""Real processes for integration tests: a Redis server, the simulator, Celery workers, beat."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import redis

from shared.embedded import redis_server_binary, worker_arguments
from shared.queue import QUEUES
from shared.settings import load_settings

STARTUP_TIMEOUT_S = 30.0


def free_port() -> int:
    """Return a TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], object], what: str, timeout_s: float = STARTUP_TIMEOUT_S):
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception:  # noqa: BLE001 - anything means "not yet"
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


class LoggedProcess:
    """A child process whose stderr lines are kept for the test to read."""

    def __init__(self, argv: list[str], env: dict, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, text: str, timeout_s: float = STARTUP_TIMEOUT_S) -> str:
        """Wait until the process prints a line containing ``text``; return it."""

        def found():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: " + "\n".join(self.lines[-30:]))
            return next((line for line in self.lines if text in line), None)

        return wait_for(found, f"{self.name} to print {text!r}", timeout_s)

    def kill(self) -> None:
        """Send SIGKILL, as a crashing machine would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._close_output()

    def stop(self) -> None:
        """Send SIGTERM and wait; SIGKILL after a grace period."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_output()

    def _close_output(self) -> None:
        self._reader.join(timeout=5)
        self.process.stdout.close()


class RedisServer:
    """A throwaway Redis server on a free TCP port, which a test may stop and restart."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        argv = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "yes", "--dir", str(self.data_dir)]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis.from_url(self.url)
        wait_for(client.ping, "redis-server")
        client.close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)


class Simulator:
    """The project's simulated provider, served over real HTTP by a child process."""

    def __init__(self, latency_ms: int = 20) -> None:
        argv = [sys.executable, "-m", "shared.cli", "simulate", "--port", "0",
                "--latency-ms", str(latency_ms)]
        self.process = LoggedProcess(argv, dict(os.environ), "simulator")
        line = self.process.wait_for_line("http://")
        self.base_url = line[line.index("http://"):].strip()
        self.root = self.base_url.removesuffix("/v1")
        self.http = httpx.Client(base_url=self.root, timeout=10)

    def stats(self) -> dict:
        return self.http.get("/_sim/stats").raise_for_status().json()

    def requests(self, model: str | None = None, limit: int = 1000) -> list[dict]:
        params = {"limit": limit, **({"model": model} if model else {})}
        return self.http.get("/_sim/requests", params=params).raise_for_status().json()

    def set_faults(self, **faults: object) -> None:
        self.http.post("/_sim/faults", json=faults).raise_for_status()

    def reset(self) -> None:
        self.http.delete("/_sim/faults").raise_for_status()
        self.http.post("/_sim/reset").raise_for_status()

    def stop(self) -> None:
        self.http.close()
        self.process.stop()


def celery_argv(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.app", *arguments]


def start_worker(
    env: dict, name: str, queues: Sequence[str] = QUEUES, arguments: Sequence[str] = ()
) -> LoggedProcess:
    """Start a real Celery worker process (a pool consuming ``queues``) as the Procfile does.

    ``arguments`` go after the usual ones (``--pool prefork`` overrides the thread pool).
    """
    settings = load_settings(env)
    argv = [sys.executable, "-m", "workers", *worker_arguments(settings, queues), *arguments,
            "--hostname", f"{name}@%h"]
    worker = LoggedProcess(argv, env, name)
    worker.wait_for_line("ready")
    return worker


def start_api(
    env: dict, threads: int = 16, workers: int = 1, arguments: Sequence[str] = ()
) -> tuple[LoggedProcess, str]:
    """Start the API under gunicorn (gthread, as the Procfile runs it); return its URL."""
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers",
            str(workers), "--worker-class", "gthread", "--threads", str(threads), *arguments,
            "api:create_app()"]
    api = LoggedProcess(argv, env, f"api:{port}")
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(f"{url}/health").status_code == 200, "the API to answer")
    return api, url


def start_beat(env: dict, schedule: Path) -> LoggedProcess:
    """Start Celery beat, which runs the sweeper on its schedule."""
    beat = LoggedProcess(celery_argv("beat", "--loglevel", "INFO", "-s", str(schedule)), env,
                         "beat")
    beat.wait_for_line("beat: Starting")
    return beat
