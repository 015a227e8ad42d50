"""GET /metrics: Prometheus text from each orchestrator's own registry, bounded labels."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import prometheus_client
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from greenroom import Orchestrator
from greenroom.config import load_settings
from greenroom.http import create_app
from greenroom.http.server import serve
from greenroom.testing import FakeOpenAI
from greenroom.typing import History
from tests.http.conftest import (
    Client,
    ClientFactory,
    SSEReader,
    new_session,
    settings_for,
    start_task,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: Client, **headers: str) -> Samples:
    response = await client.get("/metrics", headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/plain")
    return parse(await response.text())


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def wait_until(check: Callable[[], Awaitable[bool]], timeout_s: float = 10) -> None:
    """Poll ``check`` until it holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


class Gate:
    """An agent that answers once the test opens the gate."""

    def __init__(self) -> None:
        self.open = asyncio.Event()

    async def __call__(self, history: History) -> str:
        await self.open.wait()
        return "through"


async def boom(history: History) -> str:
    raise RuntimeError("the agent broke")


async def test_tasks_are_counted_by_agent_and_status_and_their_latencies_observed(
    make_client: ClientFactory,
) -> None:
    gate = Gate()
    client = await make_client({"boom": boom, "gate": gate}, store={"kind": "sqlite"})
    sid = await new_session(client)
    ids = [
        (await start_task(client, sid, "fine"))["id"],
        (await start_task(client, sid, "x", agent="boom"))["id"],
        (await start_task(client, sid, "y", agent="gate"))["id"],
    ]
    cancelled = await client.post(f"/v1/sessions/{sid}/tasks/{ids[2]}/cancel")
    assert (await cancelled.json())["status"] == "cancelled"
    for tid in ids:
        task = await (await client.get(f"/v1/sessions/{sid}/tasks/{tid}?wait=10")).json()
        assert task["status"] in ("completed", "failed", "cancelled")

    samples = await scrape(client)
    for agent in ("echo", "boom", "gate"):
        assert value(samples, "greenroom_tasks_queued_total", agent=agent) == 1
    assert value(samples, "greenroom_tasks_ended_total", agent="echo", status="completed") == 1
    assert value(samples, "greenroom_tasks_ended_total", agent="boom", status="failed") == 1
    assert value(samples, "greenroom_tasks_ended_total", agent="gate", status="cancelled") == 1
    assert value(samples, "greenroom_completion_latency_seconds_count") == 3
    assert value(samples, "greenroom_completion_latency_seconds_sum") > 0
    duration = "greenroom_task_duration_seconds_count"
    assert value(samples, duration, agent="echo", status="completed") == 1
    # A session and three writes per task (queued, started, ended), on SQLite's writer.
    assert value(samples, "greenroom_store_write_seconds_count") >= 10
    assert value(samples, "greenroom_store_write_errors_total") == 0
    posts = "greenroom_http_request_duration_seconds_count"
    route = "/v1/sessions/{sid}/tasks"
    assert value(samples, posts, method="POST", route=route, code="202") == 3
    # Label values stay bounded: templates, never the ids of sessions or tasks.
    labels = {v for (_, pairs) in samples for _, v in pairs}
    assert not [v for v in labels if "ses_" in v or "tsk_" in v], labels


async def test_running_and_queued_tasks_and_live_and_passivated_sessions_are_read_when_scraped(
    make_client: ClientFactory,
) -> None:
    gate = Gate()
    client = await make_client(
        {"gate": gate}, limits={"max_running_tasks": 1, "session_idle_s": 0.2}
    )
    sid = await new_session(client, agent="gate")
    first, second = await start_task(client, sid), await start_task(client, sid)

    async def one_running_one_queued() -> bool:
        samples = await scrape(client)
        running = value(samples, "greenroom_tasks", state="running")
        return running == 1 and value(samples, "greenroom_tasks", state="queued") == 1

    await wait_until(one_running_one_queued)
    gate.open.set()
    for task in (first, second):
        await client.get(f"/v1/sessions/{sid}/tasks/{task['id']}?wait=10")
    others = [await new_session(client) for _ in range(2)]

    async def all_asleep() -> bool:
        samples = await scrape(client)
        return value(samples, "greenroom_sessions", state="live") == 0

    await wait_until(all_asleep)  # idle for session_idle_s: every session passivated
    samples = await scrape(client)
    assert value(samples, "greenroom_sessions", state="passivated") == 3
    assert value(samples, "greenroom_tasks", state="running") == 0
    assert value(samples, "greenroom_tasks", state="queued") == 0
    assert (await client.get(f"/v1/sessions/{others[0]}")).status == 200  # wakes it
    samples = await scrape(client)
    assert value(samples, "greenroom_sessions", state="live") == 1
    assert value(samples, "greenroom_sessions", state="passivated") == 2


