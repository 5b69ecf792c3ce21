"""The platform API: users, plans, subscriptions, profiles, recommendations, history."""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import Any, Callable, Dict, List, Mapping, Optional, Type, Union, cast

import httpx

from ._version import __version__
from ._retry import (
    RETRYABLE_STATUSES,
    Backoff,
    any_transport_error,
    before_sending,
    send_with_retries,
)
from .errors import UnexpectedStatus, error_from_response
from .models import (
    HistoryEvent,
    Plan,
    Profile,
    Recommendations,
    SimilarTitles,
    Subscription,
    Trending,
    User,
)

__all__ = ["PlayPulse", "USER_AGENT"]

USER_AGENT = f"playpulse-python/{__version__}"

QueryValue = Union[str, int]


def _is_key_in_progress(response: httpx.Response) -> bool:
    """The 409 a subscription gets while another request with its Idempotency-Key is still
    running (``"a request with this Idempotency-Key is in progress"``): worth waiting for,
    unlike the other 409s (email taken, plan unavailable, already subscribed)."""
    if response.status_code != 409:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    message = body.get("error") if isinstance(body, dict) else None
    return isinstance(message, str) and "in progress" in message.lower()


def _retryable(response: httpx.Response) -> bool:
    return response.status_code in RETRYABLE_STATUSES


def _not_yet_processed(response: httpx.Response) -> bool:
    """For commands that must not run twice: only answers that say the request was refused
    before it was processed (rate limits)."""
    return response.status_code == 429


def _subscription_retryable(response: httpx.Response) -> bool:
    return _retryable(response) or _is_key_in_progress(response)


