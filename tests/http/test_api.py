"""Every endpoint of the v1 API and its errors, against a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp.test_utils import TestClient

from tests.actors.agents import Gate, chunks, forever
from tests.http.conftest import ClientFactory, new_session

Client = TestClient[Any, Any]


async def test_health_and_readiness(client: Client) -> None:
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    assert await (await client.get("/readyz")).json() == {"status": "ready"}


async def test_a_task_runs_from_start_to_acknowledged_result(client: Client) -> None:
    sid = await new_session(client, metadata={"user": "ada"})
    info = await (await client.get(f"/v1/sessions/{sid}")).json()
    assert info["metadata"] == {"user": "ada"} and info["agent"] == "echo"
    started = await client.post(f"/v1/sessions/{sid}/tasks", json={"prompt": "hello"})
    assert started.status == 202
    task = await started.json()
    assert {"id", "status", "kind", "agent", "created_at"} <= set(task)
    done = await (await client.get(f"/v1/sessions/{sid}/tasks/{task['id']}?wait=10")).json()
    assert done["status"] == "completed" and done["content"] == "hello"
    page = await (await client.get(f"/v1/sessions/{sid}/results?after=0")).json()
    assert [r["task_id"] for r in page["results"]] == [task["id"]]
    assert page["next_after"] == done["seq"]
    ack = await client.post(f"/v1/sessions/{sid}/results/ack", json={"up_to": done["seq"]})
    assert await ack.json() == {"acked_up_to": done["seq"]}
    listing = await (await client.get(f"/v1/sessions/{sid}/tasks")).json()
    assert [t["id"] for t in listing["tasks"]] == [task["id"]]
    assert "X-Request-ID" in started.headers


async def test_two_pollers_each_see_every_result(client: Client) -> None:
    sid = await new_session(client)
    ids = [
        (await (await client.post(f"/v1/sessions/{sid}/tasks", json={"prompt": f"p{i}"})).json())[
            "id"
        ]
        for i in range(5)
    ]

    async def poll_all() -> list[str]:
        seen: list[str] = []
        after = 0
        while len(seen) < 5:
            page = await (
                await client.get(f"/v1/sessions/{sid}/results?after={after}&wait=5")
            ).json()
            seen += [r["task_id"] for r in page["results"]]
            after = page["next_after"]
        return seen

    first, second = await asyncio.wait_for(asyncio.gather(poll_all(), poll_all()), 20)
    assert sorted(first) == sorted(second) == sorted(ids)


async def test_long_poll_returns_as_soon_as_the_result_lands(make_client: ClientFactory) -> None:
    gate = Gate()
    client = await make_client(agents={"gate": gate})
    sid = await new_session(client)
    await client.post(f"/v1/sessions/{sid}/tasks", json={"prompt": "x", "agent": "gate"})
    poll = asyncio.create_task(client.get(f"/v1/sessions/{sid}/results?wait=50"))
    await asyncio.wait_for(gate.entered.wait(), 10)
    assert not poll.done()
    gate.opened.set()
    response = await asyncio.wait_for(poll, 10)  # far sooner than the 50 s wait
    assert [r["content"] for r in (await response.json())["results"]] == ["gate:x"]


async def test_sse_pushes_task_completed_and_resumes_after_a_gap(client: Client) -> None:
    sid = await new_session(client)
    stream = await client.get(f"/v1/sessions/{sid}/events")
    await client.post(f"/v1/sessions/{sid}/tasks", json={"prompt": "pushed"})
    events = await asyncio.wait_for(_read_events(stream, until="task.completed"), 10)
    stream.close()
    assert [e["event"] for e in events] == ["task.queued", "task.started", "task.completed"]
    assert [e["id"] for e in events] == ["1", "2", "3"]
    # A task completes while nobody listens: the next poll and an SSE resume both see it.
    task = await (await client.post(f"/v1/sessions/{sid}/tasks", json={"prompt": "quiet"})).json()
    await client.get(f"/v1/sessions/{sid}/tasks/{task['id']}?wait=10")
    page = await (await client.get(f"/v1/sessions/{sid}/results?after=3")).json()
    assert [r["task_id"] for r in page["results"]] == [task["id"]]
    resumed = await client.get(f"/v1/sessions/{sid}/events", headers={"Last-Event-ID": "3"})
    replay = await asyncio.wait_for(_read_events(resumed, until="task.completed"), 10)
    resumed.close()
    assert [e["id"] for e in replay] == ["4", "5", "6"]
    assert json.loads(replay[-1]["data"])["task_id"] == task["id"]


async def _read_events(response: Any, until: str) -> list[dict[str, str]]:
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if "event" in current:
                events.append(current)
                if current["event"] == until:
                    return events
            current = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            current[key] = value
    return events


async def test_foreground_turn_streams_and_second_turn_conflicts(
    make_client: ClientFactory,
) -> None:
    gate = Gate()
    client = await make_client(agents={"gate": gate, "chunks": chunks})
    sid = await new_session(client, agent="gate")
    first = await client.post(f"/v1/sessions/{sid}/messages", json={"content": "one"})
    assert first.status == 202
    second = await client.post(f"/v1/sessions/{sid}/messages", json={"content": "two"})
    assert second.status == 409
    assert (await second.json())["error"]["code"] == "turn_in_progress"
    gate.opened.set()
    sid2 = await new_session(client, agent="chunks")
    stream = await client.get(f"/v1/sessions/{sid2}/events")
    await client.post(f"/v1/sessions/{sid2}/messages", json={"content": "a b c"})
    events = await asyncio.wait_for(_read_events(stream, until="message.completed"), 10)
    stream.close()
    deltas = [json.loads(e["data"])["content"] for e in events if e["event"] == "message.delta"]
    assert deltas == ["a ", "b ", "c "]
    assert all("id" not in e for e in events if e["event"] == "message.delta")
    transcript = await (await client.get(f"/v1/sessions/{sid2}/messages")).json()
    assert [m["content"] for m in transcript["messages"]] == ["a b c", "a b c "]


async def test_cancel_during_a_streaming_turn_and_cancel_twice(
    make_client: ClientFactory,
) -> None:
    gate = Gate()
    client = await make_client(agents={"gate": gate, "forever": forever})
    sid = await new_session(client, agent="gate")
    await client.post(f"/v1/sessions/{sid}/messages", json={"content": "talking"})
    task = await (
        await client.post(f"/v1/sessions/{sid}/tasks", json={"prompt": "x", "agent": "forever"})
    ).json()
    first = await (await client.post(f"/v1/sessions/{sid}/tasks/{task['id']}/cancel")).json()
    second = await (await client.post(f"/v1/sessions/{sid}/tasks/{task['id']}/cancel")).json()
    assert first["status"] == second["status"] == "cancelled"
    gate.opened.set()  # the turn is unaffected
    page = await (await client.get(f"/v1/sessions/{sid}/results")).json()
    assert [r["status"] for r in page["results"]] == ["cancelled"]


async def test_idempotency_key_returns_the_same_task(client: Client) -> None:
    sid = await new_session(client)
    headers = {"Idempotency-Key": "retry-me"}
    first = await (
        await client.post(f"/v1/sessions/{sid}/tasks", json={"prompt": "x"}, headers=headers)
    ).json()
    again = await (
        await client.post(f"/v1/sessions/{sid}/tasks", json={"prompt": "x"}, headers=headers)
    ).json()
    assert first["id"] == again["id"]
    assert len((await (await client.get(f"/v1/sessions/{sid}/tasks")).json())["tasks"]) == 1


async def test_queue_full_is_429_with_retry_after(make_client: ClientFactory) -> None:
    gate = Gate()
    client = await make_client(
        agents={"gate": gate}, limits={"max_running_tasks": 1, "max_queued_tasks": 1}
    )
    sid = await new_session(client)
    body = {"prompt": "x", "agent": "gate"}
    assert (await client.post(f"/v1/sessions/{sid}/tasks", json=body)).status == 202
    assert (await client.post(f"/v1/sessions/{sid}/tasks", json=body)).status == 202
    refused = await client.post(f"/v1/sessions/{sid}/tasks", json=body)
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert (await refused.json())["error"]["code"] == "queue_full"
    gate.opened.set()
    assert len((await (await client.get(f"/v1/sessions/{sid}/tasks")).json())["tasks"]) == 2


async def test_errors_are_json_with_the_right_status(make_client: ClientFactory) -> None:
    client = await make_client(limits={"max_body_bytes": 1000})
    sid = await new_session(client)
    cases = [
        (client.post(f"/v1/sessions/{sid}/tasks", data="{nope"), 400, "malformed_json"),
        (client.post(f"/v1/sessions/{sid}/tasks", json=[1]), 400, "bad_request"),
        (client.post(f"/v1/sessions/{sid}/tasks", json={}), 400, "missing_field"),
        (client.post(f"/v1/sessions/{sid}/tasks", json={"prompt": 5}), 400, "wrong_type"),
        (
            client.post(f"/v1/sessions/{sid}/tasks", json={"prompt": "x", "colour": 1}),
            400,
            "unknown_field",
        ),
        (
            client.post(f"/v1/sessions/{sid}/tasks", json={"prompt": "x", "kind": "odd"}),
            400,
            "bad_request",
        ),
        (
            client.post(f"/v1/sessions/{sid}/tasks", json={"prompt": "x", "agent": "nope"}),
            404,
            "agent_not_found",
        ),
        (
            client.post(f"/v1/sessions/{sid}/tasks", json={"prompt": "x" * 2000}),
            413,
            "body_too_large",
        ),
        (client.get(f"/v1/sessions/{sid}/results?after=-1"), 400, "bad_query"),
        (client.get(f"/v1/sessions/{sid}/results?wait=soon"), 400, "bad_query"),
        (client.get(f"/v1/sessions/{sid}/tasks/tsk_none"), 404, "task_not_found"),
        (client.get("/v1/sessions/ses_none"), 404, "session_not_found"),
        (client.get("/v1/nothing-here"), 404, "not_found"),
        (client.delete(f"/v1/sessions/{sid}"), 405, "method_not_allowed"),
        (client.post(f"/v1/sessions/{sid}/results/ack", json={"up_to": 99}), 400, "bad_request"),
        (client.post(f"/v1/sessions/{sid}/results/ack", json={"up_to": True}), 400, "wrong_type"),
    ]
    for request, status, code in cases:
        response = await request
        body = await response.json()
        assert (response.status, body["error"]["code"]) == (status, code), body
        assert body["error"]["message"]
        assert "X-Request-ID" in response.headers


async def test_request_id_is_echoed(client: Client) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    bad = await client.get("/healthz", headers={"X-Request-ID": "has spaces"})
    assert bad.headers["X-Request-ID"].startswith("req_")


async def test_token_protects_v1_routes_only(make_client: ClientFactory) -> None:
    client = await make_client(server={"token": "s3cret"})
    assert (await client.get("/healthz")).status == 200
    refused = await client.post("/v1/sessions", json={})
    assert refused.status == 401
    assert (await refused.json())["error"]["code"] == "unauthorized"
    wrong = await client.post("/v1/sessions", json={}, headers={"Authorization": "Bearer no"})
    assert wrong.status == 401
    ok = await client.post("/v1/sessions", json={}, headers={"Authorization": "Bearer s3cret"})
    assert ok.status == 201


async def test_two_hundred_clients_long_polling_each_get_their_result(
    client: Client,
) -> None:
    sessions = [await new_session(client) for _ in range(200)]

    async def one(sid: str) -> str:
        poll = asyncio.create_task(client.get(f"/v1/sessions/{sid}/results?wait=30"))
        await client.post(f"/v1/sessions/{sid}/tasks", json={"prompt": sid})
        page = await (await poll).json()
        return str(page["results"][0]["content"])

    got = await asyncio.wait_for(asyncio.gather(*(one(s) for s in sessions)), 60)
    assert got == sessions


async def test_a_request_flow_makes_no_blocking_call_on_the_event_loop(client: Client) -> None:
    from blockbuster import blockbuster_ctx

    with blockbuster_ctx(["greenroom"]):
        sid = await new_session(client)
        task = await (await client.post(f"/v1/sessions/{sid}/tasks", json={"prompt": "x"})).json()
        await client.get(f"/v1/sessions/{sid}/tasks/{task['id']}?wait=10")
        page = await (await client.get(f"/v1/sessions/{sid}/results?wait=5")).json()
        await client.post(f"/v1/sessions/{sid}/results/ack", json={"up_to": page["next_after"]})
        await client.get(f"/v1/sessions/{sid}/tasks")
    assert page["results"][0]["content"] == "x"
