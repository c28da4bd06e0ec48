"""``llm-council ask``: submit a question to a running API and follow it to the end."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import httpx

TERMINAL = {"completed", "degraded", "failed", "cancelled"}
POLL_EVERY_S = 0.5
WAIT_S = 20  # below the client's 30 s read timeout


def ask(
    base_url: str, question: str, api_key: str | None = None, out: TextIO = sys.stdout,
    timeout_s: float = 600.0,
) -> dict:
    """Submit a question, print progress by stage, then the answer and ranking; return the round."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        response = client.post("/v1/sessions", json={"question": question})
        _raise_for_error(response)
        location = response.headers["Location"]
        print(f"submitted: {base_url.rstrip('/')}{location}", file=out)
        round_ = _follow(client, location, out, time.monotonic() + timeout_s)
    print_result(round_, out)
    return round_


def _follow(client: httpx.Client, location: str, out: TextIO, deadline: float) -> dict:
    """Long-poll the session: each answer comes when it changed (``?wait``, ``If-None-Match``)."""
    seen: set[str] = set()
    etag = None
    while time.monotonic() < deadline:
        asked = {"params": {"wait": WAIT_S}, "headers": {"If-None-Match": etag}} if etag else {}
        response = client.get(location, **asked)
        if response.status_code == 304:
            time.sleep(POLL_EVERY_S)  # unchanged: the wait ran out, or the API had no free slot
            continue
        _raise_for_error(response)
        etag = response.headers.get("ETag")
        round_ = response.json()["rounds"][-1]
        for line in progress_lines(round_):
            if line not in seen:
                seen.add(line)
                print(line, file=out, flush=True)
        if round_["status"] in TERMINAL:
            return round_
    raise TimeoutError("the round did not finish in time")


def progress_lines(round_: dict) -> list[str]:
    """Return one line per thing that has happened in the round so far."""
    lines = [f"stage: {round_['stage']}"] if round_["stage"] else []
    lines += [f"  answer from {a['name']}: {'ok' if a['content'] else a['error']}"
              for a in round_["answers"]]
    lines += [f"  ballot from {b['name']}: {'valid' if b['valid'] else 'invalid'}"
              for b in round_["ballots"]]
    return [*lines, f"status: {round_['status']}"]


def print_result(round_: dict, out: TextIO) -> None:
    """Print the ranking table and the final answer."""
    if round_.get("aggregate"):
        print("\nranking (mean rank, lower is better):", file=out)
        for standing in round_["aggregate"]:
            mean = standing["mean_rank"]
            shown = f"{mean:.2f}" if mean is not None else "n/a"
            print(f"  {standing['rank']}. {standing['name']}  {shown}"
                  f"  ({standing['ballots']} ballots)", file=out)
    for note in round_.get("notes") or []:
        print(f"note: {note}", file=out)
    synthesis = round_.get("synthesis") or {}
    if synthesis.get("content"):
        print(f"\nfinal answer ({synthesis['name']}):\n{synthesis['content']}", file=out)
    elif round_.get("error"):
        print(f"\nthe round {round_['status']}: {round_['error']}", file=out)


def _raise_for_error(response: httpx.Response) -> None:
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            message = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise SystemExit(f"error {response.status_code}: {message}")