class PlayPulse:
    """A synchronous client of the PlayPulse API.

    >>> with PlayPulse("http://127.0.0.1:8080", key="pp_...") as api:
    ...     user = api.create_user("ada@example.com", "Ada Lovelace", "GB")

    ``key`` is sent as ``Authorization: Bearer KEY``. ``timeout`` bounds each HTTP try
    (seconds). Reads, cancellations and subscriptions (made idempotent by their
    Idempotency-Key) are retried up to ``max_retries`` times on connection failures, timeouts,
    408, 429, 502, 503 and 504, waiting as ``Retry-After`` says or with exponential backoff
    and jitter; user and plan creation, which must not run twice, only when nothing reached the
    service (the connection could not be made, or a 429). The client is thread-safe; close it
    (or use it as a context manager) to release its connections.
    """

    def __init__(
        self,
        base_url: str,
        key: Optional[str] = None,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff: Optional[Backoff] = None,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        self._base_url = base_url.rstrip("/")
        self._key = key or None
        self._timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff if backoff is not None else Backoff(base=0.2, cap=5.0)
        headers = {"user-agent": USER_AGENT, "accept": "application/json"}
        if self._key is not None:
            headers["authorization"] = f"Bearer {self._key}"
        self._http = httpx.Client(
            base_url=self._base_url,
            headers=headers,
            timeout=timeout,
            transport=transport,
        )

    # -- plumbing -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def key(self) -> Optional[str]:
        return self._key

    @property
    def timeout(self) -> float:
        return self._timeout

    def close(self) -> None:
        """Closes the connections. Idempotent."""
        self._http.close()

    def __enter__(self) -> PlayPulse:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PlayPulse({self._base_url!r}, key={'***' if self._key else None})"

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Optional[Mapping[str, QueryValue]] = None,
        headers: Optional[Mapping[str, str]] = None,
        idempotent: bool = True,
        should_retry: Optional[Callable[[httpx.Response], bool]] = None,
    ) -> Any:
        """Sends one API request with the client's retries and returns the decoded JSON.

        A public escape hatch for routes this class has no method for. ``idempotent=False``
        retries only when the request cannot have been processed. Raises the
        :class:`PlayPulseError` subclass for the status of an error answer.
        """
        request = self._http.build_request(method, path, json=json, params=params, headers=headers)
        if should_retry is None:
            should_retry = _retryable if idempotent else _not_yet_processed
        response = send_with_retries(
            lambda: self._http.send(request),
            max_retries=self.max_retries,
            backoff=self.backoff,
            should_retry=should_retry,
            retry_transport=any_transport_error if idempotent else before_sending,
        )
        if response.status_code >= 400:
            raise error_from_response(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as error:
            raise UnexpectedStatus(
                f"the answer to {method} {path} is not JSON: {response.text[:200]!r}",
                status=response.status_code,
                body=None,
            ) from error

    def _get(self, path: str, params: Optional[Mapping[str, Optional[QueryValue]]] = None) -> Any:
        query: Dict[str, QueryValue] = {}
        if params:
            query = {name: value for name, value in params.items() if value is not None}
        return self.request("GET", path, params=query or None)

    # -- commands -------------------------------------------------------------------------

    def create_user(
        self, email: str, name: str, country: str, *, device_id: Optional[str] = None
    ) -> User:
        """``POST /v1/users``. ``country``: ISO 3166-1 alpha-2. Raises :class:`BadRequest`
        (with ``field``) for bad input, :class:`Conflict` when the email is taken."""
        body: Dict[str, Any] = {"email": email, "name": name, "country": country}
        if device_id is not None:
            body["device_id"] = device_id
        return cast(User, self.request("POST", "/v1/users", json=body, idempotent=False))

    def create_plan(
        self,
        name: str,
        price_cents: int,
        currency: str,
        period: str,
        *,
        available: bool = True,
    ) -> Plan:
        """``POST /v1/plans``. ``currency``: an active ISO 4217 code; ``period`` e.g.
        ``monthly``. Raises :class:`BadRequest` (with ``field``) for bad input."""
        body = {
            "name": name,
            "price_cents": price_cents,
            "currency": currency,
            "period": period,
            "available": available,
        }
        return cast(Plan, self.request("POST", "/v1/plans", json=body, idempotent=False))

    def list_plans(self) -> List[Plan]:
        """``GET /v1/plans``: every plan, available or not."""
        return cast(List[Plan], self._get("/v1/plans"))

    def create_subscription(
        self,
        user_id: int,
        plan_id: int,
        payment_token: str,
        idempotency_key: Optional[str] = None,
        *,
        device_id: Optional[str] = None,
    ) -> Subscription:
        """``POST /v1/subscriptions``: charges ``payment_token`` and subscribes the user.

        The request carries an ``Idempotency-Key`` (``idempotency_key``, or a new UUID when
        ``None``), the same on every retry of this call, so that a retry never charges twice:
        it is retried on connection failures and timeouts, 429, 503 (e.g. "payment outcome
        unknown") and the 409 "a request with this Idempotency-Key is in progress". Pass your
        own key to make retries across calls (or processes) safe too: the same key and body
        returns the same subscription; the same key with another body raises
        :class:`UnprocessableEntity`.

        Raises :class:`PaymentRequired` when declined, :class:`NotFound` for an unknown user
        or plan, :class:`Conflict` when the plan is unavailable or already subscribed,
        :class:`BadRequest` (with ``field``) for bad input.
        """
        key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
        body: Dict[str, Any] = {
            "user_id": user_id,
            "plan_id": plan_id,
            "payment_method": {"token": payment_token},
        }
        if device_id is not None:
            body["device_id"] = device_id
        return cast(
            Subscription,
            self.request(
                "POST",
                "/v1/subscriptions",
                json=body,
                headers={"idempotency-key": key},
                should_retry=_subscription_retryable,
            ),
        )

    def cancel_subscription(self, subscription_id: int) -> Subscription:
        """``POST /v1/subscriptions/{id}/cancel``: idempotent (cancelling a cancelled
        subscription returns it as it is). Raises :class:`NotFound` when there is none."""
        return cast(
            Subscription,
            self.request("POST", f"/v1/subscriptions/{_id(subscription_id)}/cancel"),
        )

    # -- queries --------------------------------------------------------------------------

    def get_user_profile(self, user_id: int) -> Profile:
        """``GET /v1/users/{id}``: the profile read model. It follows the commands
        asynchronously: right after a subscription, ``subscription_active`` may still be
        false for a moment."""
        return cast(Profile, self._get(f"/v1/users/{_id(user_id)}"))

    def get_subscriptions(self, user_id: int) -> List[Subscription]:
        """``GET /v1/users/{id}/subscriptions``: from the command side (never stale)."""
        return cast(List[Subscription], self._get(f"/v1/users/{_id(user_id)}/subscriptions"))

    def get_recommendations(self, user_id: int, limit: Optional[int] = None) -> Recommendations:
        """``GET /v1/users/{id}/recommendations``. The service serves a whole list
        (``platform.recommendations.limit``, 20 by default); ``limit`` keeps its first
        ``limit`` items."""
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        answer = cast(Recommendations, self._get(f"/v1/users/{_id(user_id)}/recommendations"))
        if limit is not None and isinstance(answer.get("items"), list):
            answer["items"] = answer["items"][:limit]
        return answer

    def get_similar_titles(self, content_id: int, limit: Optional[int] = None) -> SimilarTitles:
        """``GET /v1/titles/{id}/similar?limit=N`` (1 to 100, default 10)."""
        return cast(
            SimilarTitles,
            self._get(f"/v1/titles/{_id(content_id)}/similar", {"limit": limit}),
        )

    def history(
        self,
        user_id: int,
        *,
        from_ms: Optional[int] = None,
        to_ms: Optional[int] = None,
        limit: Optional[int] = None,
    ) -> List[HistoryEvent]:
        """``GET /v1/users/{id}/history``: events with ``from_ms <= ts <= to_ms``, newest
        first, each ``event_id`` once; ``limit`` 1 to 10,000 (default 100)."""
        return cast(
            List[HistoryEvent],
            self._get(
                f"/v1/users/{_id(user_id)}/history",
                {"from": from_ms, "to": to_ms, "limit": limit},
            ),
        )

    def trending(
        self, country: Optional[str] = None, window: str = "now", *, limit: Optional[int] = None
    ) -> Trending:
        """``GET /v1/trending``: ``window`` is ``now`` (decayed) or ``week``; ``country`` an
        ISO 3166-1 alpha-2 code, or ``None`` for everywhere; ``limit`` 1 to 100 (default
        10)."""
        return cast(
            Trending,
            self._get("/v1/trending", {"country": country, "window": window, "limit": limit}),
        )


def _id(value: int) -> str:
    """A path id: refuses what would change the path (``"1/../x"``) before it is sent."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"an id must be an int, got {type(value).__name__}")
    return str(value)
