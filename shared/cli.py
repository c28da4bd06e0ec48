"""The ``llm-council`` command: ``up``, ``ask`` and ``simulate``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from shared import simulator
from shared.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen command."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    return args.run(args) or 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-council", description=__doc__)
    commands = parser.add_subparsers(title="commands")

    up = commands.add_parser("up", help="run the whole system in the foreground")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--data-dir", type=Path, help="where the store and Redis keep their files")
    up.add_argument("--api-workers", type=int, default=2)
    up.add_argument("--simulator-latency-ms", type=int, default=200)
    up.set_defaults(run=_up)

    ask = commands.add_parser("ask", help="ask a running council a question")
    ask.add_argument("question")
    ask.add_argument("--url", default="http://127.0.0.1:8000")
    ask.add_argument("--api-key")
    ask.set_defaults(run=_ask)

    _add_key_commands(commands)

    simulate = commands.add_parser("simulate", help="serve the simulated provider")
    simulator.add_arguments(simulate)
    simulate.set_defaults(run=simulator.run_from_args)
    return parser


def _add_key_commands(commands) -> None:
    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    keys.add_argument("--data-dir", type=Path, help="the embedded store's folder (as for up)")
    actions = keys.add_subparsers(title="actions", required=True)
    create = actions.add_parser("create", help="make a key; it is printed once, on the last line")
    create.add_argument("--scope", choices=("client", "admin"), default="client")
    create.add_argument("--name", required=True)
    create.set_defaults(run=_keys_create)
    listing = actions.add_parser("list", help="list keys (never the keys themselves)")
    listing.set_defaults(run=_keys_list)
    revoke = actions.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=_keys_revoke)


def _key_store(args: argparse.Namespace):
    from shared.store import open_store

    settings = load_settings()
    if args.data_dir:
        settings = settings.with_overrides(data_dir=args.data_dir)
    settings.sqlite_file.parent.mkdir(parents=True, exist_ok=True)
    return open_store(settings)


def _keys_create(args: argparse.Namespace) -> int:
    from shared.keys import issue_key

    record, raw = issue_key(_key_store(args), args.name, args.scope)
    print(f"created {record['scope']} key {record['id']} ({record['name']}); "
          "store it now, it is not shown again:")
    print(raw)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    for key in _key_store(args).list_api_keys():
        state = "revoked" if key["revoked_at"] else "active"
        print(f"{key['id']}  {key['scope']:<6}  {state:<7}  {key['name']}")
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    if not _key_store(args).revoke_api_key(args.key_id, time.time()):
        print(f"no active key {args.key_id}", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}")
    return 0


def _up(args: argparse.Namespace) -> int:
    from shared.embedded import Supervisor, UpOptions, bring_up, install_signal_handlers

    settings = load_settings()
    if args.data_dir:
        settings = settings.with_overrides(data_dir=args.data_dir)
    options = UpOptions(args.host, args.port, args.api_workers, args.simulator_latency_ms)
    supervisor = Supervisor()
    install_signal_handlers()
    try:
        url = bring_up(settings, options, supervisor)
        _announce(url, settings)
        stopped = supervisor.wait_any()
        print(f"{stopped} stopped; shutting everything down", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        supervisor.stop()


def _announce(url: str, settings) -> None:
    provider = "the simulated provider" if settings.openrouter_api_key is None else (
        settings.provider_base_url)
    print(
        f"LLM Council is up at {url} (provider: {provider}; data: {settings.data_dir.resolve()})\n"
        f"  ask it:   llm-council ask --url {url} \"Why is the sky blue?\"\n"
        f"  or:       curl -s -X POST {url}/v1/sessions -H 'Content-Type: application/json' "
        f"-d '{{\"question\": \"Why is the sky blue?\"}}'\n"
        "  stop it:  Ctrl-C",
        flush=True,
    )
    if settings.api_key is None:
        print("WARNING: no API key is configured: the API is open to anyone who can reach it.",
              file=sys.stderr, flush=True)


def _ask(args: argparse.Namespace) -> int:
    from shared.ask import ask

    ask(args.url, args.question, args.api_key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
