"""Playback events: :func:`playback_event` builds one, :class:`EventSender` batches them in a
background thread and posts them to ``POST /v1/events``."""

from __future__ import annotations

import atexit
import gzip
import json
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    Union,
)

import httpx

from ._retry import RETRYABLE_STATUSES, Backoff, send_with_retries
from ._version import __version__
from .client import PlayPulse
from .errors import (
    BufferFull,
    PlayPulseError,
    SenderClosed,
    UnexpectedStatus,
    error_from_response,
)
from .models import PlaybackEvent

__all__ = [
    "playback_event",
    "now_ms",
    "EventSender",
    "SenderStats",
    "Event",
    "OnRejected",
    "OnFailed",
    "MAX_EVENTS_PER_REQUEST",
]

logger = logging.getLogger("playpulse")

#: The service's ``server.max_events_per_request`` default.
MAX_EVENTS_PER_REQUEST = 10_000

#: What :meth:`EventSender.send` takes: a :class:`PlaybackEvent` or any JSON object.
Event = Mapping[str, Any]
#: ``on_rejected(event, reason)``: an event the service refused, and its reason.
OnRejected = Callable[[Event, str], None]
#: ``on_failed(events, error)``: events given up on after the retries, and the last error.
OnFailed = Callable[[Sequence[Event], PlayPulseError], None]


def now_ms() -> int:
    """The current time, epoch milliseconds."""
    return time.time_ns() // 1_000_000


def playback_event(
    session_id: Union[str, uuid.UUID],
    user_id: int,
    content_id: int,
    kind: str,
    position_ms: int = 0,
    *,
    ts: Optional[int] = None,
    event_id: Optional[Union[str, uuid.UUID]] = None,
    sent_at: Optional[int] = None,
    duration_ms: Optional[int] = None,
    bitrate_kbps: Optional[int] = None,
    buffer_ms: Optional[int] = None,
    played_ms: Optional[int] = None,
    startup_ms: Optional[int] = None,
    before_start: Optional[bool] = None,
    fatal: Optional[bool] = None,
    error_code: Optional[str] = None,
    device: Optional[str] = None,
    cdn: Optional[str] = None,
    app_version: Optional[str] = None,
    country: Optional[str] = None,
    playback_token: Optional[str] = None,
) -> PlaybackEvent:
    """One playback event (wire format v1). ``event_id`` defaults to a new UUID4 (the event's
    idempotency key: keep it if you rebuild the event to send it again), ``ts`` to now (epoch
    ms). Optional fields left ``None`` are left out. ``kind`` is one of
    :data:`playpulse.EVENT_KINDS`; the service, not this function, checks every rule."""
    event: PlaybackEvent = {
        "event_id": str(event_id) if event_id is not None else str(uuid.uuid4()),
        "session_id": str(session_id),
        "user_id": user_id,
        "content_id": content_id,
        "kind": kind,
        "ts": ts if ts is not None else now_ms(),
        "position_ms": position_ms,
    }
    if sent_at is not None:
        event["sent_at"] = sent_at
    if duration_ms is not None:
        event["duration_ms"] = duration_ms
    if bitrate_kbps is not None:
        event["bitrate_kbps"] = bitrate_kbps
    if buffer_ms is not None:
        event["buffer_ms"] = buffer_ms
    if played_ms is not None:
        event["played_ms"] = played_ms
    if startup_ms is not None:
        event["startup_ms"] = startup_ms
    if before_start is not None:
        event["before_start"] = before_start
    if fatal is not None:
        event["fatal"] = fatal
    if error_code is not None:
        event["error_code"] = error_code
    if device is not None:
        event["device"] = device
    if cdn is not None:
        event["cdn"] = cdn
    if app_version is not None:
        event["app_version"] = app_version
    if country is not None:
        event["country"] = country
    if playback_token is not None:
        event["playback_token"] = playback_token
    return event


@dataclass(frozen=True)
class SenderStats:
    """Counts of an :class:`EventSender` since it started (events unless said otherwise).

    Every event taken by :meth:`~EventSender.send` ends as exactly one of ``accepted``,
    ``rejected`` or ``failed``, or is still ``pending``; ``dropped`` ones never entered.
    """

    #: Taken by ``send()``.
    enqueued: int
    #: Posted at least once (retries not counted again).
    sent: int
    #: Acknowledged by the service as durable.
    accepted: int
    #: Refused by the service: alone (a bad event) or with their whole batch (400, 413, ...).
    rejected: int
    #: Given up on: no answer, or 429 / 5xx answers, after ``max_retries`` retries.
    failed: int
    #: Refused by ``send()`` with :class:`BufferFull`.
    dropped: int
    #: Requests retried (each retry of each batch counts one).
    retries: int
    #: Requests that got a final outcome.
    batches: int
    #: Buffered or in flight now.
    pending: int
    #: In the request being sent now.
    in_flight: int


