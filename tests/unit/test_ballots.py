import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.council.ballots import (
    InvalidBallot,
    assign_labels,
    failed_ballot,
    label,
    make_ballot,
    parse_ranking,
)

MEMBERS = ["m/one", "m/two", "m/three", "m/four", "m/five"]
LABELS = ["Response A", "Response B", "Response C"]
BALLOT_KEYS = {"reviewer", "labels", "ranking", "valid", "raw", "error", "usage", "latency_ms"}
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def test_labels_count_in_letters():
    assert [label(i) for i in (0, 1, 25, 26, 27, 701, 702)] == [
        "Response A",
        "Response B",
        "Response Z",
        "Response AA",
        "Response AB",
        "Response ZZ",
        "Response AAA",
    ]


def test_assign_labels_shows_every_other_member_once():
    labels = assign_labels(MEMBERS, "m/two", random.Random(1))
    assert list(labels) == [label(i) for i in range(4)]
    assert sorted(labels.values()) == sorted(m for m in MEMBERS if m != "m/two")


def test_assign_labels_shows_everyone_to_a_non_member():
    labels = assign_labels(MEMBERS, "chair/only", random.Random(1))
    assert sorted(labels.values()) == sorted(MEMBERS)


def test_assign_labels_is_reproducible_from_the_seed():
    first = assign_labels(MEMBERS, "m/one", random.Random("s:1:m/one"))
    again = assign_labels(MEMBERS, "m/one", random.Random("s:1:m/one"))
    assert first == again


def test_assign_labels_shuffles_afresh_for_each_reviewer():
    rng = random.Random(7)
    reviewers = ["m/one", "m/two", "m/three"] * 4
    orders = [tuple(assign_labels(MEMBERS, reviewer, rng).values()) for reviewer in reviewers]
    relative = {tuple(m for m in order if m in ("m/four", "m/five")) for order in orders}
    assert relative == {("m/four", "m/five"), ("m/five", "m/four")}
    assert len(set(orders)) > 3


def test_assign_labels_leaves_the_members_list_alone():
    members = list(MEMBERS)
    assign_labels(members, "m/one", random.Random(2))
    assert members == MEMBERS


@pytest.mark.parametrize(
    "text",
    [
        '{"ranking": ["Response C", "Response A", "Response B"]}',
        'B was vague.\n{"ranking": ["Response C", "Response A", "Response B"]}\nThanks.',
        'Evaluation...\n```json\n{"ranking": ["Response C", "Response A", "Response B"]}\n```',
        '{"evaluation": "C wins", "Ranking": ["C", "a", "response b"]}',
        '["Response C", "Response A", "Response B"]',
        '```\n["C", "A", "B"]\n```',
        "C is best.\nFINAL RANKING:\n1. Response C\n2. Response A\n3. Response B",
        "**FINAL RANKING:**\n\n1) **Response C** - clear\n2) Response A: fine\n3) B.\n\nDone.",
        "Final ranking:\n- Response C\n- Response A\n- Response B",
        "FINAL RANKING: Response C, Response A, Response B",
        "FINAL RANKING: C > A > B",
    ],
)
def test_parse_ranking_reads_each_form(text):
    assert parse_ranking(text, LABELS) == ["Response C", "Response A", "Response B"]


def test_the_last_json_ranking_is_the_reply():
    text = (
        'At first {"ranking": ["Response A", "Response B", "Response C"]}, but on reflection\n'
        '{"ranking": ["Response B", "Response C", "Response A"]}'
    )
    assert parse_ranking(text, LABELS) == ["Response B", "Response C", "Response A"]


def test_a_json_ranking_outranks_the_final_ranking_list():
    text = (
        "FINAL RANKING:\n1. Response A\n2. Response B\n3. Response C\n"
        '{"ranking": ["Response C", "Response B", "Response A"]}'
    )
    assert parse_ranking(text, LABELS) == ["Response C", "Response B", "Response A"]


