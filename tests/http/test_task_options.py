"""Task options over HTTP: Idempotency-Key reuse, max_attempts, the effective timeout."""

from __future__ import annotations

from tests.http.conftest import Client, new_session, start_task


async def test_an_idempotency_key_reused_with_another_body_is_a_422(client: Client) -> None:
    sid = await new_session(client)
    url = f"/v1/sessions/{sid}/tasks"
    headers = {"Idempotency-Key": "report-42"}
    first = await client.post(url, json={"prompt": "weekly report"}, headers=headers)
    same = await client.post(url, json={"prompt": "weekly report"}, headers=headers)
    other = await client.post(url, json={"prompt": "monthly report"}, headers=headers)
    assert (first.status, same.status, other.status) == (202, 202, 422)
    assert (await same.json())["id"] == (await first.json())["id"]
    error = (await other.json())["error"]
    assert error["code"] == "idempotency_key_reused" and "report-42" in error["message"]
    tasks = (await (await client.get(url)).json())["tasks"]
    assert len(tasks) == 1  # nothing was started for the refused request


async def test_a_task_shows_its_effective_timeout_and_attempts(client: Client) -> None:
    sid = await new_session(client)
    plain = await start_task(client, sid)
    assert plain["timeout_s"] == 600.0  # limits.task_timeout_s, not null
    assert (plain["attempt"], plain["max_attempts"]) == (0, 1)
    retried = await start_task(client, sid, timeout_s=5, max_attempts=3)
    assert (retried["timeout_s"], retried["max_attempts"]) == (5, 3)
    done = await (await client.get(f"/v1/sessions/{sid}/tasks/{retried['id']}?wait=10")).json()
    assert (done["status"], done["attempt"]) == ("completed", 1)


async def test_max_attempts_out_of_range_is_a_400_naming_it(client: Client) -> None:
    sid = await new_session(client)
    for bad in (0, 11, "two"):
        response = await client.post(
            f"/v1/sessions/{sid}/tasks", json={"prompt": "x", "max_attempts": bad}
        )
        assert response.status == 400, bad
        assert "max_attempts" in (await response.json())["error"]["message"]
