"""One circuit breaker per (provider, model), its state shared by every worker process.

Each breaker is a ``pybreaker.CircuitBreaker`` whose state lives in Redis under its own
namespace, so a model that keeps failing is skipped by the whole fleet at once. Calls go through
``with breaker.calling():`` (``call()`` would hold a lock for the whole call and serialise every
call of the process). What counts as a failure is a provider failure: permanent errors (the
provider answered; the request was wrong), 429s (the provider is up and asks us to slow down:
``shared.provider.pace`` handles those), calls that were never made and cancelled calls are
excluded. pybreaker treats an excluded outcome as a success: it resets the count of consecutive
failures, and a cancelled trial call closes the breaker (the next failures open it again).

When the reset timeout has passed, at most one trial call goes out for the whole fleet: the
process that takes a short Redis lease makes it, every other call is skipped as if the breaker
were still open.

pybreaker's storage calls Redis synchronously, on the worker's event loop. Rather than move
them to threads, the storage here reads the state (with the failure count) at most every
``STATE_CACHE_S`` per model and process, and resets the failure count on success only when it
is not already zero, so a busy model costs a few round trips a second instead of three per call
(``bench/breaker_overhead.py`` measures both). A client that could not reach Redis stops trying
for a few seconds, so an outage costs at most one short socket timeout per few seconds, and
meanwhile pybreaker's storage falls back to a closed breaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator

import pybreaker
import redis

from shared.metrics import CIRCUIT_BREAKER_STATE, CIRCUIT_BREAKER_TRANSITIONS
from shared.provider.errors import CallNotMade, CircuitOpen, PermanentError, RateLimited

log = logging.getLogger(__name__)

STATE_VALUES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}
NOT_FAILURES = (PermanentError, RateLimited, CallNotMade, asyncio.CancelledError)
REDIS_RETRY_AFTER_S = 5.0
STATE_CACHE_S = 0.1
KEY_PREFIX = "llmc:breaker"

# KEYS: the probe lease. ARGV: the holder's token. Delete the lease only if we still hold it.
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# pybreaker's storage logs every Redis error with a traceback; ReachableRedis logs outages once.
_storage_log = logging.getLogger(f"{__name__}.storage")
_storage_log.setLevel(logging.CRITICAL)


class ReachableRedis:
    """A synchronous Redis client that stops asking for a few seconds after Redis was unreachable.

    Every method of the wrapped client raises ``redis.ConnectionError`` at once while Redis is
    believed down, so a hung or vanished server never blocks the caller for more than one socket
    timeout per ``REDIS_RETRY_AFTER_S``.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._down_until = 0.0

    def __getattr__(self, name: str):
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def guarded(*args, **kwargs):
            if time.monotonic() < self._down_until:
                raise redis.ConnectionError("Redis was unreachable moments ago")
            try:
                return attribute(*args, **kwargs)
            except (redis.ConnectionError, redis.TimeoutError) as error:
                log.warning("breaker state falls back to this process while Redis is down",
                            extra={"error": str(error)})
                self._down_until = time.monotonic() + REDIS_RETRY_AFTER_S
                raise

        return guarded


