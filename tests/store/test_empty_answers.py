"""An empty answer is an answer: ``content == ""`` (never None) on every surface, on
SQLite, and still after a restart."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from greenroom import Orchestrator, TaskStatus
from greenroom.http import create_app
from tests.actors.agents import empty
from tests.http.conftest import SSEReader, data, new_session, settings_for, start_task

WAIT_S = 10


async def test_an_empty_answer_is_empty_content_everywhere_and_after_a_restart(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, store={"kind": "sqlite"})
    async with Orchestrator(settings) as orch:
        orch.register_agent("empty", empty)
        client = TestClient(TestServer(create_app(orch), host="127.0.0.1"))
        async with client:
            sid = await new_session(client, agent="empty")
            stream = await client.get(f"/v1/sessions/{sid}/events")
            task = await start_task(client, sid, "say nothing")
            events = await SSEReader(stream).until("task.completed")
            stream.close()
            completed = data(events[-1])
            assert (completed["task_id"], completed["status"]) == (task["id"], "completed")
            assert completed["content"] == ""
            assert completed["error"] is None
            session = orch.session(sid)
            done = await (await session.task(task["id"])).wait(timeout=WAIT_S)
            assert (done.status, done.content, done.error) == (TaskStatus.COMPLETED, "", None)
            assert [(r.status, r.content) for r in await session.results()] == [
                (TaskStatus.COMPLETED, "")
            ]
            page = await (await client.get(f"/v1/sessions/{sid}/results")).json()
            assert [(r["status"], r["content"]) for r in page["results"]] == [("completed", "")]
            one = await (await client.get(f"/v1/sessions/{sid}/tasks/{task['id']}")).json()
            assert (one["status"], one["content"]) == ("completed", "")
    async with Orchestrator(settings) as again:  # a new process on the same data dir
        again.register_agent("empty", empty)
        client = TestClient(TestServer(create_app(again), host="127.0.0.1"))
        async with client:
            session = again.session(sid)
            done = await (await session.task(task["id"])).wait(timeout=WAIT_S)
            assert (done.status, done.content) == (TaskStatus.COMPLETED, "")
            assert [r.content for r in await session.results()] == [""]
            page = await (await client.get(f"/v1/sessions/{sid}/results")).json()
            assert [r["content"] for r in page["results"]] == [""]
            one = await (await client.get(f"/v1/sessions/{sid}/tasks/{task['id']}")).json()
            assert one["content"] == ""
            replay = await client.get(f"/v1/sessions/{sid}/events", headers={"Last-Event-ID": "0"})
            replayed = await SSEReader(replay).until("task.completed")
            replay.close()
            assert data(replayed[-1])["content"] == ""
