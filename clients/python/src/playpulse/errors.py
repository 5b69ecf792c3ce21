"""Exceptions raised by the PlayPulse client.

Every error answer of the service is JSON of one shape, ``{"error": "..."}``, with a
``"field"`` naming the offending input on the platform's 400s. Each answer becomes an
exception of the class for its status, carrying the decoded body; a failure to reach the
service at all (after the retries) is a :class:`TransportError`. Every exception the public
API raises on purpose is a :class:`PlayPulseError`.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional, Type

import httpx

__all__ = [
    "PlayPulseError",
    "BadRequest",
    "Unauthorized",
    "PaymentRequired",
    "Forbidden",
    "NotFound",
    "RequestTimeout",
    "Conflict",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "UnprocessableEntity",
    "RateLimited",
    "Unavailable",
    "UnexpectedStatus",
    "TransportError",
    "BufferFull",
    "SenderClosed",
    "error_from_response",
    "parse_retry_after",
]


class PlayPulseError(Exception):
    """The base of every error of this package.

    Attributes:
        status: the HTTP status of the answer, or ``None`` when there was none
            (:class:`TransportError`, :class:`BufferFull`, :class:`SenderClosed`).
        message: the service's ``error`` field (or the answer's text when it was not JSON).
        field: the service's ``field`` field (the input it refused), or ``None``.
        body: the decoded JSON answer (``None`` when it was not JSON).
        retry_after: the ``Retry-After`` header in seconds, or ``None``.
    """

    status: Optional[int]
    message: str
    field: Optional[str]
    body: Any
    retry_after: Optional[float]

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        field: Optional[str] = None,
        body: Any = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.body = body
        self.retry_after = retry_after

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        return f"{self.status}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, message={self.message!r}, "
            f"field={self.field!r})"
        )


class BadRequest(PlayPulseError):
    """400: bad input; ``field`` names it when the service does."""


class Unauthorized(PlayPulseError):
    """401: no key, or an unknown or revoked one (with ``auth.enabled``)."""


class PaymentRequired(PlayPulseError):
    """402: the payment was declined; nothing was created."""


class Forbidden(PlayPulseError):
    """403: the key's role may not do this."""


class NotFound(PlayPulseError):
    """404: unknown user, plan, subscription, title or route."""


class RequestTimeout(PlayPulseError):
    """408: the request body did not arrive whole in time."""


class Conflict(PlayPulseError):
    """409: plan unavailable, email taken, idempotency key in progress, already subscribed."""


class PayloadTooLarge(PlayPulseError):
    """413: the body is too large or holds too many events."""


class UnsupportedMediaType(PlayPulseError):
    """415: a content type or encoding the service does not take."""


class UnprocessableEntity(PlayPulseError):
    """422: an idempotency key reused with another request body."""


class RateLimited(PlayPulseError):
    """429: a rate limit was passed; ``retry_after`` says when to try again."""


class Unavailable(PlayPulseError):
    """503: overloaded, or a store unreachable; ``retry_after`` says when to try again."""


class UnexpectedStatus(PlayPulseError):
    """Any other status (500, 502, 405, ...), or a success answer that is not the JSON expected."""


class TransportError(PlayPulseError):
    """The service could not be reached or did not answer (connection refused or reset,
    timeout, protocol error), after the retries. ``__cause__`` is the underlying error."""


class BufferFull(PlayPulseError):
    """:meth:`EventSender.send` found the buffer full for longer than ``block_timeout``."""


class SenderClosed(PlayPulseError):
    """:meth:`EventSender.send` was called after :meth:`EventSender.close`."""


_BY_STATUS: Dict[int, Type[PlayPulseError]] = {
    400: BadRequest,
    401: Unauthorized,
    402: PaymentRequired,
    403: Forbidden,
    404: NotFound,
    408: RequestTimeout,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: UnprocessableEntity,
    429: RateLimited,
    503: Unavailable,
}


def parse_retry_after(headers: Mapping[str, str]) -> Optional[float]:
    """``Retry-After`` in seconds: delay-seconds, or an HTTP date (seconds from now)."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime
        from datetime import datetime, timezone

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def error_from_response(response: httpx.Response) -> PlayPulseError:
    """The exception for an error answer: its class by status, its fields from the JSON body
    (or the text when the body is not JSON)."""
    status = response.status_code
    body: Any = None
    message = ""
    field: Optional[str] = None
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError, httpx.HTTPError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        message = body["error"]
        raw_field = body.get("field")
        field = raw_field if isinstance(raw_field, str) else None
    else:
        try:
            text = response.text
        except (UnicodeDecodeError, httpx.HTTPError):
            text = ""
        if body is not None:
            text = json.dumps(body)
        message = text.strip() or (response.reason_phrase or f"HTTP {status}")
    cls = _BY_STATUS.get(status, UnexpectedStatus)
    return cls(
        message,
        status=status,
        field=field,
        body=body,
        retry_after=parse_retry_after(response.headers),
    )
