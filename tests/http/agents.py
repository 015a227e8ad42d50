"""Agents for the HTTP tests: real coroutines the test steers with events, no sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from greenroom.typing import History


class Drip:
    """A slow streaming agent: one chunk, then waits for the test, then the last chunk."""

    def __init__(self) -> None:
        self.streaming = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, history: History) -> AsyncIterator[str]:
        yield "first "
        self.streaming.set()
        await self.release.wait()
        yield "last"


async def flood(history: History) -> AsyncIterator[str]:
    """Streams far more than any socket buffer holds: 400 chunks of 64 KiB."""
    chunk = "z" * 65536
    for _ in range(400):
        yield chunk
