"""Helpers of the tests: starting and stopping a real PlayPulse service, polling.

- ``PLAYPULSE_URL`` set: the tests use that service, with ``PLAYPULSE_API_KEY`` (an admin
  key; empty or absent when its auth is off).
- Otherwise ``$PLAYPULSE_BIN`` (default: ``target/debug/playpulse`` of the repository, i.e.
  ``../../target/debug/playpulse`` from this package) is started with ``serve`` on a free
  loopback port, a temporary ``--data-dir``, auth on and an admin key created beforehand with
  ``keys create``; it is stopped with SIGTERM at the end of the session.

See conftest.py for the fixtures built on them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, TypeVar

import httpx
import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_BIN = (PACKAGE_DIR / ".." / ".." / "target" / "debug" / "playpulse").resolve()
START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 30.0

T = TypeVar("T")


@dataclass
class Service:
    url: str
    #: An admin key, or None when auth is off.
    key: Optional[str]
    #: Other keys by role (only for services these fixtures started).
    keys: Dict[str, str] = field(default_factory=dict)
    process: Optional["subprocess.Popen[bytes]"] = None
    data_dir: Optional[Path] = None
    log_path: Optional[Path] = None

    @property
    def auth(self) -> bool:
        return self.key is not None

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def binary() -> Path:
    path = Path(os.environ.get("PLAYPULSE_BIN") or DEFAULT_BIN)
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"no PlayPulse binary at {path}: build it (cargo build -p playpulse), set "
            "PLAYPULSE_BIN, or point PLAYPULSE_URL at a running service",
            pytrace=False,
        )
    return path


def _child_env(extra: Mapping[str, str]) -> Dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        # Settings of the environment running the tests must not leak into the server.
        if not name.startswith("PLAYPULSE_") and name != "RUST_LOG"
    }
    env.update(extra)
    return env


def _create_key(bin_path: Path, data_dir: Path, role: str, env: Mapping[str, str]) -> str:
    done = subprocess.run(
        [
            str(bin_path),
            "keys",
            "create",
            "--role",
            role,
            "--name",
            f"pytest-{role}",
            "--data-dir",
            str(data_dir),
        ],
        env=dict(env),
        capture_output=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"`playpulse keys create --role {role}` failed ({done.returncode}): "
            f"{done.stderr.decode(errors='replace')}",
            pytrace=False,
        )
    lines = [line.strip() for line in done.stdout.decode().splitlines() if line.strip()]
    if not lines:
        pytest.fail("`playpulse keys create` printed no key", pytrace=False)
    return lines[-1]


_ADDR = re.compile(r'"addr"\s*:\s*"([0-9.]+:[0-9]+)"')


def _wait_for_address(service: Service, deadline: float) -> str:
    """The address the server bound (``--listen 127.0.0.1:0``), from its "serving" log line."""
    assert service.process is not None and service.log_path is not None
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            pytest.fail(
                f"playpulse exited ({service.process.returncode}) before serving:\n"
                + service.log_tail(),
                pytrace=False,
            )
        for line in service.log_path.read_text(errors="replace").splitlines():
            if '"serving"' in line:
                match = _ADDR.search(line)
                if match:
                    return match.group(1)
        time.sleep(0.05)
    pytest.fail("playpulse did not log its address in time:\n" + service.log_tail(), pytrace=False)


def wait_ready(url: str, deadline: float, service: Optional[Service] = None) -> None:
    last = "no answer"
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if service is not None and service.process is not None:
                if service.process.poll() is not None:
                    pytest.fail(
                        f"playpulse exited ({service.process.returncode}):\n" + service.log_tail(),
                        pytrace=False,
                    )
            try:
                answer = http.get(f"{url}/readyz")
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code} {answer.text[:200]}"
            except httpx.HTTPError as error:
                last = repr(error)
            time.sleep(0.1)
    tail = service.log_tail() if service is not None else ""
    pytest.fail(f"{url}/readyz not 200 in time (last: {last})\n{tail}", pytrace=False)


def start_service(
    settings: Mapping[str, str], roles: List[str], *, name: str = "playpulse"
) -> Service:
    """Starts ``playpulse serve`` on a free loopback port with auth on, after creating one
    key per role (``roles[0]`` should be ``admin``)."""
    bin_path = binary()
    data_dir = Path(tempfile.mkdtemp(prefix=f"pytest-{name}-"))
    env = _child_env(
        {
            "PLAYPULSE_AUTH__ENABLED": "true",
            "PLAYPULSE_LOG__FORMAT": "json",
            # Each test server is small: keep its footprint small too.
            "PLAYPULSE_EMBEDDED__SEGMENT_BYTES": str(16 * 1024 * 1024),
            **settings,
        }
    )
    keys = {role: _create_key(bin_path, data_dir, role, env) for role in roles}
    log_path = data_dir / "serve.log"
    log = open(log_path, "wb")
    try:
        process = subprocess.Popen(
            [str(bin_path), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()
    service = Service(
        url="",
        key=keys.get("admin"),
        keys=keys,
        process=process,
        data_dir=data_dir,
        log_path=log_path,
    )
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        service.url = f"http://{_wait_for_address(service, deadline)}"
        wait_ready(service.url, deadline, service)
    except BaseException:
        stop_service(service)
        raise
    return service


def stop_service(service: Service) -> None:
    process = service.process
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if service.data_dir is not None and os.environ.get("PLAYPULSE_KEEP_DATA") is None:
        shutil.rmtree(service.data_dir, ignore_errors=True)


def eventually(
    probe: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout: float = 15.0,
    interval: float = 0.05,
    what: str = "the condition",
) -> T:
    """Calls ``probe`` until ``done`` holds for its value, at most ``timeout`` seconds; returns
    that value, or fails the test with the last one."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"{what} did not hold within {timeout} s; last value: {value!r}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)


def unique_email() -> str:
    return f"pytest-{uuid.uuid4().hex[:16]}@example.com"


def unique_user_id() -> int:
    """A viewer id no other test (or earlier run against the same service) uses."""
    return 10**12 + uuid.uuid4().int % 10**12


def dump(value: object) -> str:
    return json.dumps(value, indent=1, default=str)[:2000]
