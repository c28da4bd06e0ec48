"""Prometheus metrics add up every process: gunicorn's workers, and a worker's prefork children.

The API runs under real gunicorn with several workers (recycled every few requests, so many
processes served the requests, some of them gone by the scrape); the worker is a real Celery
worker with a prefork pool of two children; rounds call the simulator over HTTP.
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import free_port, start_api, wait_for

pytestmark = pytest.mark.integration

GUNICORN_CONFIG = ("--config", "python:api.gunicorn_conf")
MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"
RECYCLE_AFTER = 8  # each gunicorn worker exits after this many requests
REQUEST_TIMEOUT_S = 60


def get(url: str) -> httpx.Response:
    """GET on a new connection (so gunicorn's workers share them); a recycled worker's
    successor may take a while to boot on a busy machine."""
    return httpx.get(url, timeout=REQUEST_TIMEOUT_S)


def samples(text: str, name: str) -> list[tuple[dict, float]]:
    """Return the samples called ``name`` in a Prometheus text exposition."""
    return [(sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name]


def value(text: str, name: str, **labels: str) -> float:
    """Return the sum of the ``name`` samples whose labels include ``labels``."""
    return sum(v for found, v in samples(text, name) if labels.items() <= found.items())


def writers(folder: Path, kind: str = "counter") -> set[str]:
    """Return the process ids that wrote samples of ``kind`` into a multiprocess folder."""
    return {path.stem.rpartition("_")[2] for path in folder.glob(f"{kind}_*.db")}


def run_api(environ: dict, folder: Path):
    env = {**environ, MULTIPROC: str(folder)}
    return start_api(env, threads=4, workers=2,
                     arguments=(*GUNICORN_CONFIG, "--max-requests", str(RECYCLE_AFTER)))


def test_api_metrics_count_every_request_once_across_gunicorn_workers(environ, tmp_path):
    folder = tmp_path / "api-metrics"
    api, url = run_api(environ, folder)
    try:
        for _ in range(5):  # a first run's samples, which the next start must wipe
            assert get(f"{url}/v1/models").status_code == 200
    finally:
        api.stop()
    assert writers(folder)

    api, url = run_api(environ, folder)
    session_ids = [uuid.uuid4().hex for _ in range(3)]
    try:
        for _ in range(17):
            assert get(f"{url}/v1/models").status_code == 200
        for session_id in session_ids:
            assert get(f"{url}/v1/sessions/{session_id}").status_code == 404
            assert get(f"{url}/no/such/{session_id}").status_code == 404
        scrape = get(f"{url}/metrics")
    finally:
        api.stop()

    assert scrape.status_code == 200
    text = scrape.text
    assert value(text, "http_requests_total", route="/v1/models", status="200") == 17
    assert value(text, "http_requests_total", route="/v1/sessions/<session_id>",
                 status="404") == 3
    assert value(text, "http_requests_total", route="unmatched", status="404") == 3
    assert value(text, "http_request_duration_seconds_count", route="/v1/models") == 17
    # 23 requests, and no worker serves more than 8: at least 3 processes served them.
    assert len(writers(folder)) >= math.ceil(23 / RECYCLE_AFTER)
    labels = [found for found, _ in samples(text, "http_requests_total")]
    assert all(session_id not in str(found) for found in labels for session_id in session_ids)
    assert {found["route"] for found in labels} == {
        "/health", "/v1/models", "/v1/sessions/<session_id>", "unmatched"}


def test_gunicorn_keeps_a_private_metrics_folder_when_none_is_set(environ):
    env = {name: value for name, value in environ.items() if name != MULTIPROC}
    api, url = start_api(env, threads=4, workers=2,
                         arguments=(*GUNICORN_CONFIG, "--max-requests", str(RECYCLE_AFTER)))
    try:
        for _ in range(9):
            assert get(f"{url}/v1/models").status_code == 200
        text = get(f"{url}/metrics").text
        line = api.wait_for_line("metrics folder ready")
    finally:
        api.stop()
    assert value(text, "http_requests_total", route="/v1/models") == 9
    folder = Path(line.rsplit("metrics folder ready: ", 1)[1].strip())
    assert folder.name.startswith("llm-council-metrics-") and not folder.exists()


def test_worker_metrics_add_up_the_rounds_of_prefork_children(
    client, worker, sim, environ, tmp_path
):
    folder = tmp_path / "worker-metrics"
    port = free_port()
    worker("pf", arguments=("--pool", "prefork", "--concurrency", "2"),
           env={"PROMETHEUS_MULTIPROC_DIR": str(folder), "WORKER_METRICS_PORT": str(port)})
    sim.set_faults(model="*", latency_ms=300)  # both children busy at once
    session_ids = [client.post("/v1/sessions", json={"question": f"Question {n}?"}).json["id"]
                   for n in range(4)]

    def all_completed():
        return all(client.get(f"/v1/sessions/{sid}").json["status"] == "completed"
                   for sid in session_ids)

    wait_for(all_completed, "the four rounds to complete", timeout_s=60)
    text = get(f"http://127.0.0.1:{port}/metrics").raise_for_status().text

    assert value(text, "council_rounds_total", mode="council", status="completed") == 4
    assert value(text, "council_round_duration_seconds_count") == 4
    for stage in ("answers", "rankings", "synthesis"):
        assert value(text, "council_stage_duration_seconds_count", stage=stage) == 4
    calls = sim.stats()["total"]
    assert value(text, "llm_requests_total", outcome="ok") == calls
    assert value(text, "llm_request_duration_seconds_count") == calls
    assert value(text, "llm_tokens_total", kind="completion") > 0
    assert len(writers(folder)) >= 2  # both children counted rounds: the sum is of both
