"""Retries with exponential backoff and jitter, shared by :class:`PlayPulse` and
:class:`EventSender`: one loop decides when an answer or a failure is worth another try and
how long to wait before it (``Retry-After`` when the service says, else backoff)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, Optional

import httpx

from .errors import TransportError, parse_retry_after

__all__ = [
    "RETRYABLE_STATUSES",
    "Backoff",
    "OnRetry",
    "send_with_retries",
    "before_sending",
    "any_transport_error",
]

#: Answers that say "not now" rather than "no": overload, rate limits, gateways, slow bodies.
RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})


@dataclass(frozen=True)
class Backoff:
    """How long to wait before retry number ``retry`` (0 for the first retry).

    Without ``Retry-After``: exponential, ``base * 2**retry`` capped at ``cap``, with "equal
    jitter" (a uniform draw in the upper half) so that clients that failed together do not
    retry together, yet never retry at once. With ``Retry-After``: that long (at most
    ``max_retry_after``) plus a jitter of up to ``base``.
    """

    base: float = 0.1
    cap: float = 10.0
    max_retry_after: float = 60.0

    def delay(self, retry: int, retry_after: Optional[float] = None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after) + random.uniform(0.0, self.base)
        ceiling = min(self.cap, self.base * (2.0 ** min(retry, 62)))
        return ceiling / 2.0 + random.uniform(0.0, ceiling / 2.0)


#: Called before each wait: (retry number from 0, seconds to wait, the answer or None,
#: the transport error or None).
OnRetry = Callable[[int, float, Optional[httpx.Response], Optional[BaseException]], None]


def any_transport_error(error: httpx.TransportError) -> bool:
    """For idempotent requests: any failure to get an answer may be retried."""
    return True


def before_sending(error: httpx.TransportError) -> bool:
    """For requests that must not run twice: only failures before any byte was sent (the
    connection could not be made) may be retried."""
    return isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def send_with_retries(
    send: Callable[[], httpx.Response],
    *,
    max_retries: int,
    backoff: Backoff,
    should_retry: Callable[[httpx.Response], bool],
    retry_transport: Callable[[httpx.TransportError], bool] = any_transport_error,
    on_retry: Optional[OnRetry] = None,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Response:
    """Calls ``send`` until it returns an answer ``should_retry`` refuses to retry, or
    ``max_retries`` retries were made; returns the last answer (successful or not: the caller
    decides what an error status means).

    Raises :class:`TransportError` when the last try got no answer, or when an httpx failure
    is not one worth retrying; no httpx exception leaves this function.
    """
    retry = 0
    while True:
        try:
            response = send()
        except httpx.TransportError as error:
            if retry >= max_retries or not retry_transport(error):
                raise TransportError(_describe(error)) from error
            wait = backoff.delay(retry, None)
            if on_retry is not None:
                on_retry(retry, wait, None, error)
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as error:
            # Decoding errors, too many redirects, a bad URL: another try cannot help.
            raise TransportError(_describe(error)) from error
        else:
            if retry >= max_retries or not should_retry(response):
                return response
            wait = backoff.delay(retry, parse_retry_after(response.headers))
            if on_retry is not None:
                on_retry(retry, wait, response, None)
        sleep(wait)
        retry += 1


def _describe(error: Exception) -> str:
    text = str(error) or type(error).__name__
    request: Optional[httpx.Request]
    try:
        request = error.request if isinstance(error, httpx.RequestError) else None
    except RuntimeError:  # httpx raises when the request was never set
        request = None
    if request is not None:
        return f"{request.method} {request.url}: {type(error).__name__}: {text}"
    return f"{type(error).__name__}: {text}"
