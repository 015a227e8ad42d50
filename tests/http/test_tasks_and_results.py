"""Tasks and results over HTTP: long-polls, pollers, cancel, idempotency, bounds."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.actors.agents import Gate, forever
from tests.http.agents import Drip
from tests.http.conftest import (
    Client,
    ClientFactory,
    SSEReader,
    data,
    new_session,
    start_task,
)


async def test_a_task_runs_from_start_to_acknowledged_result(client: Client) -> None:
    sid = await new_session(client, metadata={"user": "ada"})
    started = await client.post(f"/v1/sessions/{sid}/tasks", json={"prompt": "hello"})
    assert started.status == 202
    task = await started.json()
    assert {"id", "session_id", "kind", "agent", "status", "created_at"} <= set(task)
    assert (task["session_id"], task["kind"], task["agent"]) == (sid, "background", "echo")
    done = await (await client.get(f"/v1/sessions/{sid}/tasks/{task['id']}?wait=10")).json()
    assert done["status"] == "completed" and done["content"] == "hello"
    assert {"content", "error", "finished_at", "seq"} <= set(done)
    page = await (await client.get(f"/v1/sessions/{sid}/results?after=0")).json()
    assert [r["task_id"] for r in page["results"]] == [task["id"]]
    assert {"seq", "task_id", "status", "content", "error", "finished_at"} <= set(
        page["results"][0]
    )
    assert page["next_after"] == done["seq"]
    ack = await client.post(f"/v1/sessions/{sid}/results/ack", json={"up_to": done["seq"]})
    assert (ack.status, await ack.json()) == (200, {"acked_up_to": done["seq"]})
    again = await (await client.get(f"/v1/sessions/{sid}/results")).json()
    assert again["results"] == page["results"]  # acknowledging never deletes
    info = await (await client.get(f"/v1/sessions/{sid}")).json()
    assert info["task_counts"] == {"completed": 1}


async def test_a_side_question_takes_kind_and_an_integer_timeout(client: Client) -> None:
    sid = await new_session(client)
    task = await start_task(client, sid, "why?", kind="side", timeout_s=5, agent=None)
    assert (task["kind"], task["timeout_s"], task["agent"]) == ("side", 5.0, "echo")
    done = await (await client.get(f"/v1/sessions/{sid}/tasks/{task['id']}?wait=10")).json()
    assert done["status"] == "completed"


async def test_next_after_is_the_last_seq_returned_or_after_when_none(client: Client) -> None:
    sid = await new_session(client)
    tasks = [await start_task(client, sid, f"p{i}") for i in range(3)]
    for task in tasks:
        await client.get(f"/v1/sessions/{sid}/tasks/{task['id']}?wait=10")
    first = await (await client.get(f"/v1/sessions/{sid}/results?limit=2")).json()
    assert len(first["results"]) == 2 and first["has_more"] is True  # never silently short
    assert first["next_after"] == first["results"][-1]["seq"]
    rest = await (
        await client.get(f"/v1/sessions/{sid}/results?after={first['next_after']}")
    ).json()
    assert [r["task_id"] for r in first["results"] + rest["results"]] == [t["id"] for t in tasks]
    assert rest["has_more"] is False
    empty = await (
        await client.get(f"/v1/sessions/{sid}/results?after={rest['next_after']}")
    ).json()
    assert empty == {"results": [], "next_after": rest["next_after"], "has_more": False}


async def test_two_independent_pollers_each_get_every_result(client: Client) -> None:
    sid = await new_session(client)
    ids = [(await start_task(client, sid, f"p{i}"))["id"] for i in range(5)]

    async def poll_all() -> list[str]:
        seen: list[str] = []
        after = 0
        while len(seen) < 5:
            url = f"/v1/sessions/{sid}/results?after={after}&wait=5"
            page = await (await client.get(url)).json()
            seen += [r["task_id"] for r in page["results"]]
            after = page["next_after"]
        return seen

    first, second = await asyncio.wait_for(asyncio.gather(poll_all(), poll_all()), 20)
    assert sorted(first) == sorted(second) == sorted(ids)


async def test_a_long_poll_returns_as_soon_as_the_result_lands(make_client: ClientFactory) -> None:
    gate = Gate()
    client = await make_client(agents={"gate": gate})
    sid = await new_session(client)
    task = await start_task(client, sid, agent="gate")
    results = asyncio.create_task(client.get(f"/v1/sessions/{sid}/results?wait=50"))
    one = asyncio.create_task(client.get(f"/v1/sessions/{sid}/tasks/{task['id']}?wait=50"))
    await asyncio.wait_for(gate.entered.wait(), 10)
    assert not results.done() and not one.done()
    opened = time.monotonic()
    gate.opened.set()
    page = await (await asyncio.wait_for(results, 10)).json()
    finished = await (await asyncio.wait_for(one, 10)).json()
    assert time.monotonic() - opened < 10  # far sooner than the 50 s wait
    assert [r["content"] for r in page["results"]] == ["gate:x"]
    assert finished["status"] == "completed"


async def test_a_wait_past_max_wait_s_is_a_400_naming_the_bound(
    make_client: ClientFactory,
) -> None:
    client = await make_client(agents={"forever": forever}, server={"max_wait_s": 0.2})
    sid = await new_session(client)
    task = await start_task(client, sid, agent="forever")
    for url in (
        f"/v1/sessions/{sid}/tasks/{task['id']}?wait=3600",
        f"/v1/sessions/{sid}/results?wait=3600",
    ):
        response = await client.get(url)
        assert response.status == 400
        assert "wait: must be <= 0.2" in (await response.json())["error"]["message"]
    running = await client.get(f"/v1/sessions/{sid}/tasks/{task['id']}?wait=0.2")
    assert (await running.json())["status"] == "running"
    page = await client.get(f"/v1/sessions/{sid}/results?wait=0.2")
    assert await page.json() == {"results": [], "next_after": 0, "has_more": False}


async def test_cancel_lands_while_a_foreground_turn_is_streaming(
    make_client: ClientFactory,
) -> None:
    drip = Drip()
    client = await make_client(agents={"drip": drip, "forever": forever})
    sid = await new_session(client, agent="drip")
    stream = await client.get(f"/v1/sessions/{sid}/events")
    turn = await client.post(f"/v1/sessions/{sid}/messages", json={"content": "talk"})
    assert turn.status == 202
    turn_id = (await turn.json())["turn_id"]
    await asyncio.wait_for(drip.streaming.wait(), 10)  # the turn is mid-stream
    task = await start_task(client, sid, agent="forever")
    url = f"/v1/sessions/{sid}/tasks/{task['id']}/cancel"
    first = await client.post(url)
    second = await client.post(url)  # idempotent
    assert first.status == second.status == 200
    assert (await first.json())["status"] == (await second.json())["status"] == "cancelled"
    assert (await second.json())["id"] == task["id"]
    drip.release.set()  # the turn is unaffected by the cancel: its answer arrives whole
    events = await SSEReader(stream).until("message.completed")
    stream.close()
    finished = data(events[-1])
    assert (finished["turn_id"], finished["status"]) == (turn_id, "completed")
    assert finished["message"]["content"] == "first last"
    deltas = [data(e)["content"] for e in events if e["event"] == "message.delta"]
    assert deltas == ["first ", "last"]
    transcript = await (await client.get(f"/v1/sessions/{sid}/messages")).json()
    assert [(m["role"], m["content"]) for m in transcript["messages"]] == [
        ("user", "talk"),
        ("assistant", "first last"),
    ]
    page = await (await client.get(f"/v1/sessions/{sid}/results")).json()
    assert [r["status"] for r in page["results"]] == ["cancelled"]
    info = await (await client.get(f"/v1/sessions/{sid}")).json()
    assert info["task_counts"] == {"cancelled": 1}


async def test_the_same_idempotency_key_returns_the_same_task(client: Client) -> None:
    sid = await new_session(client)
    headers = {"Idempotency-Key": "retry-me"}
    url = f"/v1/sessions/{sid}/tasks"
    first = await client.post(url, json={"prompt": "x"}, headers=headers)
    again = await client.post(url, json={"prompt": "x"}, headers=headers)
    other = await client.post(url, json={"prompt": "x"}, headers={"Idempotency-Key": "new"})
    assert first.status == 202 and again.status in (200, 202)
    assert (await first.json())["id"] == (await again.json())["id"]
    assert (await other.json())["id"] != (await first.json())["id"]
    assert len((await (await client.get(url)).json())["tasks"]) == 2


async def test_a_full_queue_is_429_with_retry_after(make_client: ClientFactory) -> None:
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
    listing = await (await client.get(f"/v1/sessions/{sid}/tasks")).json()
    assert sorted(t["status"] for t in listing["tasks"]) == ["queued", "running"]
    gate.opened.set()


async def test_two_hundred_clients_long_polling_each_get_their_result(
    client: Client,
) -> None:
    sessions = [await new_session(client) for _ in range(200)]
    # Each poller is its own client with its own connection, as 200 browsers would be.
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(sid: str) -> str:
            url = client.make_url(f"/v1/sessions/{sid}/results?wait=30")
            poll = asyncio.create_task(http.get(url))
            await start_task(client, sid, sid)
            page = await (await poll).json()
            return str(page["results"][0]["content"])

        got = await asyncio.wait_for(asyncio.gather(*(one(s) for s in sessions)), 60)
    assert got == sessions
