import pickle
from email.utils import formatdate

import httpx
import pytest

from shared.provider.errors import (
    REASON_MAX_CHARS,
    ContextLengthExceeded,
    MalformedResponse,
    PermanentError,
    PoolExhausted,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    TransientError,
    classify,
    retry_after_seconds,
)

REQUEST = httpx.Request("POST", "https://provider.test/v1/chat/completions")


def respond(status, body=None, *, text=None, headers=None):
    if text is not None:
        return httpx.Response(status, text=text, headers=headers, request=REQUEST)
    return httpx.Response(status, json=body, headers=headers, request=REQUEST)


def error_body(message, code=None):
    return {"error": {"message": message, "code": code}}


@pytest.mark.parametrize("status", [408, 409, 425, 500, 502, 503, 504, 529])
def test_server_side_statuses_are_unavailable(status):
    error = classify(respond(status, error_body("try later")))
    assert type(error) is ProviderUnavailable
    assert isinstance(error, TransientError)
    assert error.status == status
    assert error.reason == f"HTTP {status}: try later"


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 422])
def test_other_client_errors_are_rejected(status):
    error = classify(respond(status, error_body("no such thing")))
    assert type(error) is RequestRejected
    assert isinstance(error, PermanentError)
    assert error.status == status


@pytest.mark.parametrize(
    "body",
    [
        error_body("This model's maximum context length is 8192 tokens.", "invalid_request"),
        error_body("Input is too long.", "context_length_exceeded"),
        {"error": {"message": "too many tokens in the prompt"}},
        {"detail": "prompt is too long: 210000 tokens > 200000 maximum"},
    ],
)
def test_context_length_is_its_own_permanent_error(body):
    error = classify(respond(400, body))
    assert type(error) is ContextLengthExceeded
    assert isinstance(error, PermanentError)


def test_rate_limit_reads_retry_after_seconds():
    error = classify(respond(429, error_body("slow down"), headers={"Retry-After": "7"}))
    assert type(error) is RateLimited
    assert error.retry_after == 7.0
    assert error.status == 429


def test_rate_limit_reads_retry_after_http_date():
    when = formatdate(timeval=4_000_000_030.0, usegmt=True)
    assert retry_after_seconds(when, now=4_000_000_000.0) == pytest.approx(30.0)
    error = classify(respond(429, error_body("slow down"), headers={"Retry-After": when}))
    assert type(error) is RateLimited
    assert error.retry_after > 0


def test_rate_limit_without_retry_after():
    error = classify(respond(429, error_body("slow down")))
    assert type(error) is RateLimited
    assert error.retry_after is None


@pytest.mark.parametrize(
    "value, expected",
    [
        ("0", 0.0),
        ("1.5", 1.5),
        (" 12 ", 12.0),
        ("-3", 0.0),
        ("inf", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
    ],
)
def test_retry_after_values(value, expected):
    assert retry_after_seconds(value, now=1_000.0) == expected


def test_server_errors_keep_their_retry_after():
    error = classify(respond(503, error_body("maintenance"), headers={"Retry-After": "20"}))
    assert type(error) is ProviderUnavailable
    assert error.retry_after == 20.0


@pytest.mark.parametrize(
    "code, kind",
    [
        (502, MalformedResponse),
        (429, MalformedResponse),
        (408, MalformedResponse),
        (None, MalformedResponse),
        ("not a number", MalformedResponse),
        (400, RequestRejected),
        (401, RequestRejected),
        (403, RequestRejected),
    ],
)
def test_openrouter_error_inside_http_200_is_classified_by_its_code(code, kind):
    error = classify(respond(200, error_body("upstream failed", code)))
    assert type(error) is kind
    assert "upstream failed" in error.reason


def test_openrouter_context_length_inside_http_200():
    body = error_body("maximum context length exceeded", 400)
    assert type(classify(respond(200, body))) is ContextLengthExceeded


@pytest.mark.parametrize(
    "response",
    [
        respond(200, text='{"id": "x", "choices": [{"message": {"cont'),
        respond(200, text=""),
        respond(200, text="<html><body>Gateway</body></html>"),
        respond(200, text="<!DOCTYPE html><p>hi</p>", headers={"Content-Type": "text/html"}),
        respond(200, {"id": "x", "choices": []}),
        respond(200, {"id": "x"}),
        respond(200, ["not", "an", "object"]),
        respond(200, {"choices": [{"message": {"role": "assistant", "content": None}}]}),
    ],
)
def test_unusable_success_bodies_are_malformed(response):
    error = classify(response)
    assert type(error) is MalformedResponse
    assert isinstance(error, TransientError)


def test_html_error_pages_are_named_not_quoted():
    page = "<html><head><title>502</title></head><body>" + "x" * 5000 + "</body></html>"
    error = classify(respond(502, text=page, headers={"Content-Type": "text/html"}))
    assert type(error) is ProviderUnavailable
    assert error.reason == "HTTP 502: an HTML error page"


def test_reasons_are_short_and_carry_no_keys():
    secret = "sk-or-v1-0123456789abcdef0123456789abcdef"
    error = classify(respond(401, error_body(f"bad key {secret} " + "y" * 1000)))
    assert len(error.reason) <= REASON_MAX_CHARS
    assert secret not in error.reason
    assert str(error) == error.reason


def test_plain_text_error_bodies_are_truncated():
    error = classify(respond(500, text="boom " * 500))
    assert type(error) is ProviderUnavailable
    assert len(error.reason) <= REASON_MAX_CHARS


@pytest.mark.parametrize(
    "exception, kind",
    [
        (httpx.ReadTimeout("slow", request=REQUEST), ProviderTimeout),
        (httpx.ConnectTimeout("slow", request=REQUEST), ProviderTimeout),
        (httpx.WriteTimeout("slow", request=REQUEST), ProviderTimeout),
        (httpx.ConnectError("refused", request=REQUEST), ProviderUnavailable),
        (httpx.ReadError("reset", request=REQUEST), ProviderUnavailable),
        (httpx.RemoteProtocolError("closed", request=REQUEST), ProviderUnavailable),
        (httpx.DecodingError("bad gzip", request=REQUEST), MalformedResponse),
        (httpx.UnsupportedProtocol("ftp", request=REQUEST), RequestRejected),
        (httpx.TooManyRedirects("loop", request=REQUEST), RequestRejected),
    ],
)
def test_httpx_exceptions(exception, kind):
    assert type(classify(exception)) is kind


def test_pool_timeout_is_local_congestion_not_a_provider_failure():
    error = classify(httpx.PoolTimeout("no connection", request=REQUEST))
    assert isinstance(error, PoolExhausted)
    assert not isinstance(error, ProviderError)
    assert error.reason


def test_errors_survive_pickling():
    error = classify(respond(429, error_body("slow down"), headers={"Retry-After": "3"}))
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is RateLimited
    assert (copy.reason, copy.status, copy.retry_after) == (error.reason, 429, 3.0)