@dataclass
class _Item:
    seq: int
    at: float
    event: Event
    encoded: bytes


class EventSender:
    """Batches playback events in a background thread and posts them to ``POST /v1/events``.

    ``target`` is the service's base URL or a :class:`PlayPulse` client (its URL, key and
    timeout are used; the sender keeps its own connections). ``key`` is sent as
    ``Authorization: Bearer KEY`` (an ``ingest`` key is enough).

    A batch is posted when ``max_batch`` events are buffered, or ``max_delay`` seconds after
    the first buffered event, or when a :meth:`send` is waiting for room, or on
    :meth:`flush` / :meth:`close`; one request is in flight at a time. A batch is encoded once
    (JSON, gzip-compressed with ``Content-Encoding: gzip`` when ``gzip``) and retried with the
    same body on connection failures, timeouts, 408, 429, 502, 503 and 504, waiting as
    ``Retry-After`` says or with exponential backoff and jitter, at most ``max_retries``
    times: every event carries its ``event_id``, so a retry never stores an event twice.

    At most ``max_buffer`` events wait to be sent: past it :meth:`send` waits up to
    ``block_timeout`` seconds (0: not at all) for room, then raises :class:`BufferFull`.

    Refusals are reported per event: an event the service rejects alone (``{"index": I,
    "error": "why"}`` in its answer), or every event of a batch it refuses whole (a 4xx other
    than 408 and 429, e.g. 400 or 413, or 401 / 403 for a bad key), with the service's error
    message as the reason. They are kept in :attr:`rejected` (the last ``max_rejected``) and
    passed to ``on_rejected(event, reason)``. Events given up on (no answer, or a 429 / 5xx
    answer, after the retries; other 5xx such as 500 at once) are counted as ``failed`` and
    passed to ``on_failed(events, error)``. Both callbacks run in
    the sender's thread: keep them short, and do not call :meth:`flush` or :meth:`close` from
    them.

    The sender is thread-safe. :meth:`close` (or leaving a ``with`` block) flushes and stops
    the thread; until then an ``atexit`` hook flushes what is buffered when the interpreter
    exits (waiting at most ``exit_timeout`` seconds).
    """

    def __init__(
        self,
        target: Union[str, PlayPulse],
        key: Optional[str] = None,
        *,
        max_batch: int = 500,
        max_delay: float = 1.0,
        max_buffer: int = 100_000,
        gzip: bool = True,
        max_retries: int = 8,
        on_rejected: Optional[OnRejected] = None,
        on_failed: Optional[OnFailed] = None,
        block_timeout: float = 0.0,
        timeout: Optional[float] = None,
        backoff: Optional[Backoff] = None,
        max_rejected: int = 10_000,
        exit_timeout: Optional[float] = 30.0,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        if not 1 <= max_batch <= MAX_EVENTS_PER_REQUEST:
            raise ValueError(f"max_batch must be from 1 to {MAX_EVENTS_PER_REQUEST}")
        if max_delay < 0:
            raise ValueError("max_delay must not be negative")
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        if block_timeout < 0:
            raise ValueError("block_timeout must not be negative")
        if isinstance(target, PlayPulse):
            base_url = target.base_url
            key = key if key is not None else target.key
            timeout = timeout if timeout is not None else target.timeout
        else:
            base_url = target.rstrip("/")
        self.base_url = base_url
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.max_buffer = max_buffer
        self.gzip = gzip
        self.max_retries = max_retries
        self.block_timeout = block_timeout
        self.exit_timeout = exit_timeout
        self.backoff = backoff if backoff is not None else Backoff(base=0.2, cap=30.0)
        self._on_rejected = on_rejected
        self._on_failed = on_failed

        headers = {
            "user-agent": f"playpulse-python/{__version__}",
            "accept": "application/json",
        }
        if key:
            headers["authorization"] = f"Bearer {key}"
        self._http = httpx.Client(
            base_url=base_url,
            headers=headers,
            timeout=timeout if timeout is not None else 10.0,
            transport=transport,
        )

        self._cond = threading.Condition()
        self._buffer: Deque[_Item] = deque()
        self._rejected: Deque[Tuple[Event, str]] = deque(maxlen=max(0, max_rejected))
        self._last_error: Optional[PlayPulseError] = None
        self._next_seq = 0  # the seq of the next event sent
        self._done_seq = -1  # every event up to this seq has its outcome
        self._flush_target = -1  # flush() waits for events up to this seq
        self._in_flight = 0
        self._waiting = 0  # send() calls waiting for room
        self._closing = False
        self._closed = False
        self._dead = False
        self._counts: Dict[str, int] = dict.fromkeys(
            ("enqueued", "sent", "accepted", "rejected", "failed", "dropped", "retries", "batches"),
            0,
        )
        self._thread = threading.Thread(
            target=self._run, name=f"playpulse-sender-{id(self):x}", daemon=True
        )
        self._thread.start()
        atexit.register(self._at_exit)

    # -- the caller's side ----------------------------------------------------------------

    def send(self, event: Event, *, block_timeout: Optional[float] = None) -> None:
        """Buffers one event (a :class:`PlaybackEvent` or any JSON object) to be posted.

        The event is encoded now: what is not JSON raises ``TypeError`` / ``ValueError``
        here. When the buffer is full, waits up to ``block_timeout`` (default: the sender's)
        for room, then raises :class:`BufferFull`. Raises :class:`SenderClosed` after
        :meth:`close`.
        """
        if not isinstance(event, Mapping):
            raise TypeError(f"an event must be a mapping, got {type(event).__name__}")
        encoded = json.dumps(
            event, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
        wait = self.block_timeout if block_timeout is None else block_timeout
        with self._cond:
            if self._closing or self._dead:
                raise SenderClosed("the sender is closed")
            if len(self._buffer) >= self.max_buffer and wait > 0:
                # A sender waiting for room makes a batch due at once (see _next_batch).
                deadline = time.monotonic() + wait
                self._waiting += 1
                self._cond.notify_all()
                try:
                    while len(self._buffer) >= self.max_buffer:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0 or self._closing or self._dead:
                            break
                        self._cond.wait(remaining)
                finally:
                    self._waiting -= 1
            if len(self._buffer) >= self.max_buffer:
                if self._closing or self._dead:
                    raise SenderClosed("the sender is closed")
                self._counts["dropped"] += 1
                raise BufferFull(
                    f"{len(self._buffer)} events are waiting to be sent "
                    f"(max_buffer={self.max_buffer})"
                )
            self._buffer.append(_Item(self._next_seq, time.monotonic(), event, encoded))
            self._next_seq += 1
            self._counts["enqueued"] += 1
            if len(self._buffer) == 1 or len(self._buffer) >= self.max_batch:
                self._cond.notify_all()

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Posts what is buffered now and waits until every event sent before this call has
        its outcome (accepted, rejected, or failed after the retries). Returns ``False`` when
        ``timeout`` seconds passed first, ``True`` otherwise."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("flush() cannot be called from the sender's own callbacks")
        with self._cond:
            target = self._next_seq - 1
            if self._done_seq >= target:
                return True
            self._flush_target = max(self._flush_target, target)
            self._cond.notify_all()
            return (
                self._cond.wait_for(lambda: self._done_seq >= target or self._dead, timeout)
                and self._done_seq >= target
            )

    def close(self, timeout: Optional[float] = None) -> bool:
        """Flushes, stops the thread and closes the connections; later :meth:`send` calls
        raise :class:`SenderClosed`. Returns ``False`` when ``timeout`` seconds passed before
        everything buffered had its outcome (the rest is then abandoned). Idempotent."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("close() cannot be called from the sender's own callbacks")
        with self._cond:
            if self._closed:
                return self._done_seq >= self._next_seq - 1
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        finished = not self._thread.is_alive()
        with self._cond:
            self._closed = True
            # An abandoned thread stops at its next look at the buffer.
            self._dead = self._dead or not finished
            self._cond.notify_all()
        if finished:
            self._http.close()
        atexit.unregister(self._at_exit)
        return finished and self._done_seq >= self._next_seq - 1

    def __enter__(self) -> EventSender:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()

    @property
    def rejected(self) -> List[Tuple[Event, str]]:
        """The last ``max_rejected`` refused events, oldest first, with their reasons."""
        with self._cond:
            return list(self._rejected)

    @property
    def last_error(self) -> Optional[PlayPulseError]:
        """The error of the last batch given up on, if any."""
        return self._last_error

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> SenderStats:
        with self._cond:
            return SenderStats(
                pending=len(self._buffer) + self._in_flight,
                in_flight=self._in_flight,
                **self._counts,
            )

    def __repr__(self) -> str:
        return f"EventSender({self.base_url!r}, pending={self.stats().pending})"

    def _at_exit(self) -> None:
        try:
            if not self.close(self.exit_timeout):
                logger.warning(
                    "playpulse: %d events were not delivered before the interpreter exited",
                    self.stats().pending,
                )
        except Exception:  # never break the interpreter's exit
            logger.exception("playpulse: flushing events at exit failed")

    # -- the sender's thread --------------------------------------------------------------

    def _next_batch(self) -> Optional[List[_Item]]:
        """Waits for a batch to be due and takes it; ``None`` when closing and empty."""
        with self._cond:
            while True:
                if self._dead:
                    return None
                if self._buffer:
                    due = (
                        len(self._buffer) >= self.max_batch
                        or self._closing
                        or self._waiting > 0
                        or self._flush_target > self._done_seq
                    )
                    if due:
                        break
                    remaining = self._buffer[0].at + self.max_delay - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                elif self._closing:
                    return None
                else:
                    self._cond.wait()
            count = min(len(self._buffer), self.max_batch)
            batch = [self._buffer.popleft() for _ in range(count)]
            self._in_flight = count
            self._cond.notify_all()  # room for senders waiting on a full buffer
            return batch

    def _run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                try:
                    self._deliver(batch)
                except Exception as error:  # a bug must not lose the thread
                    logger.exception("playpulse: delivering a batch failed")
                    self._fail(
                        batch,
                        error
                        if isinstance(error, PlayPulseError)
                        else PlayPulseError(f"{type(error).__name__}: {error}"),
                    )
                with self._cond:
                    self._done_seq = batch[-1].seq
                    self._in_flight = 0
                    self._counts["batches"] += 1
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._dead = True
                self._cond.notify_all()

    def _deliver(self, batch: List[_Item]) -> None:
        body = b"[" + b",".join(item.encoded for item in batch) + b"]"
        headers = {"content-type": "application/json"}
        if self.gzip:
            body = gzip.compress(body, compresslevel=6, mtime=0)
            headers["content-encoding"] = "gzip"
        request = self._http.build_request("POST", "/v1/events", content=body, headers=headers)
        with self._cond:
            self._counts["sent"] += len(batch)

        def count_retry(
            retry: int,
            wait: float,
            response: Optional[httpx.Response],
            error: Optional[BaseException],
        ) -> None:
            with self._cond:
                self._counts["retries"] += 1
            reason = f"HTTP {response.status_code}" if response is not None else repr(error)
            logger.debug("playpulse: batch of %d: %s, retry in %.2f s", len(batch), reason, wait)

        try:
            response = send_with_retries(
                lambda: self._http.send(request),
                max_retries=self.max_retries,
                backoff=self.backoff,
                should_retry=lambda answer: answer.status_code in RETRYABLE_STATUSES,
                on_retry=count_retry,
            )
        except PlayPulseError as error:
            self._fail(batch, error)
            return
        status = response.status_code
        if 200 <= status < 300:
            self._acknowledged(batch, response)
        elif 400 <= status < 500 and status not in RETRYABLE_STATUSES:
            refusal = error_from_response(response)
            reason = refusal.message or f"HTTP {status}"
            self._reject([(item.event, reason) for item in batch], accepted=0)
        else:
            self._fail(batch, error_from_response(response))

    def _acknowledged(self, batch: List[_Item], response: httpx.Response) -> None:
        try:
            answer = response.json()
            accepted = int(answer["accepted"])
            refusals = [(int(entry["index"]), str(entry["error"])) for entry in answer["rejected"]]
        except (ValueError, KeyError, TypeError) as error:
            self._fail(
                batch,
                UnexpectedStatus(
                    f"the answer to POST /v1/events is not the JSON expected: {error}",
                    status=response.status_code,
                ),
            )
            return
        rejected: List[Tuple[Event, str]] = []
        for index, reason in refusals:
            if 0 <= index < len(batch):
                rejected.append((batch[index].event, reason))
            else:
                logger.warning("playpulse: a rejection names event %d of %d", index, len(batch))
        self._reject(rejected, accepted=accepted)

    def _reject(self, rejected: List[Tuple[Event, str]], *, accepted: int) -> None:
        with self._cond:
            self._counts["accepted"] += accepted
            self._counts["rejected"] += len(rejected)
            self._rejected.extend(rejected)
        if self._on_rejected is not None:
            for event, reason in rejected:
                try:
                    self._on_rejected(event, reason)
                except Exception:
                    logger.exception("playpulse: on_rejected raised")

    def _fail(self, batch: List[_Item], error: PlayPulseError) -> None:
        logger.warning("playpulse: %d events not delivered: %s", len(batch), error)
        with self._cond:
            self._counts["failed"] += len(batch)
            self._last_error = error
        if self._on_failed is not None:
            try:
                self._on_failed([item.event for item in batch], error)
            except Exception:
                logger.exception("playpulse: on_failed raised")
