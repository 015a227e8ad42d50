"""A real greenroom server on a loopback port for each test (pytest-aiohttp)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from greenroom import Orchestrator
from greenroom.config import load_settings
from greenroom.http import create_app

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[ClientFactory]:
    """Start an orchestrator + app with config overrides; returns a client bound to it."""
    started: list[tuple[Orchestrator, TestClient[Any, Any]]] = []

    async def factory(
        agents: dict[str, Any] | None = None, **overrides: Any
    ) -> TestClient[Any, Any]:
        config = {
            "data_dir": str(tmp_path / f"data{len(started)}"),
            "store": {"kind": "memory"},
            **overrides,
        }
        orch = Orchestrator(load_settings(overrides=config, env={}))
        for name, agent in (agents or {}).items():
            orch.register_agent(name, agent)
        await orch.start()
        client = TestClient(TestServer(create_app(orch), host="127.0.0.1"))
        await client.start_server()
        started.append((orch, client))
        return client

    yield factory
    for orch, client in started:
        await client.close()
        await orch.stop()


@pytest.fixture
async def client(make_client: ClientFactory) -> TestClient[Any, Any]:
    return await make_client()


async def new_session(client: TestClient[Any, Any], **body: Any) -> str:
    response = await client.post("/v1/sessions", json=body)
    assert response.status == 201, await response.text()
    sid: str = (await response.json())["id"]
    return sid
