"""Server-Sent Events: live pushes, replay with Last-Event-ID, heartbeats, reset, shutdown."""

from __future__ import annotations

import asyncio

from greenroom.http.keys import ORCHESTRATOR
from tests.http.agents import Drip, flood
from tests.http.conftest import (
    Client,
    ClientFactory,
    SSEReader,
    app_of,
    data,
    new_session,
    start_task,
)


async def test_sse_delivers_task_completed_without_polling(client: Client) -> None:
    sid = await new_session(client)
    stream = await client.get(f"/v1/sessions/{sid}/events")
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    assert stream.headers["X-Request-ID"]
    task = await start_task(client, sid, "pushed")
    events = await SSEReader(stream).until("task.completed")
    stream.close()
    assert [e["event"] for e in events] == ["task.queued", "task.started", "task.completed"]
    assert [e["id"] for e in events] == ["1", "2", "3"]
    completed = data(events[-1])
    assert (completed["task_id"], completed["content"]) == (task["id"], "pushed")
    assert completed["seq"] == 3


async def test_a_completion_nobody_heard_arrives_on_the_next_poll_and_on_sse_resume(
    client: Client,
) -> None:
    sid = await new_session(client)
    first = await start_task(client, sid, "heard")
    await client.get(f"/v1/sessions/{sid}/tasks/{first['id']}?wait=10")
    quiet = await start_task(client, sid, "quiet")  # nobody is listening now
    await client.get(f"/v1/sessions/{sid}/tasks/{quiet['id']}?wait=10")
    page = await (await client.get(f"/v1/sessions/{sid}/results?after=3")).json()
    assert [r["task_id"] for r in page["results"]] == [quiet["id"]]
    for resume in ({"headers": {"Last-Event-ID": "3"}}, {"params": {"after": "3"}}):
        stream = await client.get(f"/v1/sessions/{sid}/events", **resume)  # type: ignore[arg-type]
        replay = await SSEReader(stream).until("task.completed")
        stream.close()
        assert [e["id"] for e in replay] == ["4", "5", "6"]
        assert data(replay[-1])["task_id"] == quiet["id"]


async def test_message_deltas_stream_without_ids_and_the_completion_has_one(
    make_client: ClientFactory,
) -> None:
    drip = Drip()
    client = await make_client(agents={"drip": drip})
    sid = await new_session(client, agent="drip")
    stream = await client.get(f"/v1/sessions/{sid}/events")
    turn = await (await client.post(f"/v1/sessions/{sid}/messages", json={"content": "hi"})).json()
    assert turn["session_id"] == sid and turn["turn_id"]
    await asyncio.wait_for(drip.streaming.wait(), 10)
    drip.release.set()
    events = await SSEReader(stream).until("message.completed")
    stream.close()
    deltas = [e for e in events if e["event"] == "message.delta"]
    assert [data(e)["content"] for e in deltas] == ["first ", "last"]
    assert all("id" not in e for e in deltas)
    assert events[-1]["id"] == "1"
    assert data(events[-1])["message"]["content"] == "first last"
    transcript = await (await client.get(f"/v1/sessions/{sid}/messages")).json()
    assert [m["role"] for m in transcript["messages"]] == ["user", "assistant"]


async def test_an_idle_stream_gets_heartbeat_comments_and_stays_open(
    make_client: ClientFactory,
) -> None:
    client = await make_client(server={"heartbeat_s": 0.05})
    sid = await new_session(client)
    stream = await client.get(f"/v1/sessions/{sid}/events")
    frames = SSEReader(stream).frames()

    async def next_frame() -> dict[str, str]:
        try:
            return await asyncio.wait_for(anext(frames), 10)
        except StopAsyncIteration:
            raise AssertionError("the server closed the stream") from None

    assert await next_frame() == {"comment": "connected"}
    for _ in range(3):  # nothing happens: heartbeats only, and the stream stays open
        assert await next_frame() == {"comment": "ping"}
    task = await start_task(client, sid, "still open")
    seen: list[dict[str, str]] = []
    while not seen or seen[-1]["event"] != "task.completed":
        frame = await next_frame()
        if "event" in frame:
            seen.append(frame)
    await frames.aclose()
    stream.close()
    assert [e["event"] for e in seen] == ["task.queued", "task.started", "task.completed"]
    assert (data(seen[-1])["task_id"], data(seen[-1])["content"]) == (task["id"], "still open")


async def test_a_subscriber_too_slow_for_its_buffer_is_reset_and_can_resume(
    make_client: ClientFactory,
) -> None:
    client = await make_client(agents={"flood": flood}, server={"sse_queue_size": 4})
    sid = await new_session(client, agent="flood")
    stream = await client.get(f"/v1/sessions/{sid}/events")  # and do not read it yet
    session = app_of(client)[ORCHESTRATOR].session(sid)
    async with await session.subscribe(maxsize=100_000) as watcher:
        await client.post(f"/v1/sessions/{sid}/messages", json={"content": "go"})
        while (await asyncio.wait_for(watcher.get(), 30)).type != "message.completed":
            pass
    events = await SSEReader(stream).until("reset", timeout_s=30)
    stream.close()
    assert events[-1]["event"] == "reset"
    # It reconnects after the (huge) message it missed and goes on live.
    resumed = await client.get(f"/v1/sessions/{sid}/events", headers={"Last-Event-ID": "1"})
    await start_task(client, sid, "small", agent="echo")
    replay = await SSEReader(resumed).until("task.completed")
    resumed.close()
    assert [e["id"] for e in replay] == ["2", "3", "4"]


async def test_a_server_shutting_down_ends_streams_with_a_shutdown_event(
    make_client: ClientFactory,
) -> None:
    client = await make_client()
    sid = await new_session(client)
    stream = await client.get(f"/v1/sessions/{sid}/events")
    reader = asyncio.create_task(SSEReader(stream).until("shutdown"))
    await app_of(client).shutdown()  # what the runner does on SIGTERM
    events = await reader
    assert [e["event"] for e in events] == ["shutdown"]
    refused = await client.post("/v1/sessions", json={})
    assert refused.status == 503
    assert (await refused.json())["error"]["code"] == "shutting_down"
    assert (await client.get("/readyz")).status == 503
