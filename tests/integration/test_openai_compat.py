"""The council as an OpenAI model, driven by the official ``openai`` package over real HTTP.

The API runs under gunicorn, a real Celery worker runs the rounds against the simulator, and the
client is ``openai.OpenAI`` pointed at the API's ``/v1`` with an API key.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.conftest import CHAIRMAN, MEMBERS
from tests.support.processes import start_api

pytestmark = pytest.mark.integration

KEY = "test-key-for-the-openai-client"
TRIO = MEMBERS.split(",")[:3]
PRESETS = {"trio": {"members": TRIO, "chairman": CHAIRMAN, "min_answers": 3}}
CLIENT_TIMEOUT_S = 60


@pytest.fixture
def environ(environ):
    return {**environ, "API_KEY": KEY, "COUNCIL_PRESETS": json.dumps(PRESETS)}


@pytest.fixture
def api(environ):
    process, url = start_api(environ)
    yield url
    process.stop()


@pytest.fixture
def client(api):
    with openai.OpenAI(base_url=f"{api}/v1", api_key=KEY, timeout=CLIENT_TIMEOUT_S) as client:
        yield client


@pytest.fixture
def http(api):
    with httpx.Client(base_url=api, timeout=CLIENT_TIMEOUT_S,
                      headers={"Authorization": f"Bearer {KEY}"}) as http:
        yield http


def ask(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


def test_a_council_answers_as_a_chat_completion(client, http, worker, sim):
    worker()
    completion = client.chat.completions.create(model="council/default",
                                                messages=ask("Why is the sea salty?"))
    council = completion.model_extra["council"]
    session = http.get(f"/v1/sessions/{council['session_id']}").json()
    round_ = session["rounds"][0]
    assert completion.object == "chat.completion" and completion.model == "council/default"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == round_["synthesis"]["content"]
    assert completion.usage.total_tokens > 0
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == tuple(
        session["usage"][key] for key in ("prompt_tokens", "completion_tokens", "total_tokens"))
    assert council["status"] == round_["status"] == "completed"
    assert [a["member"] for a in council["answers"]] == [a["member"] for a in round_["answers"]]
    assert {s["member"] for s in council["aggregate"]} == set(MEMBERS.split(","))
    assert council["poll_url"] == f"/v1/sessions/{session['id']}"
    assert sim.stats()["calls"][CHAIRMAN] == 1


def test_a_preset_council_is_a_model_of_its_own(client, worker, sim):
    listed = {model.id: model for model in client.models.list()}
    assert {"council/default", "council/trio", *MEMBERS.split(","), CHAIRMAN} == set(listed)
    assert listed["council/trio"].owned_by == "llm-council"
    assert listed["council/trio"].model_extra["council"]["members"] == TRIO
    assert listed["sim/alpha"].object == "model" and listed["sim/alpha"].owned_by == "sim"

    worker()
    completion = client.chat.completions.create(model="council/trio", messages=ask("Why?"))
    council = completion.model_extra["council"]
    assert council["members"] == TRIO and council["status"] == "completed"
    assert set(sim.stats()["calls"]) == {*TRIO, CHAIRMAN}


def test_a_streamed_completion_reassembles_to_the_synthesis(client, http, worker):
    worker()
    stream = client.chat.completions.create(
        model="council/default", messages=ask("What makes a good council?"), stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    council = chunks[-2].model_extra["council"]
    session = http.get(f"/v1/sessions/{council['session_id']}").json()
    assert text == session["rounds"][0]["synthesis"]["content"]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert len({c.id for c in chunks}) == 1 and chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.total_tokens == session["usage"]["total_tokens"]


def test_a_stream_shows_progress_as_comments_and_ends_with_done(http, worker):
    worker()
    body = {"model": "council/default", "messages": ask("Is the moon hollow?"), "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    comments = [line for line in lines if line.startswith(":")]
    stages = [line for line in comments if line.startswith(": stage ")]
    assert stages == [": stage answers", ": stage rankings", ": stage synthesis"]
    assert ": round.finished completed" in comments
    assert lines[-1] == "data: [DONE]"
    assert lines.index(stages[-1]) < next(i for i, line in enumerate(lines)
                                          if '"content":"' in line and '"content":""' not in line)


def test_earlier_messages_reach_the_council_as_context(client, http, worker, sim):
    worker()
    messages = [
        {"role": "system", "content": "Answer like a ship's captain."},
        {"role": "user", "content": "What is a knot?"},
        {"role": "assistant", "content": "A nautical mile per hour."},
        {"role": "user", "content": [{"type": "text", "text": "And a fathom?"}]},
    ]
    completion = client.chat.completions.create(model="council/default", messages=messages)
    session_id = completion.model_extra["council"]["session_id"]
    session = http.get(f"/v1/sessions/{session_id}").json()
    asked = sim.requests(model="sim/alpha")[0]["messages"][-1]["content"]
    assert asked == session["rounds"][0]["question"] == (
        "The conversation so far, for context:\n\n"
        "System: Answer like a ship's captain.\n\n"
        "User: What is a knot?\n\n"
        "Assistant: A nautical mile per hour.\n\n"
        "The question to answer now:\nAnd a fathom?")
    assert session["title"] == "And a fathom?"


def test_errors_come_in_openai_shape(client, http, api):
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="council/nobody", messages=ask("Hello?"))
    assert missing.value.code == "model_not_found" and missing.value.param == "model"

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="sim/alpha", messages=ask("Hello?"))

    with openai.OpenAI(base_url=f"{api}/v1", api_key="not-a-key", max_retries=0) as stranger:
        with pytest.raises(openai.AuthenticationError) as refused:
            stranger.chat.completions.create(model="council/default", messages=ask("Hi?"))
    assert refused.value.code == "invalid_api_key"
    assert refused.value.body["type"] == "invalid_request_error"

    ends_with_assistant = [*ask("Hi?"), {"role": "assistant", "content": "Hello."}]
    with pytest.raises(openai.BadRequestError) as invalid:
        client.chat.completions.create(model="council/default", messages=ends_with_assistant)
    assert invalid.value.param == "messages" and invalid.value.type == "invalid_request_error"

    with pytest.raises(openai.BadRequestError) as too_many:
        client.chat.completions.create(model="council/default", messages=ask("Hi?"), n=2)
    assert too_many.value.param == "n"

    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(model="council/default", messages=ask("why " * 600))
    assert too_long.value.code == "context_length_exceeded"
    assert http.get("/v1/sessions").json()["data"] == []  # nothing refused was stored


def test_a_council_still_working_at_the_bound_names_the_session_to_poll(environ, sim):
    process, url = start_api({**environ, "CHAT_COMPLETIONS_WAIT_SECONDS": "0.5"})
    try:
        with openai.OpenAI(base_url=f"{url}/v1", api_key=KEY) as client:  # no worker runs
            with pytest.raises(openai.InternalServerError) as late:
                client.chat.completions.create(model="council/default", messages=ask("Slow?"))
            stream = client.chat.completions.create(model="council/default", stream=True,
                                                    messages=ask("Slower?"))
            with pytest.raises(openai.APIError) as late_stream:
                list(stream)
        sessions = httpx.get(f"{url}/v1/sessions", headers={"Authorization": f"Bearer {KEY}"})
    finally:
        process.stop()
    error = late.value
    assert error.status_code == 504 and error.code == "council_timeout"
    assert error.response.headers["Location"] == error.body["poll_url"]
    assert error.body["poll_url"] in error.message
    assert late_stream.value.code == "council_timeout"
    # x-should-retry: false kept the client from starting the council again
    assert [s["status"] for s in sessions.json()["data"]] == ["queued", "queued"]
