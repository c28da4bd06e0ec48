"""The settings and roster options behind retries, quotas, deadlines, quorums and stand-ins."""

from __future__ import annotations

import json

import pytest

from shared.council.policy import RoundPolicy
from shared.roster import RosterError, build_roster
from shared.settings import SettingsError, load_settings

MEMBERS = ("a/one", "a/two")


def test_quota_options_are_read_per_model():
    roster = build_roster(MEMBERS, "a/chair", {"a/one": {"rpm": 60, "max_concurrency": 4}})
    assert (roster.model("a/one").rpm, roster.model("a/one").max_concurrency) == (60, 4)
    assert (roster.model("a/two").rpm, roster.model("a/two").max_concurrency) == (None, None)


@pytest.mark.parametrize("option", [
    {"rpm": 0}, {"rpm": 1.5}, {"rpm": "60"}, {"rpm": True}, {"max_concurrency": -1},
])
def test_quota_options_must_be_whole_positive_numbers(option):
    with pytest.raises(RosterError, match="a/one"):
        build_roster(MEMBERS, "a/chair", {"a/one": option})


def test_stand_ins_join_the_roster_in_order():
    roster = build_roster(MEMBERS, "a/chair", chairman_fallbacks=["b/second", "b/third"])
    assert roster.chairman_fallbacks == ("b/second", "b/third")
    assert {"b/second", "b/third"} <= set(roster.models)


@pytest.mark.parametrize("fallbacks", [["a/chair"], ["b/x", "b/x"]])
def test_stand_ins_are_distinct_from_each_other_and_the_chairman(fallbacks):
    with pytest.raises(RosterError):
        build_roster(MEMBERS, "a/chair", chairman_fallbacks=fallbacks)


def test_the_policy_comes_from_the_settings():
    settings = load_settings({
        "COUNCIL_CHAIRMAN_FALLBACKS": "b/second, b/third", "STAGE_DEADLINE_SECONDS": "30",
        "ROUND_DEADLINE_SECONDS": "90", "COUNCIL_MIN_ANSWERS": "3", "COUNCIL_MIN_BALLOTS": "2",
        "PROVIDER_MAX_ATTEMPTS": "4",
        "COUNCIL_MODEL_OPTIONS": json.dumps({"b/second": {"rpm": 10}}),
    })
    policy = RoundPolicy.from_settings(settings)
    assert policy == RoundPolicy(30.0, 90.0, 3, 2, ("b/second", "b/third"))
    assert settings.provider_max_attempts == 4
    assert settings.roster.model("b/second").rpm == 10
    assert policy.chairmen("b/third") == ["b/third", "b/second"]


@pytest.mark.parametrize("environ", [
    {"STAGE_DEADLINE_SECONDS": "0"},
    {"STAGE_DEADLINE_SECONDS": "700"},            # longer than the round's deadline
    {"ROUND_DEADLINE_SECONDS": "900"},            # not below ROUND_TIME_LIMIT
    {"COUNCIL_MIN_ANSWERS": "1"},
    {"COUNCIL_MIN_BALLOTS": "0"},
    {"PROVIDER_MAX_ATTEMPTS": "0"},
    {"CIRCUIT_BREAKER_FAIL_MAX": "0"},
    {"COUNCIL_CHAIRMAN_FALLBACKS": "openai/gpt-4o-mini"},  # the default chairman itself
])
def test_inconsistent_resilience_settings_are_refused_at_start(environ):
    with pytest.raises(SettingsError):
        load_settings(environ)