def test_a_final_ranking_list_outranks_a_stray_array():
    text = 'It cites ["x", "y"].\nFINAL RANKING:\n1. Response B\n2. Response A\n3. Response C'
    assert parse_ranking(text, LABELS) == ["Response B", "Response A", "Response C"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"ranking": ["Response A", "Response B"]}', "missing labels: Response C"),
        ('{"ranking": ["A", "B", "C", "D"]}', "unknown label 'D'"),
        ('{"ranking": ["A", "B", "B", "C"]}', "duplicate label 'Response B'"),
        ('{"ranking": ["A", "B", "Response Q"]}', "unknown label 'Response Q'"),
        ('{"ranking": ["A", "B", "the third one"]}', "unknown label 'the third one'"),
        ('{"ranking": [1, 2, 3]}', "unknown label 1"),
        ('{"ranking": []}', "empty ranking"),
        ("", "empty reply"),
        ("   \n", "empty reply"),
        ("All three answers are fine.", "no ranking found"),
        ("{not json] [[[ FINAL", "no ranking found"),
        ('{"ranking": ["A", "B", "C",]}', "no ranking found"),
        ("FINAL RANKING:\n1. Response A\n2. the rest", "unknown label 'the rest'"),
        ("FINAL RANKING:\n1. A\n2. B\n3. C\n4. C", "duplicate label 'Response C'"),
    ],
)
def test_parse_ranking_rejects_what_is_not_a_permutation(text, reason):
    with pytest.raises(InvalidBallot) as raised:
        parse_ranking(text, LABELS)
    assert raised.value.reason == reason
    assert str(raised.value) == reason


def test_deep_nesting_is_just_not_a_ranking():
    with pytest.raises(InvalidBallot, match="no ranking found"):
        parse_ranking('"ranking": ' + "[" * 100_000, LABELS)


@st.composite
def shown_and_ranked(draw):
    labels = [label(i) for i in range(draw(st.integers(1, 30)))]
    return labels, draw(st.permutations(labels))


@given(shown_and_ranked(), st.sampled_from(["json", "fenced", "array", "letters", "list"]))
def test_parse_ranking_accepts_every_permutation(case, form):
    labels, ranking = case
    letters = [name.removeprefix("Response ").lower() for name in ranking]
    text = {
        "json": json.dumps({"ranking": ranking}),
        "fenced": f"Fine.\n```json\n{json.dumps({'ranking': ranking})}\n```\n",
        "array": json.dumps(ranking),
        "letters": json.dumps({"ranking": letters}),
        "list": "FINAL RANKING:\n" + "\n".join(f"{i}. {n}" for i, n in enumerate(ranking, 1)),
    }[form]
    assert parse_ranking(text, labels) == ranking


@given(shown_and_ranked(), st.data())
def test_parse_ranking_rejects_every_incomplete_ranking(case, data):
    labels, ranking = case
    dropped = data.draw(st.integers(0, len(ranking) - 1))
    with pytest.raises(InvalidBallot):
        parse_ranking(json.dumps({"ranking": ranking[:dropped]}), labels)


def test_a_valid_ballot_ranks_members():
    labels = {"Response A": "m/two", "Response B": "m/three"}
    raw = '{"ranking": ["Response B", "Response A"]}'
    ballot = make_ballot("m/one", labels, raw, USAGE, 120)
    assert set(ballot) == BALLOT_KEYS
    assert ballot == {
        "reviewer": "m/one",
        "labels": labels,
        "ranking": ["m/three", "m/two"],
        "valid": True,
        "raw": raw,
        "error": None,
        "usage": USAGE,
        "latency_ms": 120,
    }


def test_an_invalid_ballot_keeps_the_reply_and_the_reason():
    labels = {"Response A": "m/two", "Response B": "m/three"}
    ballot = make_ballot("m/one", labels, "Both are good.", USAGE, 80)
    assert set(ballot) == BALLOT_KEYS
    assert ballot["valid"] is False
    assert ballot["ranking"] is None
    assert ballot["raw"] == "Both are good."
    assert ballot["error"] == "no ranking found"
    assert ballot["usage"] == USAGE


def test_a_failed_call_leaves_a_failed_ballot():
    labels = {"Response A": "m/two"}
    ballot = failed_ballot("m/one", labels, "timed out after 30 s", 30_000)
    assert ballot == {
        "reviewer": "m/one",
        "labels": labels,
        "ranking": None,
        "valid": False,
        "raw": None,
        "error": "timed out after 30 s",
        "usage": None,
        "latency_ms": 30_000,
    }
