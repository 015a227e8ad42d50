"""`serve()` in this process: the bind check, and an orderly, bounded shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiohttp
import pytest

from greenroom import Orchestrator
from greenroom.config import load_settings
from greenroom.errors import ConfigError
from greenroom.http.server import check_bind, serve
from greenroom.settings import Settings
from tests.http.conftest import SSEReader


def _settings(tmp_path: Path, **server: object) -> Settings:
    return load_settings(
        overrides={
            "data_dir": str(tmp_path / "data"),
            "server": {"port": 0, "shutdown_grace_s": 0.5, **server},
            "agents": {"forever": {"kind": "python", "target": "tests.actors.agents:forever"}},
        },
        env={},
    )


async def test_serve_refuses_a_non_loopback_host_without_a_token_before_binding(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match="without a token"):
        await serve(_settings(tmp_path), host="0.0.0.0")
    assert not (tmp_path / "data").exists()  # refused before opening anything
    with pytest.raises(ConfigError, match="GREENROOM_TOKEN"):
        check_bind("192.168.1.10", None)
    with pytest.raises(ConfigError):
        check_bind("example.com", "")
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        check_bind(host, None)
    check_bind("0.0.0.0", "a-token")


async def test_serve_ends_streams_then_interrupts_running_tasks_within_bounds(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings, ready=ready, stop=stop))
    try:
        port = await asyncio.wait_for(asyncio.shield(ready), 30)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            sid = (await (await http.post(f"{base}/v1/sessions", json={})).json())["id"]
            body = {"prompt": "x", "agent": "forever"}
            task = await (await http.post(f"{base}/v1/sessions/{sid}/tasks", json=body)).json()
            stream = await http.get(f"{base}/v1/sessions/{sid}/events")
            reader = asyncio.create_task(SSEReader(stream).until("shutdown", timeout_s=30))
            stopping = time.monotonic()
            stop.set()
            events = await reader
            await asyncio.wait_for(asyncio.shield(server), 30)
        assert events[-1]["event"] == "shutdown"
        assert time.monotonic() - stopping < 15  # grace 0.5 s plus bounded clean-up
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(server, 30)
    async with Orchestrator(settings) as orch:  # the record survived the shutdown
        recorded = await orch.session(sid).get_task(task["id"])
    assert recorded.status == "interrupted"
    assert recorded.error is not None and "shutdown" in recorded.error.message
