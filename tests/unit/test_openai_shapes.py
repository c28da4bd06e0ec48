"""OpenAI request shapes: a conversation as one question, answers in chunks, presets."""

from __future__ import annotations

import json

import pytest
from marshmallow import ValidationError

from api.openai_shapes import ChatCompletionSchema, fold_conversation, pieces
from shared.settings import SettingsError, load_settings

ROSTER = {"COUNCIL_MEMBERS": "m/a,m/b,m/c", "COUNCIL_CHAIRMAN": "m/chair"}


def test_a_lone_user_message_is_the_question_as_it_is():
    assert fold_conversation([{"role": "user", "content": "Why?"}]) == ("Why?", "Why?")


def test_earlier_messages_come_before_the_question_one_per_paragraph():
    question, latest = fold_conversation([
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text",
                                                                       "text": "there"}]},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Why?"},
    ])
    assert latest == "Why?"
    assert question == ("The conversation so far, for context:\n\nSystem: Be brief.\n\n"
                        "User: Hi\nthere\n\nAssistant: Hello.\n\n"
                        "The question to answer now:\nWhy?")


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
    [{"role": "user", "content": "   "}],
])
def test_the_last_message_must_be_a_users_question(messages):
    with pytest.raises(ValidationError):
        fold_conversation(messages)


@pytest.mark.parametrize("body", [
    {"model": "council/default", "messages": []},
    {"model": "council/default", "messages": [{"role": "tool", "content": "42"}]},
    {"model": "council/default", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]},
    {"model": "council/default", "messages": [{"role": "user", "content": None}]},
    {"model": "council/default", "messages": [{"role": "user", "content": "Hi"}], "n": 3},
    {"messages": [{"role": "user", "content": "Hi"}]},
])
def test_requests_the_council_cannot_answer_are_refused(body):
    with pytest.raises(ValidationError):
        ChatCompletionSchema().load(body)


def test_sampling_parameters_are_accepted_and_ignored():
    body = ChatCompletionSchema().load({
        "model": "council/default", "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.2, "max_tokens": 10, "user": "u1", "stream": None})
    assert body == {"model": "council/default", "messages": [{"role": "user", "content": "Hi"}],
                    "stream": None, "n": 1, "stream_options": None}


def test_pieces_put_the_text_back_together_and_stay_small():
    text = "word " * 300 + "x" * 450
    parts = pieces(text, 100)
    assert "".join(parts) == text and max(map(len, parts)) <= 100 and len(parts) > 10
    assert pieces("") == [] and pieces("short") == ["short"]


def test_presets_are_read_and_checked_against_the_roster():
    presets = {"duo": {"members": ["m/a", "m/b"], "chairman": "m/c", "min_ballots": 2}}
    settings = load_settings({**ROSTER, "COUNCIL_PRESETS": json.dumps(presets)})
    duo = settings.council_presets["duo"]
    assert (duo.model_id, duo.members, duo.chairman) == ("council/duo", ("m/a", "m/b"), "m/c")
    assert (duo.min_answers, duo.min_ballots) == (None, 2)
    assert load_settings(ROSTER).council_presets == {}


@pytest.mark.parametrize("presets", [
    {"duo": {"members": ["m/a", "m/x"], "chairman": "m/c"}},  # not on the roster
    {"duo": {"members": ["m/a"], "chairman": "m/c"}},  # one member
    {"duo": {"members": ["m/a", "m/a"], "chairman": "m/c"}},
    {"duo": {"members": ["m/a", "m/b"]}},  # no chairman
    {"duo": {"members": ["m/a", "m/b"], "chairman": "m/c", "min_answers": 3}},
    {"duo": {"members": ["m/a", "m/b"], "chairman": "m/c", "min_ballots": 0}},
    {"duo": {"members": ["m/a", "m/b"], "chairman": "m/c", "temperature": 1}},
    {"default": {"members": ["m/a", "m/b"], "chairman": "m/c"}},  # reserved
    {"a/b": {"members": ["m/a", "m/b"], "chairman": "m/c"}},
    {"duo": ["m/a", "m/b"]},
])
def test_a_wrong_preset_stops_the_start(presets):
    with pytest.raises(SettingsError):
        load_settings({**ROSTER, "COUNCIL_PRESETS": json.dumps(presets)})


def test_the_wait_must_be_positive():
    with pytest.raises(SettingsError):
        load_settings({"CHAT_COMPLETIONS_WAIT_SECONDS": "0"})
    assert load_settings({}).chat_completions_wait_s == 120
