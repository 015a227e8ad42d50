"""A real greenroom server on a loopback port for each test (pytest-aiohttp)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from greenroom import Orchestrator
from greenroom.config import load_settings
from greenroom.http import create_app
from greenroom.settings import Settings

Client = TestClient[Any, Any]
ClientFactory = Callable[..., Awaitable[Client]]


def settings_for(tmp_path: Path, name: str = "data", **overrides: Any) -> Settings:
    """Memory-store settings in a private data dir, with TOML-shaped overrides."""
    config = {"data_dir": str(tmp_path / name), "store": {"kind": "memory"}, **overrides}
    return load_settings(overrides=config, env={})


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[ClientFactory]:
    """Start an orchestrator + app with config overrides; returns a client bound to it.

    Every orchestrator is entered with ``async with`` on one exit stack, so teardown
    closes each client and then stops each orchestrator, even after a failure.
    """
    async with contextlib.AsyncExitStack() as stack:
        count = 0

        async def factory(agents: dict[str, Any] | None = None, **overrides: Any) -> Client:
            nonlocal count
            count += 1
            orch = Orchestrator(settings_for(tmp_path, f"data{count}", **overrides))
            for name, agent in (agents or {}).items():
                orch.register_agent(name, agent)
            await stack.enter_async_context(orch)
            client = TestClient(TestServer(create_app(orch), host="127.0.0.1"))
            await stack.enter_async_context(client)
            return client

        yield factory


@pytest.fixture
async def client(make_client: ClientFactory) -> Client:
    return await make_client()


def app_of(client: Client) -> web.Application:
    """The application a test client serves."""
    app: web.Application | None = client.app
    assert app is not None
    return app


async def new_session(client: Client, **body: Any) -> str:
    """Create a session and return its id."""
    response = await client.post("/v1/sessions", json=body)
    assert response.status == 201, await response.text()
    sid: str = (await response.json())["id"]
    return sid


async def start_task(client: Client, sid: str, prompt: str = "x", **body: Any) -> dict[str, Any]:
    """Start a task and return its JSON."""
    response = await client.post(f"/v1/sessions/{sid}/tasks", json={"prompt": prompt, **body})
    assert response.status == 202, await response.text()
    task: dict[str, Any] = await response.json()
    return task


class SSEReader:
    """Parses an SSE response into frames: ``{"event", "id", "data"}`` or ``{"comment"}``."""

    def __init__(self, response: ClientResponse) -> None:
        self.response = response

    async def frames(self) -> AsyncIterator[dict[str, str]]:
        current: dict[str, str] = {}
        async for raw in self.response.content:
            line = raw.decode().rstrip("\n")
            if not line:
                if current:
                    yield current
                current = {}
            elif line.startswith(":"):
                current["comment"] = line[1:].strip()
            else:
                key, _, value = line.partition(": ")
                current[key] = value
        if current:
            yield current

    async def until(self, event: str, timeout_s: float = 10) -> list[dict[str, str]]:
        """Every event frame (comments left out) up to and including ``event``."""

        async def read() -> list[dict[str, str]]:
            seen: list[dict[str, str]] = []
            async for frame in self.frames():
                if "event" in frame:
                    seen.append(frame)
                    if frame["event"] == event:
                        return seen
            raise AssertionError(f"the stream ended before {event!r}: {seen}")

        return await asyncio.wait_for(read(), timeout_s)

    async def until_id(self, last_id: int, timeout_s: float = 10) -> list[dict[str, str]]:
        """Every event frame up to and including the one with ``id: last_id``."""

        async def read() -> list[dict[str, str]]:
            seen: list[dict[str, str]] = []
            async for frame in self.frames():
                if "event" in frame:
                    seen.append(frame)
                    if frame.get("id") == str(last_id):
                        return seen
            raise AssertionError(f"the stream ended before id {last_id}: {seen}")

        return await asyncio.wait_for(read(), timeout_s)


def data(frame: dict[str, str]) -> dict[str, Any]:
    """The decoded ``data:`` of an SSE frame."""
    decoded: dict[str, Any] = json.loads(frame["data"])
    return decoded
