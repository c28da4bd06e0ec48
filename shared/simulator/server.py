"""Run the simulated provider as a process: bind, announce the URL, serve until a signal."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from aiohttp import web

from shared.event_loops import new_event_loop
from shared.simulator.app import SimConfig, create_sim_app
from shared.simulator.faults import FaultError, parse_fault

BACKLOG = 4096
SHUTDOWN_TIMEOUT_S = 1.0


def serve(host: str, port: int, config: SimConfig) -> None:
    """Serve the simulated provider until SIGINT or SIGTERM; port 0 picks a free port."""
    _raise_open_files_limit()
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(_serve(host, port, config))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to a command line parser."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8900, help="port to bind; 0 picks a free one")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="latency of every call")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="latency varies by +/- this")
    parser.add_argument("--seed", type=int, default=0, help="seed of fault and jitter draws")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        type=_fault_argument,
        metavar="JSON",
        help='a fault as in POST /_sim/faults, e.g. \'{"model": "*", "error_rate": 0.1}\'',
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Serve with the options ``add_arguments`` parsed."""
    config = SimConfig(
        latency_ms=max(0.0, args.latency_ms),
        jitter_ms=max(0.0, args.jitter_ms),
        seed=args.seed,
        faults=dict(args.fault),
    )
    serve(args.host, args.port, config)
    return 0


async def _serve(host: str, port: int, config: SimConfig) -> None:
    # Handler cancellation ends a hung call as soon as its client gives up.
    runner = web.AppRunner(
        create_sim_app(config),
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=BACKLOG, reuse_address=True).start()
        print(f"simulator listening on {_base_url(runner.addresses[0])}", flush=True)
        await _until_stopped()
    finally:
        await runner.cleanup()


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or no signal support: Ctrl-C still interrupts
    await stop.wait()


def _base_url(address: tuple) -> str:
    host, port = address[0], address[1]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/v1"


def _fault_argument(text: str) -> tuple:
    try:
        return parse_fault(json.loads(text))
    except (ValueError, FaultError) as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _raise_open_files_limit() -> None:
    """Allow as many open sockets as the hard limit permits: thousands of calls wait at once."""
    try:
        import resource
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