async def test_sse_subscribers_are_counted_while_their_streams_are_open(
    client: Client,
) -> None:
    sid = await new_session(client)
    stream = await client.get(f"/v1/sessions/{sid}/events")
    reader = SSEReader(stream)
    first = await asyncio.wait_for(reader.frames().__anext__(), 10)
    assert first == {"comment": "connected"}
    assert value(await scrape(client), "greenroom_sse_subscribers") == 1
    stream.close()

    async def none_open() -> bool:
        return value(await scrape(client), "greenroom_sse_subscribers") == 0

    await wait_until(none_open)


async def test_agent_retries_are_counted_by_cause(tmp_path: Path) -> None:
    async with FakeOpenAI(retry_after_s=0) as fake:
        fake.script(["429", "503", "ok"])
        agent = {"kind": "openai", "base_url": fake.base_url, "max_retries": 3}
        settings = settings_for(tmp_path, agents={"gpt": agent})
        async with (
            Orchestrator(settings) as orch,
            TestClient(TestServer(create_app(orch), host="127.0.0.1")) as client,
        ):
            sid = await new_session(client, agent="gpt")
            task = await start_task(client, sid, "hello")
            url = f"/v1/sessions/{sid}/tasks/{task['id']}?wait=10"
            assert (await (await client.get(url)).json())["status"] == "completed"
            samples = await scrape(client)
    retries = "greenroom_agent_retries_total"
    assert value(samples, retries, agent="gpt", cause="http_429") == 1
    assert value(samples, retries, agent="gpt", cause="http_503") == 1


async def test_two_orchestrators_keep_their_own_metrics_and_never_the_global_registry(
    make_client: ClientFactory,
) -> None:
    a, b = await make_client(), await make_client()
    sid = await new_session(a)
    task = await start_task(a, sid)
    await a.get(f"/v1/sessions/{sid}/tasks/{task['id']}?wait=10")
    assert value(await scrape(a), "greenroom_tasks_ended_total", agent="echo", status="completed")
    assert not value(await scrape(b), "greenroom_tasks_queued_total", agent="echo")
    assert not [
        family.name
        for family in prometheus_client.REGISTRY.collect()
        if family.name.startswith("greenroom")
    ]


async def test_unmatched_paths_share_one_route_label(client: Client) -> None:
    assert (await client.get("/no/such/ses_0123456789")).status == 404
    samples = await scrape(client)
    count = "greenroom_http_request_duration_seconds_count"
    assert value(samples, count, method="GET", route="unmatched", code="404") == 1
    assert not [pairs for (_, pairs) in samples if ("route", "/no/such/ses_0123456789") in pairs]


async def test_metrics_can_be_turned_off(make_client: ClientFactory) -> None:
    client = await make_client(server={"metrics": False})
    response = await client.get("/metrics")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"
    sid = await new_session(client)
    task = await start_task(client, sid)
    done = await (await client.get(f"/v1/sessions/{sid}/tasks/{task['id']}?wait=10")).json()
    assert done["status"] == "completed"


async def test_metrics_need_the_token_when_one_is_configured(make_client: ClientFactory) -> None:
    client = await make_client(server={"token": "metrics-token"})
    assert (await client.get("/metrics")).status == 401
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    samples = await scrape(client, Authorization="Bearer metrics-token")
    assert ("greenroom_sse_subscribers", frozenset()) in samples


async def test_metrics_port_serves_metrics_without_the_token_on_loopback_only(
    tmp_path: Path,
) -> None:
    with socket.socket() as probe:  # a free port for metrics_port
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    settings = load_settings(
        overrides={
            "data_dir": str(tmp_path / "data"),
            "store": {"kind": "memory"},
            "server": {
                "host": "127.0.0.2",
                "port": 0,
                "token": "api-token",
                "metrics_port": metrics_port,
            },
        },
        env={},
    )
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings, ready=ready, stop=stop))
    try:
        port = await asyncio.wait_for(asyncio.shield(ready), 30)
        async with aiohttp.ClientSession() as http:
            api = await http.get(f"http://127.0.0.2:{port}/metrics")
            assert api.status == 401
            local = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert local.status == 200
            assert value(parse(await local.text()), "greenroom_tasks", state="running") == 0
            with pytest.raises(aiohttp.ClientConnectionError):  # not on the API's address
                await http.get(f"http://127.0.0.2:{metrics_port}/metrics")
    finally:
        stop.set()
        await asyncio.wait_for(server, 30)


async def test_embedded_metrics_render_without_http(tmp_path: Path) -> None:
    config: dict[str, Any] = {"data_dir": str(tmp_path / "d"), "store": {"kind": "memory"}}
    async with Orchestrator(config) as orch:
        session = await orch.create_session()
        done = await (await session.start_task("hi")).wait(timeout=10)
        assert done.status.value == "completed"
        body, content_type = await orch.metrics.exposition()
    assert content_type.startswith("text/plain")
    samples = parse(body.decode())
    assert value(samples, "greenroom_tasks_ended_total", agent="echo", status="completed") == 1
    assert orch.metrics.registry is not prometheus_client.REGISTRY
