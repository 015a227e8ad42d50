"""The real `greenroom serve` process: OpenAPI conformance under fuzzing, clean SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from openapi_spec_validator import validate

from greenroom.errors import ConfigError
from greenroom.http.openapi import openapi_document
from greenroom.http.server import check_bind

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    env = {
        **os.environ,
        "GREENROOM_DATA_DIR": str(tmp_path),
        "GREENROOM_SERVER__PORT": "0",
        "GREENROOM_LOGGING__LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "greenroom.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "greenroom serving on http://127.0.0.1:PORT"
    if "serving on" not in line:
        proc.kill()
        pytest.fail(f"server did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    yield line.rsplit(" ", 1)[-1].strip(), proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def test_openapi_document_is_valid_and_served(server: tuple[str, subprocess.Popen[str]]) -> None:
    validate(openapi_document())
    base, _ = server
    assert requests.get(f"{base}/openapi.json", timeout=10).json() == openapi_document()


def test_fuzzing_the_api_from_its_spec_finds_no_5xx_and_no_nonconformance(
    server: tuple[str, subprocess.Popen[str]],
) -> None:
    base, _ = server
    session_id = requests.post(f"{base}/v1/sessions", json={}, timeout=10).json()["id"]
    schema = schemathesis.openapi.from_dict(openapi_document())
    http = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/events"):
            continue  # an endless stream; covered by the SSE tests

        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            if "sid" in (case.path_parameters or {}) and case.path_parameters["sid"] == "x":
                case.path_parameters["sid"] = session_id
            response = case.call(base_url=base, session=http, timeout=10)
            assert response.status_code < 500, (case.as_curl_command(), response.text)
            case.validate_response(response)

        check()
    http.close()


def test_sigterm_stops_the_server_cleanly(server: tuple[str, subprocess.Popen[str]]) -> None:
    base, proc = server
    sid = requests.post(f"{base}/v1/sessions", json={}, timeout=10).json()["id"]
    requests.post(f"{base}/v1/sessions/{sid}/tasks", json={"prompt": "x"}, timeout=10)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_non_loopback_bind_without_a_token_is_refused() -> None:
    with pytest.raises(ConfigError, match="without a token"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "a-token")
    check_bind("127.0.0.1", None)
    check_bind("localhost", None)


def test_serve_command_refuses_a_non_loopback_bind_without_a_token(tmp_path: Path) -> None:
    env = {**os.environ, "GREENROOM_DATA_DIR": str(tmp_path)}
    env.pop("GREENROOM_TOKEN", None)
    proc = subprocess.run(
        [sys.executable, "-m", "greenroom.cli", "serve", "--host", "0.0.0.0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "without a token" in proc.stderr
    assert "Traceback" not in proc.stderr
