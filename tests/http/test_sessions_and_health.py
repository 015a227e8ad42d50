"""Health, readiness, the OpenAPI document, sessions and foreground turns."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from greenroom import Orchestrator
from greenroom.errors import StoreError
from greenroom.http import create_app
from greenroom.http.openapi import openapi_document
from greenroom.store import MemoryStore
from tests.actors.agents import Gate
from tests.http.conftest import Client, ClientFactory, SSEReader, new_session, settings_for


class UnreachableStore(MemoryStore):
    """A store whose health check fails once the test says so (a real MemoryStore else)."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False

    def check(self) -> None:
        if self.broken:
            raise StoreError("disk is read-only")
        super().check()


async def test_health_readiness_and_the_openapi_document_are_served(client: Client) -> None:
    health = await client.get("/healthz")
    assert (health.status, await health.json()) == (200, {"status": "ok"})
    ready = await client.get("/readyz")
    assert (ready.status, await ready.json()) == (200, {"status": "ready"})
    spec = await (await client.get("/openapi.json")).json()
    assert spec == openapi_document() and spec["openapi"].startswith("3.1")


async def test_readiness_is_503_while_the_store_check_fails(tmp_path: Path) -> None:
    store = UnreachableStore()
    async with (
        Orchestrator(settings_for(tmp_path), store=store) as orch,
        TestClient(TestServer(create_app(orch), host="127.0.0.1")) as client,
    ):
        assert (await client.get("/readyz")).status == 200
        store.broken = True
        failing = await client.get("/readyz")
        body = await failing.json()
        store.broken = False
        assert (await client.get("/readyz")).status == 200
    assert failing.status == 503
    assert body["error"]["code"] == "store_unavailable"
    assert "read-only" in body["error"]["message"]


async def test_a_session_is_created_and_read_back(client: Client) -> None:
    created = await client.post("/v1/sessions", json={"agent": "echo", "metadata": {"u": 1}})
    assert created.status == 201
    session = await created.json()
    assert {"id", "agent", "created_at", "task_counts"} <= set(session)
    again = await (await client.get(f"/v1/sessions/{session['id']}")).json()
    assert again["id"] == session["id"] and again["metadata"] == {"u": 1}
    assert again["agent"] == "echo" and again["task_counts"] == {}
    bare = await client.post("/v1/sessions")  # no body at all: every field is optional
    assert bare.status == 201


async def test_a_second_turn_conflicts_while_the_first_runs(make_client: ClientFactory) -> None:
    gate = Gate()
    client = await make_client(agents={"gate": gate})
    sid = await new_session(client, agent="gate")
    first = await client.post(f"/v1/sessions/{sid}/messages", json={"content": "one"})
    assert first.status == 202
    turn = await first.json()
    assert turn["session_id"] == sid and turn["turn_id"].startswith("turn_")
    second = await client.post(f"/v1/sessions/{sid}/messages", json={"content": "two"})
    assert second.status == 409
    assert (await second.json())["error"]["code"] == "turn_in_progress"
    stream = await client.get(f"/v1/sessions/{sid}/events")
    await asyncio.wait_for(gate.entered.wait(), 10)
    gate.opened.set()
    await SSEReader(stream).until("message.completed")
    stream.close()
    transcript = await (await client.get(f"/v1/sessions/{sid}/messages")).json()
    assert [m["content"] for m in transcript["messages"]] == ["one", "gate:one"]
    assert [m["role"] for m in transcript["messages"]] == ["user", "assistant"]
