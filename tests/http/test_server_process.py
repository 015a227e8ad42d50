"""The real `greenroom serve` process: OpenAPI conformance under fuzzing, clean SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from schemathesis.checks import negative_data_rejection
from schemathesis.generation import GenerationMode

from greenroom.http.openapi import openapi_document

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FUZZ_BUDGET_S = 90.0  # the whole fuzzing run stops generating past this


@dataclass
class Server:
    base: str
    proc: subprocess.Popen[str]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """`greenroom serve` on a free loopback port, with a token and short long-polls."""
    env = {
        **os.environ,
        "GREENROOM_DATA_DIR": str(tmp_path),
        "GREENROOM_SERVER__PORT": "0",
        "GREENROOM_SERVER__MAX_WAIT_S": "0.2",  # fuzzed ?wait= values stay short
        "GREENROOM_TOKEN": TOKEN,
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
    yield Server(line.rsplit(" ", 1)[-1].strip(), proc)
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def test_openapi_document_is_valid_and_served(server: Server) -> None:
    validate(openapi_document())
    served = requests.get(f"{server.base}/openapi.json", timeout=10)
    assert served.json() == openapi_document()


@pytest.mark.timeout(180)
def test_fuzzing_the_api_from_its_spec_finds_no_5xx_and_no_nonconformance(
    server: Server,
) -> None:
    http = requests.Session()
    http.headers.update(AUTH)
    sid = http.post(f"{server.base}/v1/sessions", json={}, timeout=10).json()["id"]
    tid = http.post(f"{server.base}/v1/sessions/{sid}/tasks", json={"prompt": "x"}, timeout=10)
    known = {"sid": sid, "tid": tid.json()["id"]}
    served = http.get(f"{server.base}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(served)
    deadline = time.monotonic() + FUZZ_BUDGET_S
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        if operation.path.endswith("/events"):
            continue  # an endless stream; covered by the SSE tests
        ids = {k: v for k, v in known.items() if "{" + k + "}" in operation.path}
        # Real ids reach the handlers' validation; generated ids exercise the 404s.
        for mode, path_parameters, examples in (
            (GenerationMode.POSITIVE, ids, 15),
            (GenerationMode.NEGATIVE, ids, 10),
            (GenerationMode.POSITIVE, None, 3),
        ):
            strategy = operation.as_strategy(mode, path_parameters=path_parameters)
            try:
                calls += _fuzz(
                    strategy,
                    base=server.base,
                    http=http,
                    deadline=deadline,
                    examples=examples,
                    mode=mode,
                )
            except Unsatisfiable:  # nothing of this operation can be made invalid
                assert mode is GenerationMode.NEGATIVE, operation.path
    http.close()
    assert calls >= 100  # the run really exercised the API


def _fuzz(
    strategy: Any,
    *,
    base: str,
    http: requests.Session,
    deadline: float,
    examples: int,
    mode: GenerationMode,
) -> int:
    calls = 0
    # Negative cases only have to fail cleanly: unknown query parameters are ignored
    # by design, and the session adds the Authorization header back.
    excluded = [negative_data_rejection] if mode is GenerationMode.NEGATIVE else None

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        nonlocal calls
        if time.monotonic() > deadline:
            return
        calls += 1
        response = case.call(base_url=base, session=http, timeout=10)
        assert response.status_code < 500, (case.as_curl_command(), response.text)
        assert response.headers.get("x-request-id")
        case.validate_response(response, excluded_checks=excluded)

    check()
    return calls


def test_sigterm_stops_the_server_cleanly(server: Server) -> None:
    sid = requests.post(f"{server.base}/v1/sessions", json={}, headers=AUTH, timeout=10)
    requests.post(
        f"{server.base}/v1/sessions/{sid.json()['id']}/tasks",
        json={"prompt": "x"},
        headers=AUTH,
        timeout=10,
    )
    os.kill(server.proc.pid, signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0


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
