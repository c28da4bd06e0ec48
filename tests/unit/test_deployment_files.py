"""The deployment files name real code, real routes and real settings.

Procfile, docker-compose.yml, Dockerfile and .env.example are read as text and YAML and checked
against the code: every command is parsed by the program it starts, every route a healthcheck
calls is served, every variable is one the service reads. Nothing is started.
"""

from __future__ import annotations

import configparser
import fnmatch
import importlib
import inspect
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml
from celery import Celery
from celery.app.utils import find_app
from celery.bin.base import CLIContext
from celery.bin.celery import celery as celery_cli

from api import create_app
from shared.queue import QUEUES
from shared.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]

PROCESS_TYPES = {"web", "worker", "worker_batch", "beat", "flower"}
COMPOSE_SERVICE_OF = {
    "web": "api", "worker": "worker", "worker_batch": "worker-batch", "beat": "beat",
    "flower": "flower",
}
WORKER_POOLS = {"worker": "interactive", "worker_batch": "batch"}
CELERY_SUBCOMMANDS = {"worker", "beat", "flower"}
# Variables the deployment files may name although ``load_settings`` does not read them.
NOT_SETTINGS = {
    "WEB_CONCURRENCY",  # gunicorn's worker processes
    "FLOWER_BASIC_AUTH",  # Flower's credentials
    "FLOWER_UNAUTHENTICATED_API",  # read by Flower itself: false, its API needs the basic auth
    "MONGO_INITDB_ROOT_USERNAME",  # read by the mongo image itself
    "MONGO_INITDB_ROOT_PASSWORD",
    "MONGO_INITDB_DATABASE",
}
SAMPLE_ENV = {"FLOWER_BASIC_AUTH": "ops:secret"}
SIMULATOR_URL = "OPENROUTER_BASE_URL=http://simulator:9000/v1"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error} or $NAME; "$$" is a literal "$".
VARIABLE = re.compile(
    r"(?<!\$)\$(?:\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_]\w*))"
)
PROCFILE_LINE = re.compile(r"^(?P<name>[A-Za-z0-9_-]+):\s*(?P<command>.+)$")
ENV_LINE = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")
LOCAL_URL = re.compile(r"https?://(?:127\.0\.0\.1|localhost):(?P<port>\d+)(?P<path>/[^'\"\s]*)")


