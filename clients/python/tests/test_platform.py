"""The platform API against a real service: commands, read models, idempotency, errors, auth."""

from __future__ import annotations

import socket
import threading
import uuid
from typing import List, Optional

import httpx
import pytest

from playpulse import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PaymentRequired,
    PlayPulse,
    PlayPulseError,
    Profile,
    Subscription,
    TransportError,
    Unauthorized,
    UnprocessableEntity,
    User,
)
from playpulse.models import Plan
from support import Service, eventually, unique_email, unique_user_id


def new_user(api: PlayPulse, **extra: str) -> User:
    return api.create_user(unique_email(), "Ada Lovelace", "GB", **extra)


def new_plan(api: PlayPulse, *, available: bool = True) -> Plan:
    return api.create_plan(
        f"Premium {uuid.uuid4().hex[:8]}", 1299, "EUR", "monthly", available=available
    )


def profile_or_none(api: PlayPulse, user_id: int) -> Optional[Profile]:
    """The profile read model follows the commands asynchronously: absent for a moment."""
    try:
        return api.get_user_profile(user_id)
    except NotFound:
        return None


def test_user_plan_subscription_then_the_profile_follows(api: PlayPulse) -> None:
    email = unique_email()
    user = api.create_user(email, "Ada Lovelace", "gb", device_id="phone-pytest")
    assert user["id"] > 0
    assert user["email"] == email
    assert user["country"] == "GB"

    plan = new_plan(api)
    assert plan["price_cents"] == 1299 and plan["currency"] == "EUR"
    assert plan["available"] is True
    assert plan["id"] in [listed["id"] for listed in api.list_plans()]

    subscription = api.create_subscription(user["id"], plan["id"], "tok_visa")
    assert subscription["status"] == "active"
    assert subscription["user_id"] == user["id"] and subscription["plan_id"] == plan["id"]

    profile = eventually(
        lambda: profile_or_none(api, user["id"]),
        lambda found: found is not None and found["subscription_active"],
        what="the profile showing the subscription",
    )
    assert profile is not None
    assert profile["subscription_id"] == subscription["id"]
    assert profile["plan_id"] == plan["id"]
    assert profile["email"] == email

    assert [held["id"] for held in api.get_subscriptions(user["id"])] == [subscription["id"]]

    cancelled = api.cancel_subscription(subscription["id"])
    assert cancelled["status"] == "cancelled"
    assert "cancelled_at" in cancelled
    # Cancelling again is harmless: the subscription as it is.
    assert api.cancel_subscription(subscription["id"])["status"] == "cancelled"
    eventually(
        lambda: profile_or_none(api, user["id"]),
        lambda found: found is not None and not found["subscription_active"],
        what="the profile showing the cancellation",
    )


def test_the_same_idempotency_key_returns_the_same_subscription(api: PlayPulse) -> None:
    user = new_user(api)
    plan = new_plan(api)
    key = str(uuid.uuid4())
    first = api.create_subscription(user["id"], plan["id"], "tok_visa", key)
    again = api.create_subscription(user["id"], plan["id"], "tok_visa", key)
    assert again == first
    assert len(api.get_subscriptions(user["id"])) == 1

    other_plan = new_plan(api)
    with pytest.raises(UnprocessableEntity) as refused:
        api.create_subscription(user["id"], other_plan["id"], "tok_visa", key)
    assert refused.value.status == 422
    assert "different request" in refused.value.message
    assert isinstance(refused.value.body, dict) and "error" in refused.value.body


