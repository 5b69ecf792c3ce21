"""Real 429s with Retry-After, from a server of its own with tight per-key limits
(``limited_service``: ingest keys 2 requests/s, burst 2; read keys 1/s, burst 1)."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from playpulse import EventSender, PlayPulse, RateLimited, now_ms, playback_event
from support import Service, eventually, unique_user_id


def test_the_sender_waits_out_429s_and_delivers_every_event_once(
    limited_service: Service,
) -> None:
    user = unique_user_id()
    now = now_ms()
    events = [
        playback_event(
            "6f1c1d1e-2b1a-4c3d-9e8f-0a1b2c3d4e5f", user, 7, "heartbeat", ts=now - 40 + i
        )
        for i in range(40)
    ]
    # 10 batches of 4 against 2 requests/s: most batches meet a 429 first.
    with EventSender(
        limited_service.url,
        limited_service.keys["ingest"],
        max_batch=4,
        max_delay=0.05,
        max_retries=20,
    ) as sender:
        for event in events:
            sender.send(event)
        assert sender.flush(timeout=40)
        stats = sender.stats()
    assert stats.retries > 0, "the limits were never reached: the test proves nothing"
    assert stats.accepted == 40 and stats.failed == 0 and stats.rejected == 0
    assert stats.sent == 40  # retries post the same events again, not more events

    with PlayPulse(limited_service.url, limited_service.key) as admin:
        history = eventually(
            lambda: admin.history(user, limit=1000),
            lambda found: len(found) >= 40,
            what="the 40 events in history",
        )
    counts = Counter(event["event_id"] for event in history)
    assert set(counts) == {event["event_id"] for event in events}
    assert all(count == 1 for count in counts.values()), counts.most_common(3)


def test_the_client_honours_retry_after(limited_service: Service) -> None:
    read_key = limited_service.keys["read"]
    with PlayPulse(limited_service.url, read_key, max_retries=0) as impatient:
        with pytest.raises(RateLimited) as limited:
            for _ in range(5):  # a burst of 1: the second call at the latest
                impatient.list_plans()
    error = limited.value
    assert error.status == 429
    assert error.retry_after is not None and error.retry_after >= 1
    assert "rate limit" in error.message

    # The bucket is empty now: a patient client waits as told, then gets its answer.
    with PlayPulse(limited_service.url, read_key, max_retries=3) as patient:
        started = time.monotonic()
        assert isinstance(patient.list_plans(), list)
        waited = time.monotonic() - started
    assert waited >= 0.9, f"answered after {waited:.2f} s: Retry-After was not honoured"
