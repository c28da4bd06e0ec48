"""Read the service's configuration from the environment, once, into a frozen value.

Nothing else in the code base reads ``os.environ``: processes call ``load_settings()`` at start
and pass the result along. Every setting is documented in README.md and ``.env.example``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from shared.event_loops import EVENT_LOOPS, UVLOOP
from shared.presets import CouncilPreset, build_presets
from shared.roster import Roster, RosterError, build_roster

OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
DEFAULT_MEMBERS = (
    "openai/gpt-4o-mini",
    "anthropic/claude-3.5-haiku",
    "google/gemini-2.0-flash-001",
    "meta-llama/llama-3.3-70b-instruct",
)
DEFAULT_CHAIRMAN = "openai/gpt-4o-mini"
ENVIRONMENTS = ("development", "test", "production")
DEFAULT_WEBHOOK_SECRET = "insecure-development-webhook-secret"
DEFAULT_WORKER_METRICS_PORT = 9808
SQLITE_STORE_THREADS = 4
MONGODB_POOL_SIZE = 32


class SettingsError(ValueError):
    """A setting is missing, malformed or inconsistent with another."""


@dataclass(frozen=True)
class Settings:
    """Everything a process of the service needs to know about its deployment."""

    environment: str = "development"
    data_dir: Path = Path(".llm-council")
    log_level: str = "INFO"

    # Providers and the roster.
    openrouter_api_key: str | None = None
    provider_base_url: str = OPENROUTER_BASE_URL
    roster: Roster = field(default_factory=lambda: build_roster(DEFAULT_MEMBERS, DEFAULT_CHAIRMAN))
    provider_timeout_s: float = 60.0
    provider_max_connections: int = 500

    # Stores.
    mongodb_url: str | None = None
    mongodb_database: str = "llm_council"
    sqlite_path: Path | None = None
    redis_url: str | None = None
    redis_enabled: bool = True
    broker_url: str | None = None
    redis_socket_timeout_s: float = 2.0
    session_retention_days: float = 0.0

    # The HTTP edge.
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    rate_limit_requests: int = 1000
    rate_limit_window_s: int = 60
    submit_rate_limit_requests: int = 100
    trusted_proxies: int = 0
    hsts_max_age_s: int = 0
    admission_max_queue_depth: int = 10_000
    max_body_bytes: int = 1024 * 1024
    max_question_chars: int = 20_000
    cache_ttl_sessions_s: int = 180
    cache_ttl_models_s: int = 300
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    webhook_allow_private: bool = False
    webhook_max_attempts: int = 8
    webhook_timeout_s: float = 10.0
    webhook_backoff_s: float = 2.0
    public_base_url: str | None = None
    events_max_len: int = 1000
    events_ttl_s: int = 86_400
    sse_heartbeat_s: float = 15.0
    sse_max_streams: int = 200
    chat_completions_wait_s: float = 120.0

    # Resilience.
    circuit_breaker_fail_max: int = 5
    circuit_breaker_timeout_s: int = 60
    provider_max_attempts: int = 3
    stage_deadline_s: float = 180.0
    round_deadline_s: float = 600.0
    council_min_answers: int = 2
    council_min_ballots: int = 1
    council_presets: Mapping[str, CouncilPreset] = field(default_factory=dict)

    # The run lifecycle.
    round_lease_s: float = 60.0
    round_max_attempts: int = 3
    round_time_limit_s: int = 900
    sweep_interval_s: float = 15.0
    sweep_queued_after_s: float = 900.0
    worker_concurrency: int = 100
    store_pool_size: int | None = None  # None: the store's own (``effective_store_pool_size``)
    worker_event_loop: str = UVLOOP

    # Observability and inspection.
    prometheus_multiproc_dir: Path | None = None
    metrics_require_key: bool = False
    worker_metrics_port: int | None = None
    inspect_timeout_s: float = 1.0
    task_sent_events: bool = False

    @property
    def sqlite_file(self) -> Path:
        """Return where the embedded SQLite store lives."""
        return self.sqlite_path or self.data_dir / "council.sqlite3"

    @property
    def session_retention_s(self) -> float | None:
        """Return how long sessions are kept, in seconds; ``None`` keeps them forever."""
        return self.session_retention_days * 86_400 or None

    @property
    def embedded_redis_socket(self) -> Path:
        """Return the unix socket of the embedded Redis server started by ``llm-council up``."""
        return self.data_dir / "redis.sock"

    @property
    def effective_redis_url(self) -> str:
        """Return the Redis URL for shared state: the configured one or the embedded server's."""
        return self.redis_url or f"unix://{self.embedded_redis_socket.resolve()}"

    @property
    def effective_broker_url(self) -> str:
        """Return Celery's broker URL: ``BROKER_URL``, else Redis in Kombu's spelling."""
        if self.broker_url:
            return self.broker_url
        if self.redis_url:
            return self.redis_url
        return f"redis+socket://{self.embedded_redis_socket.resolve()}"

    @property
    def effective_worker_metrics_port(self) -> int:
        """Return the port of a worker host's metrics endpoint (0: none); 9808 in production."""
        if self.worker_metrics_port is not None:
            return self.worker_metrics_port
        return DEFAULT_WORKER_METRICS_PORT if self.environment == "production" else 0

    @property
    def effective_store_pool_size(self) -> int:
        """Return how many store calls a process makes at once (store threads, MongoDB's pool).

        SQLite takes one writer at a time, so more threads only queue for its lock, and with
        32 a worker spent ~1.5 ms more CPU per round than with 4 (bench/RESULTS.md, "Fourth
        pass"); MongoDB serves calls in parallel, each a network round trip.
        """
        if self.store_pool_size is not None:
            return self.store_pool_size
        return MONGODB_POOL_SIZE if self.mongodb_url else SQLITE_STORE_THREADS

    def with_overrides(self, **changes: object) -> Settings:
        """Return a copy with some fields changed (tests and the CLI use this)."""
        return replace(self, **changes)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from an environment mapping (``os.environ`` when not given)."""
    env = os.environ if environ is None else environ
    reader = _Reader(env)
    members = reader.csv("COUNCIL_MEMBERS") or DEFAULT_MEMBERS
    chairman = reader.text("COUNCIL_CHAIRMAN") or DEFAULT_CHAIRMAN
    try:
        roster = build_roster(
            members, chairman, reader.json_object("COUNCIL_MODEL_OPTIONS"),
            reader.csv("COUNCIL_CHAIRMAN_FALLBACKS"),
        )
        presets = build_presets(reader.json_object("COUNCIL_PRESETS"), roster)
    except RosterError as error:
        raise SettingsError(str(error)) from error
    settings = Settings(
        environment=reader.choice("ENVIRONMENT", ENVIRONMENTS, "development"),
        data_dir=Path(reader.text("DATA_DIR") or ".llm-council"),
        log_level=(reader.text("LOG_LEVEL") or "INFO").upper(),
        openrouter_api_key=reader.text("OPENROUTER_API_KEY"),
        provider_base_url=(reader.text("OPENROUTER_BASE_URL") or OPENROUTER_BASE_URL).rstrip("/"),
        roster=roster,
        provider_timeout_s=reader.number("PROVIDER_TIMEOUT", 60.0),
        provider_max_connections=reader.integer("PROVIDER_MAX_CONNECTIONS", 500),
        mongodb_url=reader.text("MONGODB_URL"),
        mongodb_database=reader.text("MONGODB_DATABASE") or "llm_council",
        sqlite_path=_optional_path(reader.text("SQLITE_PATH")),
        redis_url=reader.text("REDIS_URL"),
        redis_enabled=reader.flag("REDIS_ENABLED", True),
        broker_url=reader.text("BROKER_URL"),
        redis_socket_timeout_s=reader.number("REDIS_SOCKET_TIMEOUT", 2.0),
        session_retention_days=reader.number("SESSION_RETENTION_DAYS", 0.0),
        api_key=reader.text("API_KEY"),
        cors_origins=tuple(reader.csv("CORS_ORIGINS")),
        rate_limit_requests=reader.integer("RATE_LIMIT_REQUESTS", 1000),
        rate_limit_window_s=reader.integer("RATE_LIMIT_WINDOW", 60),
        submit_rate_limit_requests=reader.integer("SUBMIT_RATE_LIMIT_REQUESTS", 100),
        trusted_proxies=reader.integer("TRUSTED_PROXIES", 0),
        hsts_max_age_s=reader.integer("HSTS_MAX_AGE", 0),
        admission_max_queue_depth=reader.integer("ADMISSION_MAX_QUEUE_DEPTH", 10_000),
        max_body_bytes=reader.integer("MAX_BODY_BYTES", 1024 * 1024),
        max_question_chars=reader.integer("MAX_QUESTION_CHARS", 20_000),
        cache_ttl_sessions_s=reader.integer("CACHE_TTL_SESSIONS", 180),
        cache_ttl_models_s=reader.integer("CACHE_TTL_MODELS", 300),
        webhook_secret=reader.text("WEBHOOK_SECRET") or DEFAULT_WEBHOOK_SECRET,
        webhook_allow_private=reader.flag("WEBHOOK_ALLOW_PRIVATE", False),
        webhook_max_attempts=reader.integer("WEBHOOK_MAX_ATTEMPTS", 8),
        webhook_timeout_s=reader.number("WEBHOOK_TIMEOUT", 10.0),
        webhook_backoff_s=reader.number("WEBHOOK_BACKOFF_SECONDS", 2.0),
        public_base_url=(reader.text("PUBLIC_BASE_URL") or "").rstrip("/") or None,
        events_max_len=reader.integer("EVENTS_MAX_LEN", 1000),
        events_ttl_s=reader.integer("EVENTS_TTL_SECONDS", 86_400),
        sse_heartbeat_s=reader.number("SSE_HEARTBEAT_SECONDS", 15.0),
        sse_max_streams=reader.integer("SSE_MAX_STREAMS", 200),
        chat_completions_wait_s=reader.number("CHAT_COMPLETIONS_WAIT_SECONDS", 120.0),
        circuit_breaker_fail_max=reader.integer("CIRCUIT_BREAKER_FAIL_MAX", 5),
        circuit_breaker_timeout_s=reader.integer("CIRCUIT_BREAKER_TIMEOUT", 60),
        provider_max_attempts=reader.integer("PROVIDER_MAX_ATTEMPTS", 3),
        stage_deadline_s=reader.number("STAGE_DEADLINE_SECONDS", 180.0),
        round_deadline_s=reader.number("ROUND_DEADLINE_SECONDS", 600.0),
        council_min_answers=reader.integer("COUNCIL_MIN_ANSWERS", 2),
        council_min_ballots=reader.integer("COUNCIL_MIN_BALLOTS", 1),
        council_presets=presets,
        round_lease_s=reader.number("ROUND_LEASE_SECONDS", 60.0),
        round_max_attempts=reader.integer("ROUND_MAX_ATTEMPTS", 3),
        round_time_limit_s=reader.integer("ROUND_TIME_LIMIT", 900),
        sweep_interval_s=reader.number("SWEEP_INTERVAL_SECONDS", 15.0),
        sweep_queued_after_s=reader.number("SWEEP_QUEUED_AFTER_SECONDS", 900.0),
        worker_concurrency=reader.integer("WORKER_CONCURRENCY", 100),
        store_pool_size=(reader.integer("STORE_POOL_SIZE", 0)
                         if reader.text("STORE_POOL_SIZE") else None),
        worker_event_loop=reader.choice("WORKER_EVENT_LOOP", EVENT_LOOPS, UVLOOP),
        prometheus_multiproc_dir=_optional_path(reader.text("PROMETHEUS_MULTIPROC_DIR")),
        metrics_require_key=reader.flag("METRICS_REQUIRE_KEY", False),
        worker_metrics_port=(reader.integer("WORKER_METRICS_PORT", 0)
                             if reader.text("WORKER_METRICS_PORT") else None),
        inspect_timeout_s=reader.number("INSPECT_TIMEOUT", 1.0),
        task_sent_events=reader.flag("TASK_SENT_EVENTS", False),
    )
    _check_consistency(settings)
    return settings


def production_problems(settings: Settings, keys_exist: bool) -> list[str]:
    """Return why this configuration is unsafe to run as production (empty when it is fine)."""
    if settings.environment != "production":
        return []
    problems = []
    if not (settings.api_key or keys_exist):
        problems.append("no API key: set API_KEY or create keys with 'llm-council keys create'")
    if settings.webhook_secret == DEFAULT_WEBHOOK_SECRET:
        problems.append("WEBHOOK_SECRET is the development default")
    if not settings.mongodb_url:
        problems.append("MONGODB_URL is not set (SQLite is for one machine only)")
    if "*" in settings.cors_origins:
        problems.append("CORS_ORIGINS allows every origin")
    return problems


def _optional_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _check_consistency(settings: Settings) -> None:
    if settings.round_lease_s <= 0 or settings.round_max_attempts < 1:
        raise SettingsError("ROUND_LEASE_SECONDS must be > 0 and ROUND_MAX_ATTEMPTS >= 1")
    if settings.max_body_bytes < 1024:
        raise SettingsError("MAX_BODY_BYTES must be at least 1024")
    if settings.worker_concurrency < 1 or settings.effective_store_pool_size < 1:
        raise SettingsError("WORKER_CONCURRENCY and STORE_POOL_SIZE must be at least 1")
    if settings.effective_worker_metrics_port > 65535 or settings.inspect_timeout_s <= 0:
        raise SettingsError("WORKER_METRICS_PORT must be a port (0: none), INSPECT_TIMEOUT > 0")
    _check_resilience(settings)
    _check_progress(settings)


def _check_resilience(settings: Settings) -> None:
    if settings.provider_max_attempts < 1 or settings.circuit_breaker_fail_max < 1:
        raise SettingsError("PROVIDER_MAX_ATTEMPTS and CIRCUIT_BREAKER_FAIL_MAX must be >= 1")
    if not 0 < settings.stage_deadline_s <= settings.round_deadline_s:
        raise SettingsError("STAGE_DEADLINE_SECONDS must be > 0 and <= ROUND_DEADLINE_SECONDS")
    if settings.round_deadline_s >= settings.round_time_limit_s:
        # The hard time limit kills the task: the round must end by its own deadline first.
        raise SettingsError("ROUND_DEADLINE_SECONDS must be below ROUND_TIME_LIMIT")
    if settings.council_min_answers < 2 or settings.council_min_ballots < 1:
        raise SettingsError("COUNCIL_MIN_ANSWERS must be >= 2 and COUNCIL_MIN_BALLOTS >= 1")


def _check_progress(settings: Settings) -> None:
    if settings.webhook_max_attempts < 1 or settings.webhook_timeout_s <= 0:
        raise SettingsError("WEBHOOK_MAX_ATTEMPTS must be >= 1 and WEBHOOK_TIMEOUT > 0")
    if settings.events_max_len < 1 or settings.events_ttl_s < 1:
        raise SettingsError("EVENTS_MAX_LEN and EVENTS_TTL_SECONDS must be >= 1")
    if settings.sse_heartbeat_s <= 0 or settings.sse_max_streams < 1:
        raise SettingsError("SSE_HEARTBEAT_SECONDS must be > 0 and SSE_MAX_STREAMS >= 1")
    if settings.chat_completions_wait_s <= 0:
        raise SettingsError("CHAT_COMPLETIONS_WAIT_SECONDS must be > 0")


class _Reader:
    """Parse typed values out of an environment mapping, naming the variable on error."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def csv(self, name: str) -> list[str]:
        return [part.strip() for part in (self.text(name) or "").split(",") if part.strip()]

    def flag(self, name: str, default: bool) -> bool:
        value = self.text(name)
        if value is None:
            return default
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be true or false, not {value!r}")

    def integer(self, name: str, default: int) -> int:
        return int(self._parse(name, int, default))

    def number(self, name: str, default: float) -> float:
        return float(self._parse(name, float, default))

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = (self.text(name) or default).lower()
        if value not in allowed:
            raise SettingsError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        return value

    def json_object(self, name: str) -> dict:
        value = self.text(name)
        if value is None:
            return {}
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as error:
            raise SettingsError(f"{name} is not valid JSON: {error}") from error
        if not isinstance(parsed, dict):
            raise SettingsError(f"{name} must be a JSON object")
        return parsed

    def _parse(self, name: str, kind: type, default: float) -> float:
        value = self.text(name)
        if value is None:
            return default
        try:
            parsed = kind(value)
        except ValueError as error:
            raise SettingsError(f"{name} must be a {kind.__name__}, not {value!r}") from error
        if parsed < 0:
            raise SettingsError(f"{name} must not be negative")
        return parsed