def test_concurrent_calls_with_one_key_make_one_subscription(api: PlayPulse) -> None:
    """Calls racing on one key: the losers may see 409 "in progress", which the client waits
    out (the same key on every retry), and all get the one subscription."""
    user = new_user(api)
    plan = new_plan(api)
    key = str(uuid.uuid4())
    results: List[Subscription] = []
    errors: List[BaseException] = []
    start = threading.Barrier(8)

    def subscribe() -> None:
        with PlayPulse(api.base_url, api.key, max_retries=10) as client:
            start.wait()
            try:
                results.append(client.create_subscription(user["id"], plan["id"], "tok_visa", key))
            except BaseException as error:  # reported below
                errors.append(error)

    threads = [threading.Thread(target=subscribe) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert len(results) == 8
    assert all(result == results[0] for result in results)
    assert len(api.get_subscriptions(user["id"])) == 1


def test_a_generated_key_lets_the_timeout_token_create_one_subscription(api: PlayPulse) -> None:
    """`tok_timeout` charges but its answer is lost: the service reconciles by key."""
    user = new_user(api)
    plan = new_plan(api)
    subscription = api.create_subscription(user["id"], plan["id"], "tok_timeout")
    assert subscription["status"] == "active"
    assert len(api.get_subscriptions(user["id"])) == 1


def test_bad_input_names_its_field(api: PlayPulse) -> None:
    with pytest.raises(BadRequest) as bad_email:
        api.create_user("not-an-email", "Ada", "GB")
    assert bad_email.value.status == 400
    assert bad_email.value.field == "email"
    assert bad_email.value.message.startswith("email")
    assert isinstance(bad_email.value.body, dict) and bad_email.value.body["field"] == "email"

    with pytest.raises(BadRequest) as bad_currency:
        api.create_plan("Premium", 1299, "XXQ", "monthly")
    assert bad_currency.value.field == "currency"

    with pytest.raises(BadRequest) as bad_country:
        api.create_user(unique_email(), "Ada", "ZZ")
    assert bad_country.value.field == "country"

    with pytest.raises(BadRequest) as bad_price:
        api.create_plan("Premium", -1, "EUR", "monthly")
    assert bad_price.value.field == "price_cents"

    user = new_user(api)
    plan = new_plan(api)
    with pytest.raises(BadRequest) as card_number:
        api.create_subscription(user["id"], plan["id"], "4242424242424242")
    assert card_number.value.field == "payment_method.token"


def test_unknown_things_are_not_found(api: PlayPulse) -> None:
    unknown = 9_000_000_000_000
    with pytest.raises(NotFound) as no_profile:
        api.get_user_profile(unknown)
    assert no_profile.value.status == 404
    assert no_profile.value.field is None
    with pytest.raises(NotFound):
        api.get_subscriptions(unknown)
    with pytest.raises(NotFound):
        api.cancel_subscription(unknown)
    plan = new_plan(api)
    with pytest.raises(NotFound) as no_user:
        api.create_subscription(unknown, plan["id"], "tok_visa")
    assert str(unknown) in no_user.value.message


def test_declined_payment_and_conflicts(api: PlayPulse) -> None:
    user = new_user(api)
    plan = new_plan(api)
    with pytest.raises(PaymentRequired) as declined:
        api.create_subscription(user["id"], plan["id"], "tok_chargeDeclined")
    assert declined.value.status == 402
    assert "declined" in declined.value.message
    assert api.get_subscriptions(user["id"]) == []

    with pytest.raises(Conflict):
        api.create_user(user["email"], "Someone Else", "FR")

    closed = new_plan(api, available=False)
    with pytest.raises(Conflict) as unavailable:
        api.create_subscription(user["id"], closed["id"], "tok_visa")
    assert unavailable.value.status == 409

    api.create_subscription(user["id"], plan["id"], "tok_visa")
    with pytest.raises(Conflict) as twice:
        # Another key: a second subscription to the same plan, not a retry.
        api.create_subscription(user["id"], plan["id"], "tok_visa")
    assert "already" in twice.value.message


def test_auth_wrong_key_no_key_and_wrong_role(service: Service) -> None:
    if not service.auth:
        pytest.skip("the service under test runs without auth")
    with PlayPulse(service.url, "pp_not-a-key") as wrong:
        with pytest.raises(Unauthorized) as refused:
            wrong.list_plans()
    assert refused.value.status == 401
    assert "unknown or revoked" in refused.value.message
    with PlayPulse(service.url) as anonymous:
        with pytest.raises(Unauthorized):
            anonymous.get_user_profile(1)
    read_key = service.keys.get("read")
    if read_key is None:
        pytest.skip("no read key for the service under test")
    with PlayPulse(service.url, read_key) as reader:
        assert isinstance(reader.list_plans(), list)
        with pytest.raises(Forbidden) as forbidden:
            reader.create_user(unique_email(), "Ada", "GB")
    assert forbidden.value.status == 403


def test_reads_recommendations_similar_titles_trending(api: PlayPulse) -> None:
    viewer = unique_user_id()
    recommendations = api.get_recommendations(viewer)
    assert recommendations["user_id"] == viewer
    assert recommendations["source"] in {"personal", "similar_to_recent", "trending", "popular"}
    assert isinstance(recommendations["items"], list)
    assert len(api.get_recommendations(viewer, limit=1)["items"]) <= 1

    similar = api.get_similar_titles(987_654_321, limit=5)
    assert similar["content_id"] == 987_654_321
    assert similar["items"] == []
    with pytest.raises(BadRequest) as bad_limit:
        api.get_similar_titles(1, limit=1000)
    assert bad_limit.value.field == "limit"

    everywhere = api.trending()
    assert everywhere["window"] == "now" and everywhere["country"] is None
    assert isinstance(everywhere["titles"], list)
    week = api.trending("SE", "week", limit=3)
    assert week["country"] == "SE" and week["window"] == "week"
    with pytest.raises(BadRequest) as bad_window:
        api.trending(window="forever")
    assert "window" in bad_window.value.message

    assert api.history(viewer) == []
    with pytest.raises(BadRequest):
        api.history(viewer, limit=0)
    with pytest.raises(BadRequest):
        api.history(viewer, from_ms=10, to_ms=5)


def test_the_generic_request_and_an_unknown_route(api: PlayPulse) -> None:
    with pytest.raises(NotFound) as unknown:
        api.request("GET", "/v1/no-such-route")
    assert isinstance(unknown.value, PlayPulseError)
    assert unknown.value.body is not None


def test_an_unreachable_service_is_a_transport_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with PlayPulse(f"http://127.0.0.1:{port}", "pp_x", max_retries=2, timeout=2.0) as api:
        with pytest.raises(TransportError) as failed:
            api.list_plans()
        assert failed.value.status is None
        assert isinstance(failed.value.__cause__, httpx.ConnectError)
        with pytest.raises(TransportError):
            api.create_user(unique_email(), "Ada", "GB")
