"""Every Prometheus metric the service exports, as module-level constants.

Label sets are small and fixed: route templates (never raw paths), model ids from the roster,
statuses and outcomes from closed lists. Under gunicorn and Celery prefork the client's
multiprocess mode aggregates the processes (``PROMETHEUS_MULTIPROC_DIR``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
ROUND_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered.", ["method", "route", "status"]
)
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds", "Time to answer an HTTP request.", ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
COUNCIL_ROUNDS = Counter(
    "council_rounds_total", "Council rounds that reached a terminal state.", ["mode", "status"]
)
COUNCIL_ROUND_DURATION = Histogram(
    "council_round_duration_seconds", "Time from a round's claim to its end.",
    buckets=ROUND_BUCKETS,
)
COUNCIL_STAGE_DURATION = Histogram(
    "council_stage_duration_seconds", "Time spent in each stage of a round.", ["stage"],
    buckets=ROUND_BUCKETS,
)
LLM_REQUESTS = Counter(
    "llm_requests_total", "Model calls by outcome.", ["model", "outcome"]
)
LLM_REQUEST_DURATION = Histogram(
    "llm_request_duration_seconds", "Time a model call took.", ["model"], buckets=ROUND_BUCKETS
)
LLM_TOKENS = Counter("llm_tokens_total", "Tokens used by model calls.", ["model", "kind"])
LLM_COST = Counter("llm_cost_usd_total", "Cost of model calls in US dollars.", ["model"])
CIRCUIT_BREAKER_STATE = Gauge(
    "circuit_breaker_state", "Breaker state per model: 0 closed, 1 half-open, 2 open.",
    ["model"], multiprocess_mode="max",
)
CIRCUIT_BREAKER_TRANSITIONS = Counter(
    "circuit_breaker_transitions_total",
    "Breaker state changes per model, as each process made or noticed them.", ["model", "state"],
)
CELERY_QUEUE_LENGTH = Gauge(
    "celery_queue_length", "Messages waiting in each queue.", ["queue"],
    multiprocess_mode="max",
)
RATE_LIMIT_HITS = Counter(
    "rate_limit_hits_total", "Requests refused by a rate limit.", ["scope"]
)
CACHE_OPERATIONS = Counter(
    "cache_operations_total", "Cache operations by result.", ["operation", "result"]
)
