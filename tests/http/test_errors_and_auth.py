"""Every error is JSON with the right status; auth; request ids and request logs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from greenroom import Orchestrator
from greenroom.http import create_app
from tests.http.conftest import Client, ClientFactory, new_session, settings_for, start_task

TASKS = "/v1/sessions/{sid}/tasks"
ACK = "/v1/sessions/{sid}/results/ack"
RESULTS = "/v1/sessions/{sid}/results"
HUGE_TIMEOUT = '{"prompt": "x", "timeout_s": 1' + "0" * 400 + "}"
UNKNOWN_FIELDS = {"json": {"prompt": "x", "colour": 1, "size": 2}}
LONG_KEY = {"json": {"prompt": "x"}, "headers": {"Idempotency-Key": "k" * 201}}
BAD_RESUME = {"headers": {"Last-Event-ID": "x1"}}

# method, path ({sid} filled in), request kwargs, status, code, text in the message
ERROR_CASES: list[tuple[str, str, dict[str, Any], int, str, str]] = [
    ("POST", TASKS, {"data": "{nope"}, 400, "malformed_json", "JSON"),
    ("POST", TASKS, {"data": "NaN"}, 400, "malformed_json", "NaN"),
    ("POST", TASKS, {"data": "[" * 5000}, 400, "malformed_json", "JSON"),
    ("POST", TASKS, {"data": b"\xff\xfe"}, 400, "malformed_json", "JSON"),
    ("POST", TASKS, {"json": [1]}, 400, "bad_request", "object"),
    ("POST", TASKS, {}, 400, "bad_request", "object"),
    ("POST", TASKS, {"json": {}}, 400, "missing_field", "prompt"),
    ("POST", TASKS, {"json": {"prompt": 5}}, 400, "wrong_type", "prompt"),
    ("POST", TASKS, {"json": {"prompt": " "}}, 400, "bad_request", "prompt"),
    ("POST", TASKS, UNKNOWN_FIELDS, 400, "unknown_field", "colour, size"),
    ("POST", TASKS, {"json": {"prompt": "x", "kind": "odd"}}, 400, "bad_request", "kind"),
    ("POST", TASKS, {"json": {"prompt": "x", "timeout_s": -1}}, 400, "bad_request", "timeout_s"),
    ("POST", TASKS, {"json": {"prompt": "x", "timeout_s": True}}, 400, "wrong_type", "timeout_s"),
    ("POST", TASKS, {"data": HUGE_TIMEOUT}, 400, "wrong_type", "timeout_s"),
    ("POST", TASKS, {"json": {"prompt": "x", "agent": "nope"}}, 404, "agent_not_found", "nope"),
    ("POST", TASKS, LONG_KEY, 400, "bad_header", "Idempotency-Key"),
    ("POST", "/v1/sessions", {"json": {"agent": 3}}, 400, "wrong_type", "agent"),
    ("POST", "/v1/sessions", {"json": {"metadata": []}}, 400, "wrong_type", "metadata"),
    ("POST", "/v1/sessions/{sid}/messages", {"json": {}}, 400, "missing_field", "content"),
    ("GET", RESULTS + "?after=-1", {}, 400, "bad_query", "after"),
    ("GET", RESULTS + "?wait=soon", {}, 400, "bad_query", "wait"),
    ("GET", RESULTS + "?wait=-1", {}, 400, "bad_query", "wait"),
    ("GET", RESULTS + "?wait=nan", {}, 400, "bad_query", "wait"),
    ("GET", RESULTS + "?limit=0", {}, 400, "bad_query", "limit"),
    ("GET", RESULTS + "?limit=5000", {}, 400, "bad_query", "limit"),
    ("GET", TASKS + "/tsk_none?wait=-2", {}, 400, "bad_query", "wait"),
    ("GET", TASKS + "/tsk_none", {}, 404, "task_not_found", "tsk_none"),
    ("POST", TASKS + "/tsk_none/cancel", {}, 404, "task_not_found", "tsk_none"),
    ("GET", "/v1/sessions/ses_none", {}, 404, "session_not_found", "ses_none"),
    ("GET", "/v1/sessions/ses_none/results", {}, 404, "session_not_found", "ses_none"),
    ("GET", "/v1/sessions/ses_none/events", {}, 404, "session_not_found", "ses_none"),
    ("GET", "/v1/sessions/{sid}/events", BAD_RESUME, 400, "bad_query", "Last-Event-ID"),
    ("GET", "/v1/nothing-here", {}, 404, "not_found", "/v1/nothing-here"),
    ("DELETE", "/v1/sessions/{sid}", {}, 405, "method_not_allowed", "DELETE"),
    ("POST", "/healthz", {}, 405, "method_not_allowed", "POST"),
    ("POST", ACK, {"json": {"up_to": 99}}, 409, "ack_beyond_last_seq", "up_to"),
    ("POST", ACK, {"json": {"up_to": -1}}, 400, "bad_request", "up_to"),
    ("POST", ACK, {"json": {"up_to": True}}, 400, "wrong_type", "up_to"),
    ("POST", ACK, {"json": {"up_to": 1.5}}, 400, "wrong_type", "up_to"),
]


async def test_every_error_is_json_naming_the_problem(client: Client) -> None:
    sid = await new_session(client)
    for method, path, kwargs, status, code, text in ERROR_CASES:
        response = await client.request(method, path.format(sid=sid), **kwargs)
        body = await response.json()
        assert (response.status, body["error"]["code"]) == (status, code), (path, body)
        assert text in body["error"]["message"], (path, body)
        assert response.headers["X-Request-ID"]
    wrong_method = await client.delete(f"/v1/sessions/{sid}")
    assert "GET" in wrong_method.headers["Allow"]


async def test_bodies_over_max_body_bytes_are_413_declared_or_not(
    make_client: ClientFactory,
) -> None:
    client = await make_client(limits={"max_body_bytes": 1000})
    sid = await new_session(client)
    declared = await client.post(f"/v1/sessions/{sid}/tasks", json={"prompt": "x" * 2000})

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to check
        yield b'{"prompt": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}'

    streamed = await client.post(f"/v1/sessions/{sid}/tasks", data=chunks())
    for response in (declared, streamed):
        assert response.status == 413
        assert (await response.json())["error"]["code"] == "body_too_large"
    assert (await (await client.get(f"/v1/sessions/{sid}/tasks")).json())["tasks"] == []


async def test_an_unexpected_exception_is_a_generic_500_and_logged(tmp_path: Path) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise KeyError("secret internals")

    with capture_logs() as logs:
        async with Orchestrator(settings_for(tmp_path)) as orch:
            app = create_app(orch)
            app.router.add_get("/v1/broken", broken)
            async with TestClient(TestServer(app, host="127.0.0.1")) as client:
                response = await client.get("/v1/broken", headers={"X-Request-ID": "r-500"})
                body = await response.json()
    assert response.status == 500
    assert body["error"]["code"] == "internal_error"
    assert "secret" not in body["error"]["message"] and "Traceback" not in str(body)
    assert response.headers["X-Request-ID"] == "r-500"
    failed = [e for e in logs if e["event"] == "request_failed"]
    assert len(failed) == 1
    assert failed[0]["request_id"] == "r-500" and failed[0]["error_type"] == "KeyError"
    assert failed[0]["exc_info"] is not None and failed[0]["actor"] == "http"


async def test_with_a_token_every_v1_route_needs_it_and_health_stays_open(
    make_client: ClientFactory,
) -> None:
    client = await make_client(server={"token": "s3cret"})
    auth = {"Authorization": "Bearer s3cret"}
    ok = await client.post("/v1/sessions", json={}, headers=auth)
    assert ok.status == 201
    sid = (await ok.json())["id"]
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert (await client.get(path)).status == 200, path
    v1 = [
        ("POST", "/v1/sessions"),
        ("GET", f"/v1/sessions/{sid}"),
        ("GET", f"/v1/sessions/{sid}/messages"),
        ("POST", f"/v1/sessions/{sid}/messages"),
        ("GET", f"/v1/sessions/{sid}/events"),
        ("GET", f"/v1/sessions/{sid}/tasks"),
        ("POST", f"/v1/sessions/{sid}/tasks"),
        ("GET", f"/v1/sessions/{sid}/tasks/t"),
        ("POST", f"/v1/sessions/{sid}/tasks/t/cancel"),
        ("GET", f"/v1/sessions/{sid}/results"),
        ("POST", f"/v1/sessions/{sid}/results/ack"),
    ]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        for method, path in v1:
            refused = await client.request(method, path, json={}, headers=headers)
            assert refused.status == 401, (method, path, headers)
            assert (await refused.json())["error"]["code"] == "unauthorized"
            assert refused.headers["X-Request-ID"]
    listed = await client.get(f"/v1/sessions/{sid}/tasks", headers=auth)
    assert listed.status == 200


async def test_without_a_token_v1_routes_are_open(client: Client) -> None:
    assert (await client.post("/v1/sessions", json={})).status == 201


async def test_request_ids_are_validated_echoed_and_follow_the_work(tmp_path: Path) -> None:
    with capture_logs() as logs:
        async with Orchestrator(settings_for(tmp_path)) as orch:
            app = create_app(orch)
            async with TestClient(TestServer(app, host="127.0.0.1")) as client:
                given = {"X-Request-ID": "abc.DEF_1-2"}
                created = await client.post("/v1/sessions", json={}, headers=given)
                sid = (await created.json())["id"]
                made_up = await client.get(f"/v1/sessions/{sid}")
                bad = await client.get("/healthz", headers={"X-Request-ID": "has spaces"})
                long = await client.get("/healthz", headers={"X-Request-ID": "x" * 129})
    assert created.headers["X-Request-ID"] == "abc.DEF_1-2"
    for response in (made_up, bad, long):
        assert response.headers["X-Request-ID"].startswith("req_")
    mine = [e for e in logs if e.get("request_id") == "abc.DEF_1-2"]
    events = {(e["event"], e.get("actor")) for e in mine}
    assert ("request_started", "http") in events and ("request_finished", "http") in events
    assert any(e.get("actor") == "session" for e in mine)  # the session saw the same id
    started = next(e for e in mine if e["event"] == "request_started")
    finished = next(e for e in mine if e["event"] == "request_finished")
    assert (started["method"], started["path"]) == ("POST", "/v1/sessions")
    assert finished["status"] == 201 and finished["duration_ms"] >= 0


async def test_a_request_flow_makes_no_blocking_call_on_the_event_loop(client: Client) -> None:
    # Blockbuster is active on every test (conftest): a blocking call made by greenroom
    # on the loop raises there, and the route answers 500 — so every status is checked.
    sid = await new_session(client)
    task = await start_task(client, sid)
    statuses = []
    waited = await client.get(f"/v1/sessions/{sid}/tasks/{task['id']}?wait=10")
    statuses.append(waited.status)
    polled = await client.get(f"/v1/sessions/{sid}/results?wait=5")
    statuses.append(polled.status)
    page = await polled.json()
    acked = await client.post(f"/v1/sessions/{sid}/results/ack", json={"up_to": page["next_after"]})
    statuses.append(acked.status)
    statuses.append((await client.get(f"/v1/sessions/{sid}/tasks")).status)
    turn = await client.post(f"/v1/sessions/{sid}/messages", json={"content": "hi"})
    statuses.append(turn.status)
    statuses.append((await client.get(f"/v1/sessions/{sid}/messages")).status)
    statuses.append((await client.get("/readyz")).status)
    assert statuses == [200, 200, 200, 200, 202, 200, 200]
    assert page["results"][0]["content"] == "x"
