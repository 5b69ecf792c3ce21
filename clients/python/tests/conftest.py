"""Fixtures: a real PlayPulse service to test against (no mocks of the service).

- ``PLAYPULSE_URL`` set: the tests use that service, with ``PLAYPULSE_API_KEY`` (an admin
  key; empty or absent when its auth is off) and ``PLAYPULSE_READ_KEY`` (a read key, for the
  role tests). Tests that need other keys or a server of their own skip, or start one from
  ``PLAYPULSE_BIN``.
- Otherwise ``$PLAYPULSE_BIN`` (default: ``target/debug/playpulse`` of the repository, i.e.
  ``../../target/debug/playpulse`` from this package) is started with ``serve`` on a free
  loopback port, a temporary ``--data-dir``, auth on and keys created beforehand with
  ``keys create``; it is stopped with SIGTERM at the end of the session.

The ``limited_service`` fixture always starts its own server (from ``PLAYPULSE_BIN``) with
tight rate limits, to see real 429s with ``Retry-After``.
"""

from __future__ import annotations

import os
import time
from typing import Iterator

import pytest

from playpulse import PlayPulse
from support import (
    START_DEADLINE_S,
    Service,
    start_service,
    stop_service,
    wait_ready,
)


@pytest.fixture(scope="session")
def service() -> Iterator[Service]:
    """The service under test: ``PLAYPULSE_URL``'s, or one started for the session."""
    url = os.environ.get("PLAYPULSE_URL")
    if url:
        url = url.rstrip("/")
        wait_ready(url, time.monotonic() + START_DEADLINE_S)
        read_key = os.environ.get("PLAYPULSE_READ_KEY")
        yield Service(
            url=url,
            key=os.environ.get("PLAYPULSE_API_KEY") or None,
            keys={"read": read_key} if read_key else {},
        )
        return
    started = start_service({}, ["admin", "ingest", "read"])
    try:
        yield started
    finally:
        stop_service(started)


#: The limits of ``limited_service``: a key of role ingest or read passes them quickly.
LIMITED_SETTINGS = {
    "PLAYPULSE_RATE_LIMITS__INGEST": "{ per_second = 2, burst = 2 }",
    "PLAYPULSE_RATE_LIMITS__READ": "{ per_second = 1, burst = 1 }",
}


@pytest.fixture(scope="session")
def limited_service() -> Iterator[Service]:
    """A server of its own (always from ``PLAYPULSE_BIN``) with tight per-key rate limits:
    ingest keys 2 requests/s (burst 2), read keys 1/s (burst 1); admin keys as by default."""
    started = start_service(LIMITED_SETTINGS, ["admin", "ingest", "read"], name="limited")
    try:
        yield started
    finally:
        stop_service(started)


@pytest.fixture()
def api(service: Service) -> Iterator[PlayPulse]:
    """A client with the admin key."""
    with PlayPulse(service.url, service.key) as client:
        yield client
