"""The operator dashboard in a real browser: headless Chromium (Debian's chromium and
chromium-driver, driven through WebDriver) opens /ops on the service the test command started,
logs in with an admin key, and watches the tiles while loadgen posts events. The tiles must show
what /metrics says, within a refresh, and follow the load as it starts and stops. A screenshot
is saved under the test output directory.

Environment (set by scripts/python-tests.sh): PLAYPULSE_URL, PLAYPULSE_API_KEY (an admin key;
empty when auth is off), PLAYPULSE_LOADGEN (the loadgen binary), PLAYPULSE_TEST_OUTPUT.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import tempfile
import time
import urllib.request
import uuid
from typing import Callable, Dict, Iterator, Optional, TypeVar

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

URL = os.environ.get("PLAYPULSE_URL", "").rstrip("/")
KEY = os.environ.get("PLAYPULSE_API_KEY", "")
LOADGEN = os.environ.get("PLAYPULSE_LOADGEN", "")
OUTPUT = pathlib.Path(os.environ.get("PLAYPULSE_TEST_OUTPUT", "target/test-output"))
# The page's refresh interval (ops::REFRESH) and how long one refresh may take on a busy CI box.
REFRESH_S = 2.0
WITHIN_A_REFRESH_S = 2 * REFRESH_S + 3.0
LOAD_EVENTS_PER_S = 2000

T = TypeVar("T")

pytestmark = pytest.mark.skipif(not URL, reason="PLAYPULSE_URL names the service under test")


def wait_for(what: str, probe: Callable[[], Optional[T]], timeout_s: float) -> T:
    """Polls `probe` until it returns something other than None or False, or fails."""
    deadline = time.monotonic() + timeout_s
    last: Optional[T] = None
    while time.monotonic() < deadline:
        last = probe()
        if last is not None and last is not False:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")


def request(path: str, body: Optional[bytes] = None) -> bytes:
    headers = {"content-type": "application/json"}
    if KEY:
        headers["authorization"] = f"Bearer {KEY}"
    with urllib.request.urlopen(
        urllib.request.Request(URL + path, data=body, headers=headers), timeout=10
    ) as answer:
        return answer.read()


def metrics() -> Dict[str, float]:
    """The /metrics samples, by name with labels as written."""
    samples: Dict[str, float] = {}
    for line in request("/metrics").decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def rejected_total(samples: Dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith("playpulse_events_rejected_total"))


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    profile = tempfile.mkdtemp(prefix="playpulse-chromium-")
    # The flags the machine needs: no sandbox as root, and no background connections (the
    # network outside loopback is closed).
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1440,1100",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=options
    )
    try:
        yield driver
    finally:
        driver.quit()


def tiles(driver: webdriver.Chrome) -> Dict[str, str]:
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('[data-tile]')]"
        ".map(e => [e.dataset.tile, e.dataset.value || '']))"
    )


def number(driver: webdriver.Chrome, tile: str) -> Optional[float]:
    text = tiles(driver).get(tile, "")
    return float(text) if text else None


def refreshes(driver: webdriver.Chrome) -> int:
    return int(driver.execute_script("return Number(document.body.dataset.refreshes || 0)"))


def open_dashboard(driver: webdriver.Chrome) -> None:
    driver.get(URL + "/ops")
    if KEY:
        # Auth is on: the page sends a person to the login form.
        wait_for("the login form", lambda: driver.current_url.endswith("/ops/login"), 10)
        driver.find_element(By.ID, "key").send_keys(KEY)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait_for("the dashboard after logging in", lambda: driver.current_url.endswith("/ops"), 10)
    wait_for("two refreshes", lambda: refreshes(driver) >= 2, 3 * WITHIN_A_REFRESH_S)


def start_load(rate: int, seconds: int) -> subprocess.Popen:
    command = [
        LOADGEN, "http", "--url", URL, "--rate", str(rate), "--duration", f"{seconds}s",
        "--batch", "100", "--connections", "2",
    ]
    if KEY:
        command += ["--api-key", KEY]
    OUTPUT.mkdir(parents=True, exist_ok=True)
    log = open(OUTPUT / "ops-dashboard-loadgen.log", "wb")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def shows_within_a_refresh(driver: webdriver.Chrome, tile: str, read: Callable[[Dict[str, float]], float]) -> None:
    """What /metrics says now, the tile shows by the next refresh, and never more than /metrics
    says after that."""
    before = read(metrics())
    shown = wait_for(
        f"{tile} to reach /metrics' {before}",
        lambda: (lambda v: v if v is not None and v >= before else None)(number(driver, tile)),
        WITHIN_A_REFRESH_S,
    )
    after = read(metrics())
    assert before <= shown <= after, f"{tile}: /metrics said {before} then {after}, the page {shown}"


def test_tiles_follow_metrics_and_load(browser: webdriver.Chrome) -> None:
    assert LOADGEN and os.access(LOADGEN, os.X_OK), "PLAYPULSE_LOADGEN names the loadgen binary"
    open_dashboard(browser)

    # Every port the page lists is up on a healthy service.
    ports = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('[data-port]')]"
        ".map(e => [e.dataset.port, e.dataset.state]))"
    )
    assert {"sink", "cache"} <= set(ports), ports
    wait_for(
        "every port up",
        lambda: all(
            state == "up"
            for state in browser.execute_script(
                "return [...document.querySelectorAll('[data-port]')].map(e => e.dataset.state)"
            )
        ),
        WITHIN_A_REFRESH_S,
    )

    # Idle first: nothing is being accepted.
    wait_for("an idle rate of 0", lambda: number(browser, "accepted_rate") == 0, 3 * WITHIN_A_REFRESH_S)

    load = start_load(LOAD_EVENTS_PER_S, 60)
    try:
        rate = wait_for(
            f"the accepted rate to reach about {LOAD_EVENTS_PER_S}/s",
            lambda: (lambda v: v if v is not None and 0.5 * LOAD_EVENTS_PER_S <= v <= 1.5 * LOAD_EVENTS_PER_S else None)(
                number(browser, "accepted_rate")
            ),
            30,
        )
        assert rate > 0
        shows_within_a_refresh(browser, "accepted_rate_sub", lambda m: m["playpulse_events_accepted_total"])
        shows_within_a_refresh(browser, "sink_errors", lambda m: m["playpulse_sink_errors_total"])
        # Latencies are measured while acknowledgements flow.
        wait_for("an acknowledgement p99", lambda: (number(browser, "ack_p99") or 0) > 0, WITHIN_A_REFRESH_S)
        wait_for("a sink write p99", lambda: (number(browser, "sink_p99") or 0) > 0, WITHIN_A_REFRESH_S)

        # Three events the service must reject, by reason, among the load.
        bad = [
            {
                "event_id": str(uuid.uuid4()), "session_id": str(uuid.uuid4()), "user_id": 7,
                "content_id": 7, "kind": "nope", "ts": int(time.time() * 1000), "position_ms": 0,
            }
            for _ in range(3)
        ]
        ack = json.loads(request("/v1/events", json.dumps(bad).encode()))
        assert len(ack["rejected"]) == 3, ack
        shows_within_a_refresh(browser, "rejected_rate_sub", rejected_total)
        reason = wait_for(
            "the invalid_value row",
            lambda: browser.execute_script(
                "const row = document.querySelector('[data-tile=rejected_reasons] tr[data-reason=invalid_value]');"
                "return row ? Number(row.dataset.value) : null"
            ),
            WITHIN_A_REFRESH_S,
        )
        assert reason == metrics()['playpulse_events_rejected_total{reason="invalid_value"}']

        # Let the charts fill a little, then keep a picture of the page under load.
        seen = refreshes(browser)
        wait_for("five more refreshes", lambda: refreshes(browser) >= seen + 5, 6 * WITHIN_A_REFRESH_S)
        if browser.execute_script("return document.body.dataset.analytics") == "true":
            wait_for("trending titles", lambda: tiles(browser).get("trending") or None, 3 * WITHIN_A_REFRESH_S)
            wait_for("concurrent viewers", lambda: (number(browser, "concurrent_viewers") or 0) > 0, 3 * WITHIN_A_REFRESH_S)
        OUTPUT.mkdir(parents=True, exist_ok=True)
        screenshot = OUTPUT / "ops-dashboard.png"
        assert browser.save_screenshot(str(screenshot)), "the screenshot is saved"
        assert screenshot.stat().st_size > 10_000
        # Charts were drawn (uPlot's canvases), and the page asked for nothing from elsewhere.
        assert browser.execute_script("return document.querySelectorAll('[data-chart] canvas').length") >= 3
        foreign = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(n => !n.startsWith(location.origin))"
        )
        assert foreign == [], foreign
    finally:
        load.terminate()
        load.wait(timeout=30)

    # The load stopped: the rate falls back to 0 and the totals hold still at /metrics' values.
    wait_for("the rate to fall to 0", lambda: number(browser, "accepted_rate") == 0, 3 * WITHIN_A_REFRESH_S)
    shows_within_a_refresh(browser, "accepted_rate_sub", lambda m: m["playpulse_events_accepted_total"])
