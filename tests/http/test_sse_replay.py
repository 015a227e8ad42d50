"""Resuming an event stream replays every event after Last-Event-ID, however far behind."""

from __future__ import annotations

from tests.http.conftest import ClientFactory, SSEReader, data, new_session, start_task


async def test_a_client_far_behind_gets_every_event_in_order_then_live_ones(
    make_client: ClientFactory,
) -> None:
    # Only 5 events are kept in memory; the store holds all 60 (20 tasks x 3 events).
    client = await make_client(limits={"replay_events": 5})
    sid = await new_session(client)
    for i in range(20):
        task = await start_task(client, sid, f"job {i}")
        await client.get(f"/v1/sessions/{sid}/tasks/{task['id']}?wait=10")
    url = f"/v1/sessions/{sid}/events"
    async with client.get(url, headers={"Last-Event-ID": "0"}) as response:
        assert response.status == 200
        frames = await SSEReader(response).until_id(60)
        assert [int(f["id"]) for f in frames] == list(range(1, 61))  # no hole
        assert not any(f["event"] == "stream.gap" for f in frames)
        live = await start_task(client, sid, "after the replay")
        more = await SSEReader(response).until("task.completed")
    assert [int(f["id"]) for f in more] == [61, 62, 63]
    assert data(more[-1])["task_id"] == live["id"]


async def test_a_resume_point_past_the_last_event_is_a_409(make_client: ClientFactory) -> None:
    client = await make_client()
    sid = await new_session(client)
    await start_task(client, sid)
    response = await client.get(f"/v1/sessions/{sid}/events", headers={"Last-Event-ID": "999"})
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "resume_beyond_last_seq"
