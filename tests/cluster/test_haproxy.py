"""deploy/haproxy.cfg, the file that ships: valid, and routing as documented.

Behind it here are three small aiohttp servers that answer with their node name, so the
routing itself is what is tested: a session's requests stick to one node by a consistent
hash of the session id in the path, everything else round-robins, a dead node's sessions
move and come back while every other session stays put, and a stream is not buffered.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.cluster.haproxy import CONFIG, FRONT, NODES, STATS, HAProxy, check, render
from tests.cluster.procs import free_port, poll_until

SIDS = [f"ses_{n:04x}{'ab' * n}"[:24] for n in range(40)]


def test_the_shipped_config_is_valid(haproxy_bin: str, tmp_path: Path) -> None:
    checked = check(CONFIG)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rendered = tmp_path / "rendered.cfg"
    rendered.write_text(render(9000, {"n1": 9001, "n2": 9002, "n3": 9003}, 9004))
    checked = check(rendered)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_render_moves_every_address_and_refuses_a_file_missing_one() -> None:
    text = render(9000, {"n1": 9001, "n2": 9002, "n3": 9003}, 9004)
    assert not re.search(r"127\.0\.0\.1:880\d", text)
    assert "bind 127.0.0.1:9000" in text and "bind 127.0.0.1:9004" in text
    assert text.count("server n2 127.0.0.1:9002") == 2  # the hashed and round-robin backends
    with pytest.raises(ValueError, match=re.escape("no 127.0.0.1:8803")):
        render(9000, {"n1": 9001, "n2": 9002, "n3": 9003}, 9004, CONFIG.read_text().replace(
            "127.0.0.1:8803", "127.0.0.1:8809"
        ))  # fmt: skip
    with pytest.raises(ValueError, match="node_ports"):
        render(9000, {"n1": 9001}, 9004)


def test_timeouts_outlast_long_polls_and_quiet_streams() -> None:
    text = CONFIG.read_text()
    seconds = {"s": 1, "m": 60, "h": 3600}

    def timeout_s(name: str) -> int:
        found = re.search(rf"^\s*timeout {name}\s+(\d+)([smh])\s*$", text, re.MULTILINE)
        assert found, f"no timeout {name}"
        return int(found.group(1)) * seconds[found.group(2)]

    # server.max_wait_s is 60 s by default: a long-poll must not be cut before it ends.
    for name in ("client", "server", "tunnel"):
        assert timeout_s(name) > 60, name
    assert "hash-type consistent" in text
    assert FRONT in text and STATS in text and all(a in text for a in NODES.values())


class Stub:
    """A stand-in node: answers every request with its name; /healthz for the checks;
    an event stream whose second frame waits for the test."""

    def __init__(self, name: str, port: int) -> None:
        self.name, self.port = name, port
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None

    async def answer(self, request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/events"):
            return await self.stream(request)
        return web.json_response({"node": self.name, "path": request.path})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"id: 1\nevent: first\ndata: {}\n\n")
        await asyncio.wait_for(self.release.wait(), 10)
        await response.write(b"id: 2\nevent: second\ndata: {}\n\n")
        return response

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.answer)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def proxied(
    haproxy_bin: str, tmp_path: Path
) -> AsyncIterator[tuple[HAProxy, dict[str, Stub]]]:
    stubs = {name: Stub(name, free_port()) for name in NODES}
    for stub in stubs.values():
        await stub.start()
    proxy = HAProxy(tmp_path, free_port(), {name: stub.port for name, stub in stubs.items()})
    proxy.start()
    try:
        await proxy.wait_ready()
        await until_servers(proxy, {"n1": "UP", "n2": "UP", "n3": "UP"})
        yield proxy, stubs
    finally:
        proxy.stop()
        for stub in stubs.values():
            stub.release.set()
            await stub.stop()


async def until_servers(proxy: HAProxy, expected: dict[str, str]) -> None:
    async def seen() -> bool:
        return await proxy.servers() == expected

    await poll_until(seen, 15, f"haproxy to see {expected}")


async def node_of(http: aiohttp.ClientSession, proxy: HAProxy, method: str, path: str) -> str:
    async with http.request(method, proxy.base + path) as response:
        assert response.status == 200, await response.text()
        node: str = (await response.json())["node"]
        return node


async def placement(http: aiohttp.ClientSession, proxy: HAProxy) -> dict[str, str]:
    return {sid: await node_of(http, proxy, "GET", f"/v1/sessions/{sid}/tasks") for sid in SIDS}


async def test_a_session_sticks_to_one_node_and_everything_else_round_robins(
    proxied: tuple[HAProxy, dict[str, Stub]],
) -> None:
    proxy, _ = proxied
    async with aiohttp.ClientSession() as http:
        where = await placement(http, proxy)
        assert set(where.values()) == set(NODES), Counter(where.values())
        for sid in SIDS[:10]:  # every route of a session: the same node
            for method, path in [
                ("GET", f"/v1/sessions/{sid}"),
                ("POST", f"/v1/sessions/{sid}/tasks"),
                ("GET", f"/v1/sessions/{sid}/tasks/tsk_1?wait=1"),
                ("POST", f"/v1/sessions/{sid}/tasks/tsk_1/cancel"),
                ("GET", f"/v1/sessions/{sid}/results?after=3&wait=2"),
                ("POST", f"/v1/sessions/{sid}/results/ack"),
                ("GET", f"/v1/sessions/{sid}/messages"),
            ]:
                assert await node_of(http, proxy, method, path) == where[sid], (method, path)
        for method, path in [("POST", "/v1/sessions"), ("GET", "/v1/sessions?limit=5")]:
            turns = [await node_of(http, proxy, method, path) for _ in range(6)]
            assert Counter(turns) == {"n1": 2, "n2": 2, "n3": 2}, (path, turns)


async def test_a_dead_nodes_sessions_move_and_come_back_and_no_other_session_moves(
    proxied: tuple[HAProxy, dict[str, Stub]],
) -> None:
    proxy, stubs = proxied
    async with aiohttp.ClientSession() as http:
        before = await placement(http, proxy)
        await stubs["n2"].stop()
        # At once, before the checks notice: a refused connection is retried elsewhere.
        during = await placement(http, proxy)
        await until_servers(proxy, {"n1": "UP", "n2": "DOWN", "n3": "UP"})
        down = await placement(http, proxy)
        for now in (during, down):
            assert "n2" not in now.values()
            assert {s: n for s, n in now.items() if before[s] != "n2"} == {
                s: n for s, n in before.items() if n != "n2"
            }
        await stubs["n2"].start()
        await until_servers(proxy, {"n1": "UP", "n2": "UP", "n3": "UP"})
        assert await placement(http, proxy) == before


async def test_a_stream_reaches_the_client_unbuffered(
    proxied: tuple[HAProxy, dict[str, Stub]],
) -> None:
    proxy, stubs = proxied
    async with aiohttp.ClientSession() as http:
        url = f"{proxy.base}/v1/sessions/{SIDS[0]}/events"
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=20)) as response:
            assert response.status == 200
            first = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5)
            assert b"event: first" in first  # while the node still holds the stream open
            for stub in stubs.values():
                stub.release.set()
            rest = await asyncio.wait_for(response.content.read(), 5)
            assert b"event: second" in rest
