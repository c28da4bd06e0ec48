"""Turn stored sessions into the JSON that clients read."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.records import UNFINISHED
from shared.roster import Roster

USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


def iso(timestamp: float | None) -> str | None:
    """Return an epoch timestamp as an ISO 8601 UTC string."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def session_body(session: dict, roster: Roster) -> dict:
    """Return the full client view of a session with its rounds (never its owner)."""
    rounds = [round_body(r, roster) for r in session["rounds"]]
    return {
        **session_summary(session),
        "mode": session["mode"],
        "priority": session["priority"],
        "branched_from": session["branched_from"],
        "members": [_model_ref(m, roster) for m in session["members"]],
        "chairman": _model_ref(session["chairman"], roster),
        "rounds": rounds,
        "usage": add_usage(r["usage"] for r in rounds),
    }


def private_session_body(session: dict, roster: Roster) -> dict:
    """Return what the session's owner sees: the public view plus its webhook details."""
    return {
        **session_body(session, roster),
        "shared": session["share_token"] is not None,
        "callback_url": session["callback_url"],
        "deliveries": session["deliveries"],
    }


def session_summary(session: dict) -> dict:
    """Return the list view of a session."""
    return {
        "id": session["id"],
        "title": session["title"],
        "status": session["status"],
        "pinned": session["pinned"],
        "created_at": iso(session["created_at"]),
        "updated_at": iso(session["updated_at"]),
        "round_count": len(session["rounds"]),
        "links": {"self": f"/v1/sessions/{session['id']}"},
    }


def round_body(round_: dict, roster: Roster) -> dict:
    """Return the client view of one round."""
    answers = [_call(a, a["member"], roster) for a in round_["answers"]]
    ballots = [_call(b, b["reviewer"], roster) for b in round_["ballots"]]
    synthesis = _call(round_["synthesis"], round_["synthesis"]["model"], roster) if (
        round_["synthesis"]) else None
    return {
        "round_no": round_["round_no"],
        "question": round_["question"],
        "status": round_["status"],
        "stage": round_["stage"] if round_["status"] in UNFINISHED else None,
        "attempts": round_["attempts"],
        "created_at": iso(round_["created_at"]),
        "started_at": iso(round_["started_at"]),
        "finished_at": iso(round_["finished_at"]),
        "answers": answers,
        "ballots": ballots,
        "aggregate": _aggregate(round_["aggregate"], roster),
        "synthesis": synthesis,
        "notes": round_["notes"],
        "error": round_["error"],
        "usage": add_usage(call["usage"] for call in [*answers, *ballots, synthesis] if call),
    }


def add_usage(usages) -> dict:
    """Sum token counts (and cost, where reported) over calls."""
    total: dict = dict.fromkeys(USAGE_KEYS, 0)
    for usage in usages:
        for key in USAGE_KEYS:
            total[key] += (usage or {}).get(key) or 0
        if usage and usage.get("cost") is not None:
            total["cost"] = total.get("cost", 0.0) + usage["cost"]
    return total


def _model_ref(model_id: str, roster: Roster) -> dict:
    model = roster.models.get(model_id)
    return {"id": model_id, "name": model.name if model else model_id}


def _call(call: dict, model_id: str, roster: Roster) -> dict:
    """Return a stored call with its model's display name and its cost filled in."""
    model = roster.models.get(model_id)
    usage = call.get("usage")
    if usage and model is not None and usage.get("cost") is None:
        cost = model.cost_of(usage)
        usage = usage if cost is None else {**usage, "cost": cost}
    return {**call, "usage": usage, "name": model.name if model else model_id}


def _aggregate(standings: list[dict] | None, roster: Roster) -> list[dict] | None:
    if standings is None:
        return None
    return [
        {**s, "rank": place, "name": _model_ref(s["member"], roster)["name"]}
        for place, s in enumerate(standings, start=1)
    ]
