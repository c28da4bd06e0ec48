import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from shared.council.prompts import answer_messages, ranking_messages, synthesis_messages
from shared.provider.client import ProviderClient, build_http_client
from shared.provider.errors import (
    MalformedResponse,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from shared.roster import Model
from shared.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ALPHA = Model(id="sim/alpha", name="alpha")
BETA = Model(id="sim/beta", name="beta")
QUESTION = "Why is the sky blue?"
RANKING_JSON = re.compile(r"```json\s*(\{.*?\})\s*```", re.DOTALL)


def start_simulator(*options):
    """Start the simulator on a free port; return the process and its base URL."""
    argv = [sys.executable, "-m", "shared.simulator", "--port", "0", *options]
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if "http://" not in line:
        stop_simulator(process)
        pytest.fail(f"the simulator did not start: {line!r}")
    return process, line[line.index("http://") :].strip()


def stop_simulator(process):
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


@pytest.fixture(scope="module")
def base_url():
    process, url = start_simulator("--seed", "11", "--latency-ms", "5", "--jitter-ms", "2")
    yield url
    stop_simulator(process)


@pytest.fixture
def control(base_url):
    """Talk to the simulator's /_sim routes, starting every test from zero."""
    with httpx.Client(base_url=base_url.removesuffix("/v1"), timeout=10) as client:
        client.delete("/_sim/faults").raise_for_status()
        client.post("/_sim/reset").raise_for_status()
        yield client
        client.delete("/_sim/faults")


def ask_all(base_url, calls, max_connections=10):
    """Make (model, messages) calls at once; return completions or the errors raised."""

    async def run():
        settings = Settings(provider_max_connections=max_connections, provider_timeout_s=10.0)
        async with build_http_client(settings) as http:
            client = ProviderClient(http, base_url, "sk-test", settings.provider_timeout_s)
            calls_made = (client.complete(model, messages) for model, messages in calls)
            outcomes = await asyncio.gather(*calls_made, return_exceptions=True)
            return outcomes

    return asyncio.run(run())


def ask(base_url, model=ALPHA, messages=None):
    [outcome] = ask_all(base_url, [(model, messages or answer_messages(QUESTION, []))])
    return outcome


def fail(base_url, model=ALPHA):
    outcome = ask(base_url, model)
    assert isinstance(outcome, Exception), outcome
    return outcome


def set_fault(control, **fault):
    response = control.post("/_sim/faults", json=fault)
    assert response.status_code == 200, response.text


def test_answers_are_simulated_deterministic_and_carry_usage(base_url, control):
    first, again, other = ask_all(
        base_url,
        [(ALPHA, answer_messages(QUESTION, [])), (ALPHA, answer_messages(QUESTION, []))]
        + [(BETA, answer_messages(QUESTION, []))],
    )
    assert first.content.startswith("[simulated sim/alpha]")
    assert "simulated answer" in first.content
    assert QUESTION in first.content
    assert again.content == first.content
    assert other.content.startswith("[simulated sim/beta]")
    prompt_chars = sum(len(m["content"]) for m in answer_messages(QUESTION, []))
    assert first.usage["prompt_tokens"] == prompt_chars // 4
    assert first.usage["completion_tokens"] == len(first.content) // 4
    assert first.usage["total_tokens"] == (
        first.usage["prompt_tokens"] + first.usage["completion_tokens"]
    )


def test_ranking_request_gets_a_ranking_of_exactly_the_labels_shown(base_url, control):
    labelled = {f"Response {label}": f"answer {label}" for label in "ABCD"}
    messages = ranking_messages(QUESTION, labelled)
    completion = ask(base_url, BETA, messages)
    assert completion.content.startswith("[simulated sim/beta]")
    assert "simulated evaluation" in completion.content
    ranking = json.loads(RANKING_JSON.search(completion.content).group(1))["ranking"]
    assert sorted(ranking) == sorted(labelled)
    assert ask(base_url, BETA, messages).content == completion.content


def test_synthesis_request_gets_a_simulated_synthesis(base_url, control):
    messages = synthesis_messages(QUESTION, {"alpha": "blue light scatters"}, [], [], [])
    completion = ask(base_url, ALPHA, messages)
    assert completion.content.startswith("[simulated sim/alpha]")
    assert "simulated synthesis" in completion.content


def test_stats_count_calls_per_model(base_url, control):
    calls = [(ALPHA, answer_messages(f"q{n}", [])) for n in range(3)]
    calls += [(BETA, answer_messages("q", []))]
    assert all(not isinstance(outcome, Exception) for outcome in ask_all(base_url, calls))
    stats = control.get("/_sim/stats").json()
    assert stats["total"] == 4
    assert stats["calls"] == {"sim/alpha": 3, "sim/beta": 1}
    assert stats["in_flight"] == 0


def test_requests_are_recorded_with_their_context(base_url, control):
    history = [{"question": "What is Rayleigh scattering?", "answer": "Scattering by molecules."}]
    ask(base_url, ALPHA, answer_messages("And at sunset?", history))
    ask(base_url, BETA, answer_messages("unrelated", []))
    [recorded] = control.get("/_sim/requests", params={"model": "sim/alpha"}).json()
    assert recorded["model"] == "sim/alpha"
    contents = [message["content"] for message in recorded["messages"]]
    assert "What is Rayleigh scattering?" in contents
    assert "Scattering by molecules." in contents
    assert contents[-1] == "And at sunset?"
    assert len(control.get("/_sim/requests", params={"limit": 1}).json()) == 1
    assert control.get("/_sim/requests", params={"limit": "x"}).status_code == 400


def test_reset_zeroes_counters_and_recorded_requests(base_url, control):
    ask(base_url)
    control.post("/_sim/reset").raise_for_status()
    stats = control.get("/_sim/stats").json()
    assert (stats["total"], stats["calls"]) == (0, {})
    assert control.get("/_sim/requests").json() == []


def test_models_lists_every_model_called(base_url, control):
    ask(base_url, BETA)
    ids = [model["id"] for model in httpx.get(f"{base_url}/models").json()["data"]]
    assert "sim/beta" in ids


@pytest.mark.parametrize(
    "fault, kind, status",
    [
        ({"error_rate": 1}, ProviderUnavailable, 500),
        ({"malformed": "truncated"}, MalformedResponse, 200),
        ({"malformed": "html"}, MalformedResponse, 200),
        ({"malformed": "no_choices"}, MalformedResponse, 200),
        ({"malformed": "error_200"}, MalformedResponse, 502),
    ],
)
def test_faults_map_to_their_error_class(base_url, control, fault, kind, status):
    set_fault(control, model="sim/alpha", **fault)
    error = fail(base_url, ALPHA)
    assert type(error) is kind
    assert error.status == status
    assert not isinstance(ask(base_url, BETA), Exception)
    assert control.get("/_sim/stats").json()["calls"] == {"sim/alpha": 1, "sim/beta": 1}


def test_rate_limit_fault_sends_retry_after(base_url, control):
    set_fault(control, model="*", rate_429=1, retry_after_s=3)
    error = fail(base_url, BETA)
    assert type(error) is RateLimited
    assert error.retry_after == 3.0


def test_model_fault_replaces_the_wildcard_fault(base_url, control):
    set_fault(control, model="*", error_rate=1)
    set_fault(control, model="sim/beta", malformed="html")
    assert type(fail(base_url, ALPHA)) is ProviderUnavailable
    assert type(fail(base_url, BETA)) is MalformedResponse
    faults = control.get("/_sim/faults").json()["faults"]
    assert set(faults) == {"*", "sim/beta"}


def test_partial_error_rate_fails_some_calls_and_counts_all(base_url, control):
    set_fault(control, model="sim/alpha", error_rate=0.5)
    outcomes = ask_all(base_url, [(ALPHA, answer_messages(QUESTION, []))] * 40)
    failed = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    assert 0 < len(failed) < 40
    assert all(type(error) is ProviderUnavailable for error in failed)
    stats = control.get("/_sim/stats").json()
    assert stats["total"] == 40
    assert stats["outcomes"] == {"error": len(failed), "answer": 40 - len(failed)}


def test_delete_clears_faults(base_url, control):
    set_fault(control, model="*", error_rate=1)
    assert isinstance(ask(base_url), Exception)
    assert control.delete("/_sim/faults").json() == {"faults": {}}
    assert ask(base_url).content.startswith("[simulated sim/alpha]")


@pytest.mark.parametrize(
    "fault",
    [
        {"error_rate": 0.5},
        {"model": "", "error_rate": 0.5},
        {"model": "*", "error_rate": 1.5},
        {"model": "*", "error_rate": 0.6, "rate_429": 0.6},
        {"model": "*", "malformed": "garbled"},
        {"model": "*", "latency_ms": -1},
        {"model": "*", "explode": True},
        ["not", "an", "object"],
    ],
)
def test_bad_faults_are_refused_with_a_json_error(control, fault):
    response = control.post("/_sim/faults", json=fault)
    assert response.status_code == 400
    assert response.json()["error"]["message"]
    assert control.get("/_sim/faults").json() == {"faults": {}}


def test_hung_call_times_out_and_is_dropped_by_the_simulator(base_url, control):
    set_fault(control, model="sim/alpha", hang_rate=1)
    impatient = Model(id="sim/alpha", name="alpha", timeout_s=0.3)
    assert type(fail(base_url, impatient)) is ProviderTimeout
    deadline = time.monotonic() + 10
    while control.get("/_sim/stats").json()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert control.get("/_sim/stats").json()["in_flight"] == 0


def test_pooled_client_reuses_its_connections(base_url, control):
    calls = [(ALPHA, answer_messages(f"question {n}", [])) for n in range(200)]
    outcomes = ask_all(base_url, calls, max_connections=4)
    assert all(not isinstance(outcome, Exception) for outcome in outcomes)
    stats = control.get("/_sim/stats").json()
    assert stats["total"] == 200
    # The four pooled connections, plus at most one for this stats request.
    assert stats["connections"] <= 5


def test_faults_given_at_start_apply_and_sigterm_stops_cleanly():
    fault = json.dumps({"model": "sim/alpha", "error_rate": 1})
    process, url = start_simulator("--fault", fault)
    try:
        assert type(fail(url, ALPHA)) is ProviderUnavailable
        assert not isinstance(ask(url, BETA), Exception)
    finally:
        assert stop_simulator(process) == 0
