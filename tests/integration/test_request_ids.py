"""A request's id follows its round from the API into a real worker's JSON log lines."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.processes import wait_for

pytestmark = pytest.mark.integration

REQUEST_ID = "trace-7f3a.e2e:1"


def json_lines(lines: list[str]) -> list[dict]:
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # Celery's start-up banner
        if isinstance(record, dict):
            records.append(record)
    return records


def test_the_worker_logs_a_round_with_the_request_id_of_its_api_request(client, worker, sim):
    w1 = worker("w1")
    sim.set_faults(model="sim/delta", error_rate=1.0)  # its failures are logged with its id
    response = client.post("/v1/sessions", json={"question": "Why is the sky blue?"},
                           headers={"X-Request-ID": REQUEST_ID})
    assert response.headers["X-Request-ID"] == REQUEST_ID
    session_id = response.get_json()["id"]
    wait_for(lambda: client.get(f"/v1/sessions/{session_id}").get_json()["status"] == "degraded",
             "the round to end", timeout_s=60)
    w1.wait_for_line('"round finished"')

    ours = [r for r in json_lines(w1.lines) if r.get("request_id") == REQUEST_ID]
    [finished] = [r for r in ours if r["message"] == "round finished"]
    assert (finished["session_id"], finished["round_no"]) == (session_id, 1)
    assert finished["level"] == "INFO" and finished["timestamp"] and finished["task_id"]
    assert {r["task_id"] for r in ours} == {finished["task_id"]}
    assert {r["session_id"] for r in ours} == {session_id}
    failures = [r for r in ours if r["message"] == "call failed"]
    assert failures and {r["model"] for r in failures} == {"sim/delta"}
    assert not any("Why is the sky blue?" in line for line in w1.lines)  # no prompts at INFO


@pytest.mark.parametrize("offered", ["has spaces", "x" * 200, "caf\u00e9", "", "-leading"])
def test_a_request_id_that_is_not_a_sane_token_is_replaced(client, offered):
    response = client.get("/v1/models", headers={"X-Request-ID": offered})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_every_answer_carries_a_request_id_even_an_error(client):
    first = client.get("/v1/sessions/nope").headers["X-Request-ID"]
    second = client.post("/v1/sessions", data="not json").headers["X-Request-ID"]
    assert first != second
