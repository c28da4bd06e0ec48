"""What progress events and webhook deliveries look like, without any server."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from api.events import frame
from shared.events import engine_event, valid_entry_id
from shared.settings import load_settings
from shared.webhooks import MAX_BACKOFF_S, backoff_s, payload, sign


def test_engine_events_publish_ids_and_statuses_only():
    data = {"member": "sim/alpha", "ok": True, "content": "the whole answer", "usage": {}}
    assert engine_event(1, "answer", data) == {
        "type": "answer.recorded", "round_no": 1, "member": "sim/alpha", "ok": True}
    assert engine_event(2, "finished", {"status": "degraded"}) == {
        "type": "round.finished", "round_no": 2, "status": "degraded"}
    assert engine_event(1, "something-new", {}) is None


def test_a_frame_names_its_id_type_and_data():
    text = frame("1700000000000-3", {"type": "stage.started", "round_no": 1, "stage": "answers"})
    assert text == ('id: 1700000000000-3\nevent: stage.started\n'
                    'data: {"type":"stage.started","round_no":1,"stage":"answers"}\n\n')


@pytest.mark.parametrize(("value", "valid"), [
    ("0-0", True), ("1700000000000-3", True), ("1700000000000", True),
    ("", False), ("abc", False), ("1-2-3", False), ("1-", False), ("9" * 21, False),
])
def test_only_stream_entry_ids_are_accepted_as_last_event_id(value, valid):
    assert valid_entry_id(value) is valid


def test_the_signature_is_an_hmac_of_timestamp_and_body():
    body = b'{"type":"round.finished"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("s3cret", "1700000000", body) == "sha256=" + expected


def test_backoff_doubles_with_jitter_and_is_capped():
    settings = load_settings({"WEBHOOK_BACKOFF_SECONDS": "2"})
    for attempt, ceiling in ((1, 2), (2, 4), (3, 8)):
        waits = [backoff_s(settings, attempt) for _ in range(200)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
        assert len(set(waits)) > 1
    assert backoff_s(settings, 30) <= MAX_BACKOFF_S
    assert backoff_s(settings, 1, retry_after_s=60) == 60


def test_the_payload_links_the_session_from_the_public_base_url():
    session = {"id": "abc"}
    round_ = {"round_no": 2, "status": "failed", "finished_at": 0.5}
    settings = load_settings({"PUBLIC_BASE_URL": "https://council.example.com/"})
    assert payload(session, round_, settings) == {
        "type": "round.finished", "session_id": "abc", "round_no": 2, "status": "failed",
        "session_url": "https://council.example.com/v1/sessions/abc",
        "finished_at": "1970-01-01T00:00:00.500000Z",
    }
    assert payload(session, round_, load_settings({}))["session_url"] == "/v1/sessions/abc"
