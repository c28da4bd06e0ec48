"""Fault tests: short deadlines and small breaker thresholds, so every fault shows in seconds."""

from __future__ import annotations

import pytest

FAULT_SETTINGS = {
    "PROVIDER_MAX_ATTEMPTS": "3",
    "CIRCUIT_BREAKER_FAIL_MAX": "5",
    "CIRCUIT_BREAKER_TIMEOUT": "60",
    "STAGE_DEADLINE_SECONDS": "20",
    "ROUND_DEADLINE_SECONDS": "60",
    # The tests poll and submit in bursts; the inbound rate limits are not what they test.
    "RATE_LIMIT_REQUESTS": "100000",
    "SUBMIT_RATE_LIMIT_REQUESTS": "100000",
}


@pytest.fixture
def environ(environ):
    """The shared test environment with the fault tests' settings (a test may add its own)."""
    return {**environ, **FAULT_SETTINGS}
