"""The embedded default agent: answers with the prompt, in chunks, optionally slowly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from greenroom.agents.base import BaseAgent, last_user_text
from greenroom.typing import AgentContext, History


class EchoAgent(BaseAgent):
    """Replies with the last user message.

    Args:
        name: the agent's configured name.
        delay_s: total time the answer takes, spread across its chunks.
        chunk_chars: characters per streamed chunk.

    Raises:
        ValueError: ``delay_s`` is negative or ``chunk_chars`` is not positive.
    """

    def __init__(self, name: str = "echo", *, delay_s: float = 0.0, chunk_chars: int = 8) -> None:
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        if chunk_chars < 1:
            raise ValueError(f"chunk_chars must be >= 1, got {chunk_chars}")
        self.name = name
        self.delay_s = delay_s
        self.chunk_chars = chunk_chars

    async def stream(self, history: History, ctx: AgentContext) -> AsyncIterator[str]:
        text = last_user_text(history)
        chunks = [text[i : i + self.chunk_chars] for i in range(0, len(text), self.chunk_chars)]
        pause_s = self.delay_s / max(len(chunks), 1)
        if not chunks and self.delay_s:
            await asyncio.sleep(self.delay_s)
        for chunk in chunks:
            if pause_s:
                await asyncio.sleep(pause_s)
            yield chunk

    async def complete(self, history: History, ctx: AgentContext) -> str:
        # One sleep instead of one per chunk: background work need not pace itself.
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return last_user_text(history)
