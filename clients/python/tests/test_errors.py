"""The parts that need no service: error decoding, Retry-After, backoff, the retry loop."""

from __future__ import annotations

import email.utils
import time
from typing import List, Optional

import httpx
import pytest

from playpulse import (
    Backoff,
    BadRequest,
    NotFound,
    PlayPulseError,
    RateLimited,
    TransportError,
    Unavailable,
    UnexpectedStatus,
)
from playpulse._retry import RETRYABLE_STATUSES, before_sending, send_with_retries
from playpulse.errors import error_from_response, parse_retry_after


def answer(status: int, content: bytes, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, content=content, headers=headers, request=httpx.Request("GET", "http://x/")
    )


def test_a_json_error_carries_its_fields() -> None:
    error = error_from_response(
        answer(400, b'{"error":"email: is not an email address","field":"email"}')
    )
    assert isinstance(error, BadRequest) and isinstance(error, PlayPulseError)
    assert (error.status, error.field) == (400, "email")
    assert error.message == "email: is not an email address"
    assert error.body == {"error": "email: is not an email address", "field": "email"}
    assert error.retry_after is None
    assert str(error) == "400: email: is not an email address"


def test_a_non_json_error_keeps_its_text() -> None:
    error = error_from_response(answer(502, b"<html>Bad Gateway</html>"))
    assert isinstance(error, UnexpectedStatus)
    assert error.status == 502 and error.message == "<html>Bad Gateway</html>"
    assert error.body is None and error.field is None
    empty = error_from_response(answer(404, b""))
    assert isinstance(empty, NotFound) and empty.message == "Not Found"
    other_json = error_from_response(answer(503, b"[1,2]", **{"retry-after": "2"}))
    assert isinstance(other_json, Unavailable)
    assert other_json.body == [1, 2] and other_json.retry_after == 2.0


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "soon"}) is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = parse_retry_after({"retry-after": later})
    assert seconds is not None and 25 <= seconds <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert parse_retry_after({"retry-after": past}) == 0.0


def test_backoff_grows_is_capped_jittered_and_honours_retry_after() -> None:
    backoff = Backoff(base=0.1, cap=1.0, max_retry_after=5.0)
    for retry in range(10):
        ceiling = min(1.0, 0.1 * 2**retry)
        for _ in range(20):
            assert ceiling / 2 <= backoff.delay(retry) <= ceiling
    assert 2.0 <= backoff.delay(0, 2.0) <= 2.1
    assert backoff.delay(0, 3600.0) <= 5.1


def test_the_retry_loop_retries_what_is_worth_it_then_gives_the_answer() -> None:
    statuses = [503, 429, 200]
    waits: List[float] = []

    def send() -> httpx.Response:
        status = statuses.pop(0)
        return answer(status, b"{}", **({"retry-after": "1"} if status == 429 else {}))

    response = send_with_retries(
        send,
        max_retries=5,
        backoff=Backoff(base=0.01),
        should_retry=lambda r: r.status_code in RETRYABLE_STATUSES,
        sleep=waits.append,
    )
    assert response.status_code == 200
    assert len(waits) == 2 and waits[1] >= 1.0

    exhausted = send_with_retries(
        lambda: answer(503, b"{}"),
        max_retries=2,
        backoff=Backoff(base=0.01),
        should_retry=lambda r: True,
        sleep=lambda _: None,
    )
    assert exhausted.status_code == 503


def test_transport_failures_become_transport_errors() -> None:
    calls: List[Optional[str]] = []
    request = httpx.Request("POST", "http://x/v1/users")

    def read_timeout() -> httpx.Response:
        calls.append("read")
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(TransportError) as failed:
        send_with_retries(
            read_timeout,
            max_retries=3,
            backoff=Backoff(base=0.01),
            should_retry=lambda r: True,
            retry_transport=before_sending,  # the request may have been processed
            sleep=lambda _: None,
        )
    assert calls == ["read"]
    assert isinstance(failed.value.__cause__, httpx.ReadTimeout)
    assert "POST http://x/v1/users" in failed.value.message
    assert not isinstance(failed.value, RateLimited)
