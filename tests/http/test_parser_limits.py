"""Oversize requests get JSON errors from `greenroom serve`, not the parser's text 400."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.http.test_server_process import AUTH, Server, _kill, _start


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    started = _start(tmp_path, GREENROOM_LOGGING__LEVEL="warning")
    yield started
    _kill(started)


def test_a_long_request_target_is_a_json_414(server: Server) -> None:
    response = requests.get(f"{server.base}/v1/sessions/{'x' * 10_000}", headers=AUTH, timeout=10)
    assert response.status_code == 414
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "uri_too_long"


def test_large_headers_are_a_json_431(server: Server) -> None:
    headers = {**AUTH, "X-Big": "y" * 20_000}
    response = requests.get(f"{server.base}/v1/sessions", headers=headers, timeout=10)
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "headers_too_large"


def test_the_limits_are_in_the_openapi_document(server: Server) -> None:
    doc = requests.get(f"{server.base}/openapi.json", timeout=10).json()
    text = doc["info"]["description"]
    assert "414" in text and "431" in text and "plain-text 400" in text
