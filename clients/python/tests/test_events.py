"""EventSender against a real service: batching, flush, rejections, the bounded buffer,
close, gzip, atexit."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from typing import Any, List, Mapping, Sequence, Set, Tuple

import httpx
import pytest

from playpulse import (
    Backoff,
    BufferFull,
    EventSender,
    HistoryEvent,
    PlaybackEvent,
    PlayPulse,
    PlayPulseError,
    SenderClosed,
    TransportError,
    playback_event,
)
from support import PACKAGE_DIR, Service, eventually, unique_user_id


def ingest_key(service: Service) -> Any:
    return service.keys.get("ingest", service.key)


def events_for(user_id: int, count: int, *, content_id: int = 7) -> List[PlaybackEvent]:
    session = uuid.uuid4()
    base = int(time.time() * 1000) - count
    return [
        playback_event(
            session,
            user_id,
            content_id,
            "heartbeat" if index else "start",
            position_ms=index * 1000,
            ts=base + index,
            device="tv",
            country="FR",
        )
        for index in range(count)
    ]


def history_ids(api: PlayPulse, user_id: int) -> List[str]:
    return [event["event_id"] for event in api.history(user_id, limit=10_000)]


def wait_for_history(api: PlayPulse, user_id: int, expected: Set[str]) -> List[str]:
    return eventually(
        lambda: history_ids(api, user_id),
        lambda ids: set(ids) >= expected,
        what=f"history of {user_id} holding {len(expected)} events",
    )


class Recorder(httpx.BaseTransport):
    """A pass-through transport to the real service that keeps what was sent."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: List[Tuple[Mapping[str, str], bytes]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((dict(request.headers), request.read()))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_playback_event_fills_the_id_and_the_time() -> None:
    before = int(time.time() * 1000)
    event = playback_event("6f1c1d1e-2b1a-4c3d-9e8f-0a1b2c3d4e5f", 42, 7, "start", startup_ms=900)
    after = int(time.time() * 1000)
    assert uuid.UUID(event["event_id"]).version == 4
    assert before <= event["ts"] <= after
    assert event["position_ms"] == 0 and event["startup_ms"] == 900
    assert "device" not in event and "duration_ms" not in event
    assert playback_event(uuid.uuid4(), 1, 2, "stop", event_id="x", ts=5)["ts"] == 5


def test_events_go_in_several_batches_and_all_land(service: Service, api: PlayPulse) -> None:
    user = unique_user_id()
    events = events_for(user, 230)
    with EventSender(service.url, ingest_key(service), max_batch=50, max_delay=0.2) as sender:
        for event in events:
            sender.send(event)
        assert sender.flush(timeout=30)
        stats = sender.stats()
    assert stats.enqueued == stats.sent == stats.accepted == 230
    assert stats.batches >= 5  # 230 events, 50 a batch
    assert stats.rejected == stats.failed == stats.dropped == 0
    assert stats.pending == 0
    expected = {event["event_id"] for event in events}
    ids = wait_for_history(api, user, expected)
    assert len(ids) == len(set(ids)) == 230
    newest: HistoryEvent = api.history(user, limit=1)[0]
    assert newest["event_id"] == events[-1]["event_id"]
    assert "received_at" in newest
    window = api.history(user, from_ms=events[10]["ts"], to_ms=events[19]["ts"])
    assert {event["event_id"] for event in window} == {e["event_id"] for e in events[10:20]}


def test_time_closes_a_batch(service: Service, api: PlayPulse) -> None:
    user = unique_user_id()
    events = events_for(user, 3)
    with EventSender(service.url, ingest_key(service), max_batch=500, max_delay=0.1) as sender:
        for event in events:
            sender.send(event)
        # No flush: max_delay after the first event, the batch goes by itself.
        eventually(sender.stats, lambda stats: stats.accepted == 3, what="the timed batch")
    wait_for_history(api, user, {event["event_id"] for event in events})


def test_a_bad_event_is_reported_and_the_good_ones_land(service: Service, api: PlayPulse) -> None:
    user = unique_user_id()
    events: List[Any] = list(events_for(user, 10))
    bad = dict(events[3], kind="nope")
    events[3] = bad
    negative = dict(events[7], position_ms=-5)
    events[7] = negative
    seen: List[Tuple[Mapping[str, Any], str]] = []
    with EventSender(
        service.url,
        ingest_key(service),
        on_rejected=lambda event, reason: seen.append((event, reason)),
    ) as sender:
        for event in events:
            sender.send(event)
        assert sender.flush(timeout=30)
        rejected = sender.rejected
        stats = sender.stats()
    assert stats.accepted == 8 and stats.rejected == 2
    assert [event for event, _ in rejected] == [bad, negative]
    assert rejected[0][0] is bad  # the very object sent
    assert "kind" in rejected[0][1]
    assert "position_ms" in rejected[1][1]
    assert seen == rejected
    good = {event["event_id"] for event in events} - {bad["event_id"], negative["event_id"]}
    ids = wait_for_history(api, user, good)
    assert bad["event_id"] not in ids and negative["event_id"] not in ids


def test_a_batch_refused_whole_rejects_every_event(service: Service) -> None:
    if not service.auth:
        pytest.skip("the service under test runs without auth")
    events = events_for(unique_user_id(), 5)
    with EventSender(service.url, "pp_not-a-key") as sender:
        for event in events:
            sender.send(event)
        assert sender.flush(timeout=30)
        stats = sender.stats()
        rejected = sender.rejected
    assert stats.rejected == 5 and stats.accepted == 0 and stats.failed == 0
    assert [event for event, _ in rejected] == events
    assert all("unknown or revoked" in reason for _, reason in rejected)