class RecordingEnviron(Mapping):
    """An empty environment that remembers every variable it is asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def settings_variables() -> set[str]:
    """Return every environment variable ``load_settings`` reads."""
    environ = RecordingEnviron()
    load_settings(environ)
    return environ.asked


def read(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def expand(text: str, env: Mapping[str, str] = SAMPLE_ENV) -> str:
    """Substitute variables the way Compose and a POSIX shell do, then unescape ``$$``."""

    def value(match: re.Match) -> str:
        name = match["braced"] or match["bare"]
        op, arg = match["op"] or "", match["arg"] or ""
        if op == ":-":
            return env.get(name) or arg
        if op == "-":
            return env.get(name, arg)
        if op in (":?", "?"):
            assert env.get(name), f"{name} is required: {arg}"
        return env.get(name, "")

    return VARIABLE.sub(value, text).replace("$$", "$")


def argv_of(command: str | list[str]) -> list[str]:
    if isinstance(command, str):
        return shlex.split(expand(command))
    return [expand(str(part)) for part in command]


def procfile() -> dict[str, str]:
    lines = (PROCFILE_LINE.match(line) for line in read("Procfile").splitlines())
    return {match["name"]: match["command"] for match in lines if match}


def compose() -> dict:
    return yaml.safe_load(read("docker-compose.yml"))


def dockerfile_command() -> list[str]:
    [line] = [line for line in read("Dockerfile").splitlines() if line.startswith("CMD ")]
    argv = json.loads(line.removeprefix("CMD "))
    if argv[:2] == ["sh", "-c"]:
        argv = shlex.split(expand(argv[2]))
    return argv[1:] if argv[0] == "exec" else argv


def commands() -> dict[str, list[str]]:
    """Return every command the deployment files start, by where it is written."""
    found = {f"Procfile {name}": argv_of(command) for name, command in procfile().items()}
    for name, service in compose()["services"].items():
        if "build" in service:
            found[f"compose {name}"] = argv_of(service["command"])
    found["Dockerfile CMD"] = dockerfile_command()
    return found


def console_scripts() -> dict[str, str]:
    setup = configparser.ConfigParser(interpolation=None)
    setup.read(ROOT / "setup.cfg")
    lines = setup["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split("=", 1)) for line in lines)


def check_app_factory(app_string: str) -> None:
    module_name, _, expression = app_string.partition(":")
    target = getattr(importlib.import_module(module_name), expression.removesuffix("()"))
    assert callable(target), app_string
    if expression.endswith("()"):
        inspect.signature(target).bind()


def check_gunicorn(argv: list[str]) -> None:
    from gunicorn.config import Config

    config = Config()
    parsed = config.parser().parse_args(argv[1:])
    for name, value in vars(parsed).items():
        if value is not None and name != "args":
            config.set(name.lower(), value)
    assert config.worker_class is not None
    [app_string] = parsed.args
    check_app_factory(app_string)


def check_celery(argv: list[str]) -> None:
    assert argv[1] == "-A", "name the app first: celery -A <module> <subcommand>"
    subcommand, rest = argv[3], argv[4:]
    assert subcommand in CELERY_SUBCOMMANDS
    context = celery_cli.make_context("celery", argv[1:4])
    assert isinstance(find_app(context.params["app"]), Celery)
    # Some options consult the app's defaults while parsing: a blank app answers for them.
    blank = Celery("options", set_as_current=False)
    context.obj = CLIContext(app=blank, no_color=True, workdir=None, quiet=True)
    command = celery_cli.get_command(context, subcommand)
    options = command.make_context(subcommand, rest, parent=context).params
    assert set(options.get("queues") or ()) <= set(QUEUES)
    if subcommand == "flower":
        check_flower_options(options["tornado_argv"])


def check_flower_options(arguments: tuple[str, ...]) -> None:
    from flower.options import options

    for argument in arguments:
        name = argument.removeprefix("--").partition("=")[0]
        assert name in options, f"flower has no option --{name}"


def check_console_script(argv: list[str]) -> None:
    module_name, _, function = console_scripts()[argv[0]].partition(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, function))
    module._parser().parse_args(argv[1:])


def check_worker(argv: list[str]) -> None:
    from celery.bin.worker import worker

    assert argv[1:3] == ["-m", "workers"], "python -m workers <celery worker options>"
    blank = Celery("options", set_as_current=False)
    context = CLIContext(app=blank, no_color=True, workdir=None, quiet=True)
    options = worker.make_context("worker", argv[3:], obj=context).params
    assert options["queues"] and set(options["queues"]) <= set(QUEUES)
    assert options["task_events"], "workers send task events (-E) for Flower"


CHECKS = {"gunicorn": check_gunicorn, "celery": check_celery, "llm-council": check_console_script,
          "python": check_worker}
COMMANDS = commands()


@pytest.mark.parametrize("where", sorted(COMMANDS))
def test_every_command_starts_real_code(where):
    argv = COMMANDS[where]
    assert argv[0] in CHECKS, f"{where} starts an unknown program {argv[0]!r}"
    CHECKS[argv[0]](argv)


def test_the_procfile_declares_the_four_process_types():
    assert set(procfile()) == PROCESS_TYPES


def queues_of(argv: list[str]) -> list[str]:
    return argv[argv.index("-Q") + 1].split(",")


def test_the_worker_pools_consume_every_queue_once():
    consumed = [queue for name in WORKER_POOLS for queue in queues_of(argv_of(procfile()[name]))]
    assert sorted(consumed) == sorted(QUEUES)


def test_each_worker_pool_has_its_own_node_name():
    for name, pool in WORKER_POOLS.items():
        argv = argv_of(procfile()[name])
        assert argv[argv.index("--hostname") + 1] == f"{pool}@%h"
        service = compose()["services"][COMPOSE_SERVICE_OF[name]]
        assert f"-d {pool}@$HOSTNAME" in expand(" ".join(service["healthcheck"]["test"]))


def test_compose_runs_what_the_procfile_runs():
    services = compose()["services"]
    for process, command in procfile().items():
        assert argv_of(services[COMPOSE_SERVICE_OF[process]]["command"]) == argv_of(command)


def test_the_image_runs_the_api_by_default():
    assert dockerfile_command() == argv_of(procfile()["web"])


def test_the_api_factory_builds_an_app_without_services():
    rules = {rule.rule for rule in create_app(load_settings({})).url_map.iter_rules()}
    assert {"/health", "/ready"} <= rules


def api_serves(path: str) -> bool:
    app = create_app(load_settings({}))
    return any(rule.rule == path for rule in app.url_map.iter_rules())


def flower_serves(path: str) -> bool:
    from flower.urls import handlers
    from flower.views.error import NotFoundErrorHandler
    from tornado.web import URLSpec

    # Tornado routes to the first match; the last rule catches everything as "not found".
    for rule in handlers:
        spec = rule if isinstance(rule, URLSpec) else URLSpec(*rule)
        if spec.regex.match(path):
            return spec.handler_class is not NotFoundErrorHandler
    return False


def simulator_serves(path: str) -> bool:
    from shared.simulator import SimConfig, create_sim_app

    return any(r.canonical == path for r in create_sim_app(SimConfig()).router.resources())


ROUTES = {"api": api_serves, "flower": flower_serves, "simulator": simulator_serves}


def healthcheck_urls(service: dict) -> list[re.Match]:
    test = service.get("healthcheck", {}).get("test", [])
    text = test if isinstance(test, str) else " ".join(test)
    return list(LOCAL_URL.finditer(text))


def test_healthchecks_call_routes_that_exist():
    checked = set()
    for name, service in compose()["services"].items():
        for url in healthcheck_urls(service):
            assert name in ROUTES, f"{name}: no route table for {url[0]}"
            assert url["port"] in " ".join(argv_of(service["command"])), url[0]
            assert ROUTES[name](url["path"]), f"{name} serves no {url['path']}"
            checked.add(name)
    assert checked == set(ROUTES)


def test_the_api_healthcheck_is_liveness():
    [url] = healthcheck_urls(compose()["services"]["api"])
    assert url["path"] == "/health"


def test_every_healthy_dependency_has_a_healthcheck():
    services = compose()["services"]
    for name, service in services.items():
        for dependency, condition in dict(service.get("depends_on") or {}).items():
            if condition.get("condition") == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} -> {dependency}"


def test_the_app_processes_wait_for_healthy_stores():
    for name in ("api", "worker", "worker-batch"):
        depends_on = compose()["services"][name]["depends_on"]
        for store in ("redis", "mongo"):
            assert depends_on[store] == {"condition": "service_healthy"}, f"{name} -> {store}"


def compose_variables(document: object) -> Iterator[str]:
    """Yield every variable a Compose document references or sets in ``environment``."""
    if isinstance(document, dict):
        environment = document.get("environment")
        if isinstance(environment, dict):
            yield from environment
        elif isinstance(environment, list):
            yield from (item.split("=", 1)[0] for item in environment)
        for key, value in document.items():
            yield from compose_variables(key)
            yield from compose_variables(value)
    elif isinstance(document, list):
        for item in document:
            yield from compose_variables(item)
    elif isinstance(document, str):
        yield from (match["braced"] or match["bare"] for match in VARIABLE.finditer(document))


def test_every_variable_the_deployment_files_name_is_known():
    named = set(compose_variables(compose()))
    for command in procfile().values():
        named |= {match["braced"] or match["bare"] for match in VARIABLE.finditer(command)}
    assert {"REDIS_URL", "MONGODB_URL", "WORKER_CONCURRENCY"} <= named
    assert named - settings_variables() - NOT_SETTINGS == set()


def test_compose_follows_the_compose_specification():
    document = compose()
    assert "version" not in document
    for name in ("api", "worker", "worker-batch", "beat", "flower"):
        assert document["services"][name]["build"]["dockerfile"] == "Dockerfile"
        assert {"path": ".env", "required": False} in document["services"][name]["env_file"]


def test_named_volumes_are_declared():
    document = compose()
    declared = set(document.get("volumes") or {})
    for name in ("redis", "mongo", "rabbitmq"):
        volumes = document["services"][name]["volumes"]
        sources = {volume.split(":", 1)[0] for volume in volumes}
        assert sources and sources <= declared, name


def test_the_api_replicas_and_flower_are_published_without_colliding():
    services = compose()["services"]
    api = services["api"]
    assert api["deploy"]["replicas"] == 2
    [published] = [port for port in api["ports"] if port.endswith(":8000")]
    first, _, last = published.removesuffix(":8000").rpartition(":")[2].partition("-")
    assert int(last or first) - int(first) + 1 >= api["deploy"]["replicas"], published
    assert any(port.endswith("5555:5555") for port in services["flower"]["ports"])
    assert "${FLOWER_BASIC_AUTH" in " ".join(services["flower"]["command"])


def test_the_simulator_and_rabbitmq_run_only_behind_their_profiles():
    services = compose()["services"]
    optional = {"simulator", "rabbitmq"}
    for name in optional:
        assert services[name]["profiles"] == [name]
    assert all("profiles" not in services[name] for name in set(services) - optional)
    assert "BROKER_URL=amqp://guest:guest@rabbitmq:5672//" in read("docker-compose.yml")
    assert SIMULATOR_URL in read("docker-compose.yml")
    argv = argv_of(services["simulator"]["command"])
    assert argv[argv.index("--port") + 1] == "9000"


def test_redis_keeps_every_key():
    redis = compose()["services"]["redis"]
    command = " ".join(argv_of(redis["command"]))
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])


def test_the_mongodb_url_matches_the_mongo_service():
    document = compose()
    url = document["x-app"]["environment"]["MONGODB_URL"]
    mongo = document["services"]["mongo"]
    replica_set = "--replSet" in argv_of(mongo.get("command") or [])
    assert ("replicaSet=" in url) == replica_set
    assert url.startswith("mongodb://mongo:27017")


def test_mongo_is_a_replica_set_that_the_healthcheck_initiates_once():
    mongo = compose()["services"]["mongo"]
    command = argv_of(mongo["command"])
    name = command[command.index("--replSet") + 1]
    assert f"replicaSet={name}" in compose()["x-app"]["environment"]["MONGODB_URL"]
    script = mongo["healthcheck"]["test"][-1]
    # Initiating an initiated set fails, so it must run only when rs.status() says there is none.
    assert re.search(r"try \{ rs\.status\(\) \} catch \(\w+\) \{\s*rs\.initiate\(", script)
    assert f"_id: '{name}'" in script and "host: 'mongo:27017'" in script
    assert "isWritablePrimary" in script


def test_the_image_is_small_and_runs_as_a_user():
    lines = [line.strip() for line in read("Dockerfile").splitlines()]
    assert "FROM python:3.11-slim" in lines
    assert any(line.startswith("RUN pip install .") for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")


def test_the_build_context_keeps_secrets_out_and_sources_in():
    patterns = [line for line in read(".dockerignore").splitlines() if line and line[0] != "#"]
    assert {".env", ".venv", ".git"} <= set(patterns)
    copied = []
    for line in read("Dockerfile").splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            copied += line.split()[1:-1]
    for source in copied:
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in patterns), source


def env_example() -> list[tuple[str, re.Match | None]]:
    """Return each line of .env.example with its assignment match, if it is one."""
    return [(line, ENV_LINE.match(line)) for line in read(".env.example").splitlines()]


def test_env_example_documents_every_setting():
    documented = {match["name"] for _, match in env_example() if match}
    assert settings_variables() <= documented
    assert documented - settings_variables() <= NOT_SETTINGS


def test_env_example_explains_every_variable():
    lines = env_example()
    for (previous, previous_match), (line, match) in zip(lines, lines[1:], strict=False):
        if match:
            assert previous.startswith("#") and not previous_match, f"no comment above {line}"


def test_env_example_shows_the_defaults():
    defaults = {
        match["name"]: match["value"]
        for _, match in env_example()
        if match and match["comment"] and match["name"] in settings_variables()
    }
    assert load_settings(defaults) == load_settings({})


def test_readme_mentions_every_setting():
    readme = read("README.md")
    missing = sorted(name for name in settings_variables() if not re.search(rf"\b{name}\b", readme))
    assert not missing, f"README.md does not mention {', '.join(missing)}"


def test_the_worker_command_leaves_the_celery_commands_plugins_unimported():
    # celery's command imports Flower (tornado) and the REPL: 10.7 MiB per worker process.
    code = ("import sys, workers.__main__; "
            "print(sorted({'flower', 'prompt_toolkit'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"
