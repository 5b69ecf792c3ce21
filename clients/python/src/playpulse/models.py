"""The shapes of the service's answers and of a playback event, as ``TypedDict``\\ s: what the
client returns is the decoded JSON, typed. Fields the service may add later are kept (a
``TypedDict`` is a plain ``dict`` at run time)."""

from __future__ import annotations

from typing import List, Optional, TypedDict

__all__ = [
    "EVENT_KINDS",
    "PlaybackEvent",
    "HistoryEvent",
    "Rejection",
    "IngestResult",
    "User",
    "Plan",
    "Subscription",
    "Profile",
    "Recommendation",
    "Recommendations",
    "SimilarTitle",
    "SimilarTitles",
    "TrendingTitle",
    "Trending",
]

#: The event kinds of wire format v1.
EVENT_KINDS = frozenset(
    {
        "start",
        "heartbeat",
        "pause",
        "resume",
        "seek",
        "buffer_start",
        "buffer_end",
        "bitrate_change",
        "error",
        "stop",
        "complete",
    }
)


class _PlaybackEventRequired(TypedDict):
    event_id: str
    session_id: str
    user_id: int
    content_id: int
    kind: str
    ts: int
    position_ms: int


class PlaybackEvent(_PlaybackEventRequired, total=False):
    """One playback event (wire format v1); see the service's README for each field's rule."""

    sent_at: int
    duration_ms: int
    bitrate_kbps: int
    buffer_ms: int
    played_ms: int
    startup_ms: int
    before_start: bool
    fatal: bool
    error_code: str
    device: str
    cdn: str
    app_version: str
    country: str
    playback_token: str


class HistoryEvent(PlaybackEvent, total=False):
    """An event as ``GET /v1/users/{id}/history`` returns it: the wire fields plus the time
    the server received it."""

    received_at: int


class Rejection(TypedDict):
    """One refused event of a ``POST /v1/events``: its index in the request, and why."""

    index: int
    error: str


class IngestResult(TypedDict):
    accepted: int
    rejected: List[Rejection]


class User(TypedDict):
    id: int
    email: str
    name: str
    country: str
    created_at: str


class Plan(TypedDict):
    id: int
    name: str
    price_cents: int
    currency: str
    period: str
    available: bool
    created_at: str


class _SubscriptionRequired(TypedDict):
    id: int
    user_id: int
    plan_id: int
    payment_id: int
    status: str
    created_at: str


class Subscription(_SubscriptionRequired, total=False):
    """``status`` is ``active`` or ``cancelled``; ``cancelled_at`` is there once cancelled."""

    cancelled_at: str


class Profile(TypedDict):
    """The user profile read model (updated asynchronously from the command side)."""

    id: int
    email: str
    name: str
    country: str
    subscription_active: bool
    plan_id: Optional[int]
    subscription_id: Optional[int]
    subscription_date: Optional[str]
    version: int


class Recommendation(TypedDict):
    content_id: int
    score: float


class Recommendations(TypedDict):
    """``source`` is ``personal``, ``similar_to_recent``, ``trending`` or ``popular``."""

    user_id: int
    source: str
    computed_at: str
    age_ms: int
    computed_at_ms: int
    items: List[Recommendation]


class SimilarTitle(TypedDict):
    content_id: int
    score: float
    viewers_in_common: int


class SimilarTitles(TypedDict):
    """``computed_at`` and ``age_ms`` are ``None`` for a title no refresh has seen yet."""

    content_id: int
    source: str
    measure: str
    computed_at: Optional[str]
    age_ms: Optional[int]
    items: List[SimilarTitle]


class TrendingTitle(TypedDict):
    title: int
    score: float


class Trending(TypedDict):
    country: Optional[str]
    window: str
    titles: List[TrendingTitle]
