"""An OpenAI-compatible simulated provider for tests, benchmarks and the offline default.

One asyncio process holds thousands of slow calls at once. Answers are deterministic and say
plainly that they are simulated; latency and faults (500s, 429 with ``Retry-After``, hangs,
malformed bodies) are set per model at start or at run time. ``python -m shared.simulator
--port 0`` prints ``simulator listening on http://HOST:PORT/v1`` once it is bound.
"""

from shared.simulator.app import SimConfig, create_sim_app
from shared.simulator.faults import Fault, FaultError, parse_fault
from shared.simulator.server import add_arguments, run_from_args, serve

__all__ = [
    "Fault",
    "FaultError",
    "SimConfig",
    "add_arguments",
    "create_sim_app",
    "parse_fault",
    "run_from_args",
    "serve",
]
