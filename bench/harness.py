"""Start the real system for a benchmark, on loopback, in a scratch folder, and stop it again.

``System`` starts what the Procfile runs: a Redis server, the API under gunicorn (gthread),
Celery worker processes and beat, plus the simulated provider with a fixed or spread latency.
The worker pool is chosen per run (``threads``, ``gevent`` or ``prefork``), and so is the Celery
app, so that ``bench.variants`` can stand in for ``workers.app``. Service processes are grouped
by role (api, worker, beat, redis) so their CPU and memory can be read from ``/proc``; the
simulator and the load generator are not services and are never counted.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
from celery import Celery

from bench import procstat
from shared.embedded import redis_server_binary
from tests.support.processes import free_port as _free_port
from tests.support.processes import wait_for

ROOT = Path(__file__).resolve().parents[1]
GC_PROBE = ROOT / "bench" / "gcprobe"
MEMBERS = ("sim/alpha", "sim/beta", "sim/gamma", "sim/delta")
CHAIRMAN = "sim/chair"
START_TIMEOUT_S = 60.0


def _wait_until(check: Callable[[], object], what: str, timeout_s: float = START_TIMEOUT_S):
    """Wait for a part of the system to come up (longer than tests wait: the bench is busy)."""
    return wait_for(check, what, timeout_s)
STOP_TIMEOUT_S = 20.0
POOLS = ("threads", "gevent", "prefork")


@dataclass(frozen=True)
class SystemOptions:
    """What to start: the worker pool and its size, the API's size, the provider's latency."""

    pool: str = "threads"
    worker_processes: int = 1  # Celery worker instances (prefork: children of one); 0: none
    worker_concurrency: int = 500  # rounds in flight per instance (prefork: per child, 1)
    provider_connections: int | None = None  # default: one per member call in flight
    api_workers: int = 2
    api_threads: int = 256  # as the Procfile: waiting requests hold a thread each
    latency_ms: float = 200.0
    jitter_ms: float = 0.0
    log_level: str = "INFO"
    celery_app: str = "workers.app"
    settings: dict[str, str] = field(default_factory=dict)  # more service settings
    worker_env: dict[str, str] = field(default_factory=dict)  # the workers' only (measuring)

    @property
    def floor_ms(self) -> float:
        """Return the simulated latency of a round's three stages, one after another.

        Stages 1 and 2 wait for the slowest of four calls: with latency spread uniformly over
        ``latency ± jitter``, the expected slowest of four is ``latency + 0.6 * jitter``.
        """
        slowest_of_members = self.latency_ms + 0.6 * self.jitter_ms
        return 2 * slowest_of_members + self.latency_ms


@dataclass
class Service:
    """One started process (group) of the system."""

    name: str
    role: str
    process: subprocess.Popen
    log: Path


class System:
    """The running system: ``with System(options) as system: ...``."""

    def __init__(self, options: SystemOptions, workdir: Path | None = None) -> None:
        if options.pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}")
        self.options = options
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="llm-council-bench-"))
        self.services: list[Service] = []
        self.redis_url = ""
        self.sim_root = ""
        self.api_url = ""

    def __enter__(self) -> System:
        # A SIGTERM (``timeout``, a CI runner) must still stop the services: they run in their
        # own sessions and would outlive this process.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            self.start()
        except BaseException:
            for service in self.services:
                tail = service.log.read_text(errors="replace").splitlines()[-15:]
                print(f"--- {service.name} (exit {service.process.poll()}) ---", *tail,
                      sep="\n", file=sys.stderr)
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Starting.

    def start(self) -> None:
        """Start Redis, the simulator, the workers and the API; return once all answer."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._start_redis()
        self._start_simulator()
        env = self.environment()
        instances = 1 if self.options.pool == "prefork" else self.options.worker_processes
        for number in range(instances if self.options.worker_processes else 0):
            self._spawn(f"worker{number + 1}", "worker", self._worker_argv(number),
                        {**env, **self.options.worker_env})
        if self.options.worker_processes:
            self._wait_for_workers()
            # Beat runs the sweeper, which re-offers rounds a failed task left behind.
            schedule = str(self.workdir / "celerybeat-schedule")
            self._spawn("beat", "beat", [sys.executable, "-m", "celery", "-A",
                                         self.options.celery_app, "beat", "--loglevel", "WARNING",
                                         "-s", schedule], env)
        self._start_api(env)

    def environment(self) -> dict[str, str]:
        """Return the settings every service process of the run shares."""
        options = self.options
        connections = options.provider_connections or max(
            64, len(MEMBERS) * options.worker_concurrency
        )
        return {
            **os.environ,
            "PYTHONPATH": f"{GC_PROBE}{os.pathsep}{ROOT}",
            "BENCH_GC_DIR": str(self.gc_dir),
            "ENVIRONMENT": "development",
            "DATA_DIR": str(self.workdir / "data"),
            "REDIS_URL": self.redis_url,
            "OPENROUTER_BASE_URL": f"{self.sim_root}/v1",
            "OPENROUTER_API_KEY": "",
            "COUNCIL_MEMBERS": ",".join(MEMBERS),
            "COUNCIL_CHAIRMAN": CHAIRMAN,
            "WORKER_CONCURRENCY": str(options.worker_concurrency),
            "PROVIDER_MAX_CONNECTIONS": str(connections),
            "LOG_LEVEL": options.log_level,
            # The load generator is one client sending up to thousands of requests a second. The
            # limits stay on, at the size of production's (a moving window of that many
            # entries costs Redis a binary search with LINDEX on every request).
            "RATE_LIMIT_REQUESTS": "10000",
            "SUBMIT_RATE_LIMIT_REQUESTS": "10000",
            "RATE_LIMIT_WINDOW": "1",
            **options.settings,
        }

    def _start_redis(self) -> None:
        port = _free_port()
        argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "yes", "--maxmemory-policy", "noeviction",
                "--dir", str(self.workdir)]
        self._spawn("redis", "redis", argv, dict(os.environ))
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(self.redis_url)
        _wait_until(client.ping, "redis-server")
        client.close()

    def _start_simulator(self) -> None:
        options = self.options
        argv = [sys.executable, "-m", "shared.simulator", "--port", "0",
                "--latency-ms", str(options.latency_ms), "--jitter-ms", str(options.jitter_ms)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        service = self._spawn("simulator", "simulator", argv, env)

        def announced() -> str | None:
            text = service.log.read_text()
            return text[text.index("http://"):].split()[0] if "http://" in text else None

        self.sim_root = _wait_until(announced, "the simulator").removesuffix("/v1")

    def _worker_argv(self, number: int) -> list[str]:
        options = self.options
        concurrency = (options.worker_processes if options.pool == "prefork"
                       else options.worker_concurrency)
        # As the Procfile runs it (``python -m workers``); another app through ``celery``.
        command = (["workers"] if options.celery_app == "workers.app"
                   else ["celery", "-A", options.celery_app, "worker"])
        return [sys.executable, "-m", *command, "--pool", options.pool,
                "--concurrency", str(concurrency), "-E", "-Q", "interactive",
                "--loglevel", options.log_level,
                "--without-gossip", "--without-mingle", "--hostname", f"bench{number + 1}@%h"]

    def _wait_for_workers(self) -> None:
        app = Celery("bench", broker=self.redis_url, set_as_current=False)
        expected = 1 if self.options.pool == "prefork" else self.options.worker_processes
        try:
            _wait_until(lambda: len(app.control.ping(timeout=0.5)) >= expected, "the workers")
        finally:
            app.close()

    def consume(self, on: bool) -> None:
        """Make every worker stop (or start again) taking rounds from the queue."""
        expected = 1 if self.options.pool == "prefork" else self.options.worker_processes
        app = Celery("bench", broker=self.redis_url, set_as_current=False)
        try:
            control = app.control.add_consumer if on else app.control.cancel_consumer
            replies = control("interactive", reply=True, timeout=5, limit=expected)
        finally:
            app.close()
        if len(replies) < expected:
            raise RuntimeError(f"not every worker answered: {replies}")

    def _start_api(self, env: dict[str, str]) -> None:
        port = _free_port()
        options = self.options
        argv = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                "--workers", str(options.api_workers), "--worker-class", "gthread",
                "--threads", str(options.api_threads),
                "--config", "python:api.gunicorn_conf",  # as the Procfile: its hooks too
                "api:create_app()"]
        api = self._spawn("api", "api", argv, env)
        self.api_url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            if api.process.poll() is not None:
                raise RuntimeError("the API exited")
            return httpx.get(f"{self.api_url}/health", timeout=1).is_success

        _wait_until(healthy, "the API")

    def _spawn(self, name: str, role: str, argv: list[str], env: dict[str, str]) -> Service:
        log = self.workdir / f"{name}.log"
        with log.open("w") as out:
            process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        service = Service(name, role, process, log)
        self.services.append(service)
        return service

    # Reading.

    def pids(self, role: str) -> list[int]:
        """Return the root pids of the live services of a role."""
        return [s.process.pid for s in self.services if s.role == role
                and s.process.poll() is None]

    @property
    def gc_dir(self) -> Path:
        """Return the folder the services time their garbage collections in (``bench/gcprobe``)."""
        folder = self.workdir / "gc"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def gc_s_by_role(self) -> dict[str, float]:
        """Return the seconds each service role has spent collecting garbage so far."""
        spent = {}
        for role in ("api", "worker", "beat"):
            pids = [pid for root in self.pids(role) for pid in procstat.descendants(root)]
            spent[role] = sum(_gc_seconds(self.gc_dir / str(pid)) for pid in pids)
        return spent

    def cpu_s_by_role(self) -> dict[str, float]:
        """Return the CPU seconds each role has used so far (services, then the simulator)."""
        roles = ("api", "worker", "beat", "redis", "simulator")
        return {role: procstat.tree_cpu_s(self.pids(role)) for role in roles}

    def worker_processes(self) -> list[int]:
        """Return every worker process: the Celery instances and any prefork children."""
        return [pid for root in self.pids("worker") for pid in procstat.descendants(root)]

    def redis_commands(self) -> dict[str, int]:
        """Return how many times Redis ran each command so far (``INFO commandstats``)."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            stats = client.info("commandstats")
        finally:
            client.close()
        return {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}

    def sim_stats(self) -> dict:
        return httpx.get(f"{self.sim_root}/_sim/stats", timeout=10).json()

    def reset_simulator(self) -> None:
        httpx.post(f"{self.sim_root}/_sim/reset", timeout=10).raise_for_status()

    def service_errors(self) -> list[str]:
        """Return the log lines of the services that report errors (for the run's verdict)."""
        found = []
        for service in self.services:
            if service.role in ("api", "worker") and service.log.exists():
                found += [line for line in service.log.read_text(errors="replace").splitlines()
                          if '"level": "ERROR"' in line or "Traceback" in line]
        return found

    # Stopping.

    def stop(self) -> None:
        """Stop every service, newest first (SIGTERM, then SIGKILL), and remove the folder."""
        for service in reversed(self.services):
            if service.process.poll() is None:
                os.killpg(service.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for service in reversed(self.services):
            try:
                service.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(service.process.pid, signal.SIGKILL)
                service.process.wait()
        self.services.clear()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _gc_seconds(log: Path) -> float:
    try:
        return sum(float(line.split()[1]) for line in log.read_text().splitlines())
    except (OSError, IndexError, ValueError):  # none yet, or a line being written
        return 0.0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