class _SharedStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage, with fewer round trips, that can be created while Redis is down.

    The state is read at most once per ``STATE_CACHE_S``, with the fleet's failure count in the
    same round trip (this process's own changes are seen at once). A success resets the count
    only when the last reading, or a failure of this process since, says it is not zero: a busy,
    healthy model costs a few round trips a second, not two per call.
    """

    logger = _storage_log

    def __init__(self, *args, **kwargs) -> None:
        self._seen_at = float("-inf")
        self._state_seen = pybreaker.STATE_CLOSED
        self._failures_seen = 0
        super().__init__(*args, **kwargs)

    def _initialize_redis_state(self, state: str) -> None:
        try:
            super()._initialize_redis_state(state)
        except redis.RedisError:
            pass  # reads fall back to a closed breaker; the state key is created on a later read

    @property
    def state(self) -> str:
        now = time.monotonic()
        if now - self._seen_at >= STATE_CACHE_S:
            self._state_seen, self._failures_seen = self._read()
            self._seen_at = now
        return self._state_seen

    @state.setter
    def state(self, state: str) -> None:
        pybreaker.CircuitRedisStorage.state.fset(self, state)
        self._state_seen = str(state)
        self._failures_seen = max(1, self._failures_seen)  # a trial that closes it must reset

    def increment_counter(self) -> None:
        super().increment_counter()
        self._failures_seen += 1  # the next success must reset the count

    def reset_counter(self) -> None:
        if self._failures_seen:
            super().reset_counter()
            self._failures_seen = 0

    def _read(self) -> tuple[str, int]:
        """Return the fleet's state and failure count, as pybreaker's own read would."""
        try:
            state, failures = self._redis.mget(
                self._namespace("state"), self._namespace("fail_counter"))
        except redis.RedisError:
            return self._fallback_circuit_state, 0
        if state is None:  # lost (expired, flushed): start again from the fallback state
            self._initialize_redis_state(self._fallback_circuit_state)
            return self._fallback_circuit_state, 0
        return state.decode(), int(failures or 0)


class _StateLog(pybreaker.CircuitBreakerListener):
    """Log, count and export every state change this process makes or notices."""

    def state_change(self, cb, old_state, new_state) -> None:
        old = old_state.name if old_state else None
        level = logging.INFO if new_state.name == pybreaker.STATE_CLOSED else logging.WARNING
        log.log(level, f"circuit breaker {new_state.name}",
                extra={"model": cb.name, "from_state": old, "to_state": new_state.name})
        CIRCUIT_BREAKER_STATE.labels(model=cb.name).set(STATE_VALUES[new_state.name])
        CIRCUIT_BREAKER_TRANSITIONS.labels(model=cb.name, state=new_state.name).inc()


class ModelBreaker:
    """The breaker of one model, with the fleet-wide lease on its single trial call."""

    def __init__(self, model_id: str, breaker: pybreaker.CircuitBreaker,
                 storage: pybreaker.CircuitBreakerStorage, leases: _Leases) -> None:
        self.model_id = model_id
        self.breaker = breaker
        self._storage = storage
        self._leases = leases

    @property
    def state(self) -> str:
        """Return the fleet's view of this breaker: closed, open or half-open."""
        return self.breaker.current_state

    @property
    def opened_at(self):
        """Return when the breaker last opened (a UTC ``datetime``; ``None`` if it never did)."""
        return self._storage.opened_at

    def admit(self, lease_s: float) -> str | None:
        """Let a call through, or raise ``CircuitOpen``; return a probe token to ``release``.

        A closed breaker admits every call. An open one admits nothing until its reset timeout
        has passed; then (and while half-open) only the holder of the trial lease is admitted.
        """
        if self.breaker.current_state == pybreaker.STATE_CLOSED:
            return None
        if not self._reset_due():
            raise CircuitOpen(f"skipped: the circuit breaker of {self.model_id} is open")
        token = uuid.uuid4().hex
        if not self._leases.take(self.model_id, token, lease_s):
            raise CircuitOpen(
                f"skipped: the circuit breaker of {self.model_id} is open"
                " (another call is trying the model)"
            )
        if not self._reset_due():  # a trial ended while we asked, and opened the breaker again
            self._leases.give_back(self.model_id, token)
            raise CircuitOpen(f"skipped: the circuit breaker of {self.model_id} is open")
        return token

    def release(self, token: str | None) -> None:
        """End a trial call's lease, if this call held one."""
        if token is not None:
            self._leases.give_back(self.model_id, token)

    @contextlib.contextmanager
    def calling(self) -> Iterator[None]:
        """Count the outcome of the enclosed call; raise ``CircuitOpen`` if it may not run."""
        try:
            with self.breaker.calling():
                yield
        except pybreaker.CircuitBreakerError as error:
            raise CircuitOpen(f"skipped: the circuit breaker of {self.model_id} is open") from error

    def _reset_due(self) -> bool:
        opened_at = self._storage.opened_at
        if opened_at is None:
            return True
        return time.time() >= opened_at.timestamp() + self.breaker.reset_timeout


class FleetBreakers:
    """Every model's breaker for one provider, created on first use and kept for the process."""

    def __init__(self, fail_max: int, reset_timeout_s: float, provider_key: str,
                 client: redis.Redis | None) -> None:
        self.fail_max = fail_max
        self.reset_timeout_s = reset_timeout_s
        self.provider_key = provider_key
        self._client = client
        self._redis = ReachableRedis(client) if client is not None else None
        self._leases = _Leases(self._redis, self.namespace)
        self._breakers: dict[str, ModelBreaker] = {}
        self._lock = threading.Lock()

    def namespace(self, model_id: str) -> str:
        """Return the Redis namespace of one model's breaker (unique per provider and model)."""
        return f"{KEY_PREFIX}:{self.provider_key}:{model_id}"

    def for_model(self, model_id: str) -> ModelBreaker:
        """Return the breaker of a model, creating it the first time."""
        with self._lock:
            found = self._breakers.get(model_id)
            if found is None:
                found = self._breakers[model_id] = self._create(model_id)
            return found

    def close(self) -> None:
        """Close the Redis connections."""
        if self._client is not None:
            self._client.close()

    def _create(self, model_id: str) -> ModelBreaker:
        if self._redis is None:
            storage: pybreaker.CircuitBreakerStorage = pybreaker.CircuitMemoryStorage(
                pybreaker.STATE_CLOSED)
        else:
            storage = _SharedStorage(pybreaker.STATE_CLOSED, self._redis,
                                     namespace=self.namespace(model_id))
        breaker = pybreaker.CircuitBreaker(
            fail_max=self.fail_max,
            reset_timeout=self.reset_timeout_s,
            exclude=list(NOT_FAILURES),
            listeners=[_StateLog()],
            state_storage=storage,
            name=model_id,
            throw_new_error_on_trip=False,  # the call that trips it reports its own error
        )
        return ModelBreaker(model_id, breaker, storage, self._leases)


class _Leases:
    """Short leases on each model's trial call: in Redis for the fleet, else in this process."""

    def __init__(self, client: ReachableRedis | None, namespace) -> None:
        self._redis = client
        self._namespace = namespace
        self._local: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def take(self, model_id: str, token: str, lease_s: float) -> bool:
        if self._redis is not None:
            try:
                key = f"{self._namespace(model_id)}:probe"
                return bool(self._redis.set(key, token, nx=True, px=max(1, int(lease_s * 1000))))
            except redis.RedisError:
                pass  # the storage reads a closed breaker meanwhile; lease in this process
        with self._lock:
            holder = self._local.get(model_id)
            if holder is not None and holder[1] > time.monotonic():
                return False
            self._local[model_id] = (token, time.monotonic() + lease_s)
            return True

    def give_back(self, model_id: str, token: str) -> None:
        with self._lock:
            if self._local.get(model_id, ("",))[0] == token:
                del self._local[model_id]
        if self._redis is not None:
            with contextlib.suppress(redis.RedisError):
                self._redis.eval(RELEASE_LEASE, 1, f"{self._namespace(model_id)}:probe", token)
