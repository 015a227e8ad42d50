"""Storage faults over HTTP: a refused completion is retried and recorded exactly once;
a refused write answers 503 and leaves nothing half-done."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from greenroom import Orchestrator
from greenroom.errors import StoreError
from greenroom.http import create_app
from greenroom.models import Write
from greenroom.settings import Settings
from greenroom.store.sqlite import SqliteStore
from tests.http.conftest import Client, SSEReader, data, new_session, settings_for, start_task

WAIT_S = 10


class FaultyStore(SqliteStore):
    """A real SQLite store in front of which the test puts a failing disk: while a fault
    is on, the writes it covers fail with ``StoreError`` and nothing of them is written."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.refuse_completions = False  # writes that record a terminal task
        self.refuse_all = False
        self.refused_completions = 0
        self.completion_retried = threading.Event()  # a second completion write was refused

    def write(self, write: Write, done: Callable[[BaseException | None], None]) -> None:
        completion = any(t.status.terminal for t in write.tasks)
        if self.refuse_all or (completion and self.refuse_completions):
            if completion:
                self.refused_completions += 1
                if self.refused_completions >= 2:
                    self.completion_retried.set()
            done(StoreError("injected fault: the disk refused the write"))
            return
        super().write(write, done)


def _sqlite_settings(tmp_path: Path) -> Settings:
    settings = settings_for(tmp_path, store={"kind": "sqlite"})
    Path(settings.data_dir).mkdir(parents=True)
    return settings


@asynccontextmanager
async def _serving(settings: Settings) -> AsyncIterator[tuple[Orchestrator, FaultyStore, Client]]:
    store = FaultyStore(Path(settings.data_dir) / "greenroom.db")
    async with Orchestrator(settings, store=store) as orch:
        client = TestClient(TestServer(create_app(orch), host="127.0.0.1"))
        async with client:
            yield orch, store, client


async def test_a_completion_the_store_refused_is_retried_and_recorded_once(
    tmp_path: Path,
) -> None:
    settings = _sqlite_settings(tmp_path)
    async with _serving(settings) as (orch, store, client):
        sid = await new_session(client)
        stream = await client.get(f"/v1/sessions/{sid}/events")
        sse = SSEReader(stream)
        store.refuse_completions = True
        task = await start_task(client, sid, "kept")
        # The first write of the completion failed, and so did its retry.
        retried = await asyncio.to_thread(store.completion_retried.wait, WAIT_S)
        assert retried, f"the completion was not retried ({store.refused_completions} tries)"
        # Persist, then notify: while the store refuses it, nobody sees the completion.
        assert list(await orch.session(sid).results()) == []
        page = await (await client.get(f"/v1/sessions/{sid}/results")).json()
        assert page == {"results": [], "next_after": 0, "has_more": False}
        listed = await (await client.get(f"/v1/sessions/{sid}/tasks/{task['id']}")).json()
        assert listed["status"] == "running"
        store.refuse_completions = False  # the fault clears: the next retry lands
        page = await (await client.get(f"/v1/sessions/{sid}/results?wait={WAIT_S}")).json()
        assert [(r["task_id"], r["status"], r["content"]) for r in page["results"]] == [
            (task["id"], "completed", "kept")
        ]
        events = await sse.until("task.completed")
        # A task that ends after it shows whether a duplicate of the first slipped out.
        after = await start_task(client, sid, "after")
        events += await sse.until("task.completed")
        stream.close()
        assert [(e["event"], e["id"]) for e in events] == [
            ("task.queued", "1"),
            ("task.started", "2"),
            ("task.completed", "3"),
            ("task.queued", "4"),
            ("task.started", "5"),
            ("task.completed", "6"),
        ]
        assert [data(e)["task_id"] for e in events if e["event"] == "task.completed"] == [
            task["id"],
            after["id"],
        ]
        embedded = await orch.session(sid).results()
        assert [(r.task_id, r.seq, r.content) for r in embedded] == [
            (task["id"], 3, "kept"),
            (after["id"], 6, "after"),
        ]
        page = await (await client.get(f"/v1/sessions/{sid}/results")).json()
        assert [(r["task_id"], r["seq"]) for r in page["results"]] == [
            (task["id"], 3),
            (after["id"], 6),
        ]
    async with Orchestrator(settings) as again:  # what the store kept: one of each
        kept = await again.session(sid).results()
    assert [(r.task_id, r.seq) for r in kept] == [(task["id"], 3), (after["id"], 6)]


async def test_a_store_fault_is_a_503_on_write_routes_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    async with _serving(_sqlite_settings(tmp_path)) as (orch, store, client):
        sid = await new_session(client)
        store.refuse_all = True
        refused = [
            await client.post(f"/v1/sessions/{sid}/tasks", json={"prompt": f"lost {i}"})
            for i in range(3)
        ]
        refused.append(await client.post(f"/v1/sessions/{sid}/messages", json={"content": "hi"}))
        refused.append(await client.post("/v1/sessions", json={}))
        for response in refused:
            body = await response.json()
            assert response.status == 503, body
            assert body["error"]["code"] == "store_unavailable"
            assert "injected fault" in body["error"]["message"]
        store.refuse_all = False
        # Nothing of the refused writes is left: no task, no message, no reservation.
        assert (await orch.stats())["tasks"] == {"running": 0, "queued": 0, "reserved": 0}
        tasks = await (await client.get(f"/v1/sessions/{sid}/tasks")).json()
        assert tasks == {"tasks": []}
        messages = await (await client.get(f"/v1/sessions/{sid}/messages")).json()
        assert messages == {"messages": []}
        # The fault cleared: the same routes work again (and no turn is stuck as running).
        task = await start_task(client, sid, "kept")
        done = await client.get(f"/v1/sessions/{sid}/tasks/{task['id']}?wait={WAIT_S}")
        assert (await done.json())["content"] == "kept"
        turn = await client.post(f"/v1/sessions/{sid}/messages", json={"content": "hi"})
        assert turn.status == 202, await turn.text()
        assert await new_session(client)