def test_the_buffer_is_bounded(service: Service, api: PlayPulse) -> None:
    user = unique_user_id()
    events = events_for(user, 7)
    # max_delay and max_batch keep the worker waiting: the five events stay buffered.
    sender = EventSender(
        service.url, ingest_key(service), max_buffer=5, max_batch=100, max_delay=60
    )
    try:
        for event in events[:5]:
            sender.send(event)
        with pytest.raises(BufferFull):
            sender.send(events[5])  # block_timeout 0: refused at once
        stats = sender.stats()
        assert (stats.dropped, stats.pending, stats.in_flight) == (1, 5, 0)
        # A send willing to wait makes the batch due at once, not max_delay later.
        started = time.monotonic()
        sender.send(events[5], block_timeout=10)
        assert time.monotonic() - started < 5
    finally:
        assert sender.close(timeout=30)  # close() flushes what is buffered
    stats = sender.stats()
    assert stats.accepted == 6 and stats.dropped == 1 and stats.pending == 0
    wait_for_history(api, user, {event["event_id"] for event in events[:6]})
    with pytest.raises(SenderClosed):
        sender.send(events[6])
    assert sender.close()  # idempotent


def test_a_full_buffer_waits_block_timeout_then_refuses() -> None:
    """Against a peer that takes the connection but never answers: the worker is stuck on
    its request, the buffer fills, and send() waits block_timeout before BufferFull."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # never accepted: connections complete, nothing answers
        url = "http://127.0.0.1:%d" % silent.getsockname()[1]
        events = events_for(1, 4)
        sender = EventSender(
            url, max_buffer=2, max_batch=2, max_delay=0, max_retries=0, timeout=1.0
        )
        try:
            sender.send(events[0])
            eventually(sender.stats, lambda stats: stats.in_flight == 1, what="a stuck request")
            sender.send(events[1])
            sender.send(events[2])
            started = time.monotonic()
            with pytest.raises(BufferFull):
                sender.send(events[3], block_timeout=0.2)
            assert time.monotonic() - started >= 0.2
        finally:
            assert sender.close(timeout=10)
    stats = sender.stats()
    assert (stats.failed, stats.dropped, stats.accepted) == (3, 1, 0)
    assert isinstance(sender.last_error, TransportError)
    assert isinstance(sender.last_error.__cause__, httpx.ReadTimeout)


def test_gzip_bodies_reach_the_service(service: Service, api: PlayPulse) -> None:
    for compress in (True, False):
        user = unique_user_id()
        events = events_for(user, 20)
        recorder = Recorder()
        with EventSender(
            service.url, ingest_key(service), gzip=compress, transport=recorder
        ) as sender:
            for event in events:
                sender.send(event)
            assert sender.flush(timeout=30)
            assert sender.stats().accepted == 20
        assert len(recorder.requests) == 1
        headers, body = recorder.requests[0]
        assert headers["content-type"] == "application/json"
        if compress:
            assert headers["content-encoding"] == "gzip"
            assert body[:2] == b"\x1f\x8b"
            body = gzip.decompress(body)
        else:
            assert "content-encoding" not in headers
        assert json.loads(body) == events
        wait_for_history(api, user, {event["event_id"] for event in events})


def test_a_sender_from_a_client_uses_its_key(service: Service, api: PlayPulse) -> None:
    user = unique_user_id()
    events = events_for(user, 4)
    with EventSender(api) as sender:
        for event in events:
            sender.send(event)
    assert sender.stats().accepted == 4
    wait_for_history(api, user, {event["event_id"] for event in events})


def test_what_is_not_json_is_refused_at_send(service: Service) -> None:
    with EventSender(service.url, ingest_key(service)) as sender:
        with pytest.raises(TypeError):
            sender.send({"event_id": object()})
        with pytest.raises(ValueError):
            sender.send({"ts": float("nan")})
        with pytest.raises(TypeError):
            sender.send([1, 2, 3])  # type: ignore[arg-type]
        assert sender.stats().enqueued == 0


def test_an_unreachable_service_fails_the_events_after_the_retries() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    failures: List[Tuple[Sequence[Any], PlayPulseError]] = []
    with EventSender(
        f"http://127.0.0.1:{port}",
        max_retries=2,
        backoff=Backoff(base=0.01, cap=0.05),
        on_failed=lambda events, error: failures.append((events, error)),
    ) as sender:
        events = events_for(1, 3)
        for event in events:
            sender.send(event)
        assert sender.flush(timeout=10)  # finally failed counts as done
        stats = sender.stats()
    assert stats.failed == 3 and stats.retries == 2 and stats.accepted == 0
    assert isinstance(sender.last_error, TransportError)
    assert len(failures) == 1 and list(failures[0][0]) == events


def test_buffered_events_are_flushed_when_the_interpreter_exits(
    service: Service, api: PlayPulse
) -> None:
    user = unique_user_id()
    ids = [str(uuid.uuid4()) for _ in range(3)]
    script = textwrap.dedent(
        f"""
        from playpulse import EventSender, playback_event
        sender = EventSender({service.url!r}, {ingest_key(service)!r}, max_delay=60)
        session = {str(uuid.uuid4())!r}
        for event_id in {ids!r}:
            sender.send(playback_event(session, {user}, 7, "start", event_id=event_id))
        print(sender.stats().pending)
        # No close(): the atexit hook must flush.
        """
    )
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_DIR / "src"))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "3"
    expected = set(ids)
    wait_for_history(api, user, expected)
