"""A fake OpenAI-compatible server: a real aiohttp server on 127.0.0.1, scripted.

Each request takes the next behaviour from the script; when the script is empty it
echoes the last user message in chunks. Behaviours:

``"ok"`` echo · ``"empty"`` a well-terminated empty answer · ``"429"`` / ``"500"`` /
``"503"`` that status (with ``Retry-After`` when ``retry_after_s`` is set) ·
``"error400"`` a JSON 400 error · ``"truncate"`` half the answer, no ``[DONE]`` ·
``"malformed"`` a chunk that is not JSON · ``"drop"`` closes the connection mid-stream.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Recorded:
    """One request the fake received."""

    headers: dict[str, str]
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


class FakeOpenAI:
    """Usage: ``async with FakeOpenAI() as fake: agent base_url = fake.base_url``.

    Args:
        chunk_chars: characters per streamed chunk.
        chunk_delay_s: pause between chunks.
        retry_after_s: ``Retry-After`` sent with 429/503 (None: no header).
        reply: fixed answer text instead of echoing.
    """

    def __init__(
        self,
        *,
        chunk_chars: int = 4,
        chunk_delay_s: float = 0.0,
        retry_after_s: float | None = None,
        reply: str | None = None,
    ) -> None:
        self.chunk_chars = chunk_chars
        self.chunk_delay_s = chunk_delay_s
        self.retry_after_s = retry_after_s
        self.reply = reply
        self.requests: list[Recorded] = []
        self._script: deque[str] = deque()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def script(self, behaviours: list[str]) -> None:
        """Queue behaviours for the next requests, in order."""
        self._script.extend(behaviours)

    async def start(self) -> str:
        """Serve on a free loopback port; returns the base URL (ending in ``/v1``)."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Recorded(dict(request.headers), body))
        behaviour = self._script.popleft() if self._script else "ok"
        if behaviour in ("429", "500", "503"):
            headers = {}
            if self.retry_after_s is not None:
                headers["Retry-After"] = str(self.retry_after_s)
            return web.json_response(
                {"error": {"message": f"fake {behaviour}"}}, status=int(behaviour), headers=headers
            )
        if behaviour == "error400":
            return web.json_response({"error": {"message": "bad model name"}}, status=400)
        text = "" if behaviour == "empty" else self._answer(body)
        return await self._stream(request, text, behaviour)

    def _answer(self, body: dict[str, Any]) -> str:
        if self.reply is not None:
            return self.reply
        users = [m["content"] for m in body.get("messages", []) if m.get("role") == "user"]
        return users[-1] if users else ""

    async def _stream(self, request: web.Request, text: str, behaviour: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunks = [text[i : i + self.chunk_chars] for i in range(0, len(text), self.chunk_chars)]
        if behaviour in ("truncate", "drop", "malformed"):
            chunks = chunks[: max(1, len(chunks) // 2)]
        await response.write(_sse({"choices": [{"delta": {"role": "assistant"}}]}))
        for chunk in chunks:
            if self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
            await response.write(_sse({"choices": [{"delta": {"content": chunk}}]}))
        if behaviour == "malformed":
            await response.write(b"data: {not json\n\n")
        if behaviour == "drop":
            assert request.transport is not None
            request.transport.close()
            return response
        if behaviour != "truncate":
            await response.write(_sse({"choices": [{"delta": {}, "finish_reason": "stop"}]}))
            await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()
