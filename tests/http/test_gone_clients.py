"""A client that disconnects mid long-poll or mid stream is noticed at once, not at the
next heartbeat, and is never logged as having read anything."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.http.test_server_process import AUTH, TOKEN, Server, _kill, _start

WAIT_S = 10  # far below the 60 s long-poll and heartbeat: the disconnect is what ends them


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    server = _start(
        tmp_path,
        GREENROOM_LOGGING__LEVEL="info",
        GREENROOM_SERVER__HEARTBEAT_S="60",
        GREENROOM_SERVER__MAX_WAIT_S="60",
        GREENROOM_LIMITS__SESSION_IDLE_S="0.5",
    )
    yield server, tmp_path / "greenroom.log"
    _kill(server)


def hang_up_during(base: str, path: str, request_id: str) -> None:
    """Send a GET that waits, then close the connection without reading the answer."""
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=WAIT_S) as conn:
        conn.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"X-Request-ID: {request_id}\r\n\r\n".encode()
        )
        time.sleep(0.3)  # lets the request reach its handler; correctness does not hang on it


def log_events(log: Path, request_id: str) -> list[dict[str, object]]:
    if not log.exists():
        return []
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [e for e in lines if e.get("request_id") == request_id]


def wait_until_cancelled(log: Path, request_id: str) -> list[dict[str, object]]:
    """The request's handler ended because its client left (logged status "cancelled")."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        seen = log_events(log, request_id)
        finished = [e for e in seen if e["event"] == "request_finished"]
        if finished:
            assert finished[0]["status"] == "cancelled", finished
            return seen
        time.sleep(0.05)  # polls the log file with a deadline
    raise AssertionError(f"{request_id} still waiting: {log_events(log, request_id)}")


def test_a_long_poll_client_that_leaves_is_dropped_at_once(served: tuple[Server, Path]) -> None:
    server, log = served
    sid = requests.post(f"{server.base}/v1/sessions", json={}, headers=AUTH, timeout=10).json()[
        "id"
    ]
    hang_up_during(server.base, f"/v1/sessions/{sid}/results?wait=60", "req-gone-poll")
    wait_until_cancelled(log, "req-gone-poll")
    # A result that lands afterwards is not "read" by the client that left.
    task = requests.post(
        f"{server.base}/v1/sessions/{sid}/tasks", json={"prompt": "x"}, headers=AUTH, timeout=10
    ).json()
    requests.get(
        f"{server.base}/v1/sessions/{sid}/tasks/{task['id']}?wait=10", headers=AUTH, timeout=20
    )
    assert not any(e["event"] == "results_read" for e in log_events(log, "req-gone-poll"))


def test_an_event_stream_client_that_leaves_is_unsubscribed_at_once(
    served: tuple[Server, Path],
) -> None:
    server, log = served
    sid = requests.post(f"{server.base}/v1/sessions", json={}, headers=AUTH, timeout=10).json()[
        "id"
    ]
    hang_up_during(server.base, f"/v1/sessions/{sid}/events", "req-gone-stream")
    wait_until_cancelled(log, "req-gone-stream")
    deadline = time.monotonic() + WAIT_S
    while requests.get(f"{server.base}/v1/stats", headers=AUTH, timeout=10).json()[
        "live_sessions"
    ]:  # unsubscribed: the idle session can now be passivated
        assert time.monotonic() < deadline, "the stream's session stayed busy"
        time.sleep(0.05)
