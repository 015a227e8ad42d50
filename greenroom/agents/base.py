"""What every agent backend shares."""

from __future__ import annotations

from collections.abc import AsyncIterator

from greenroom.typing import AgentContext, History


class BaseAgent:
    """An agent whose ``complete`` joins its ``stream``. Backends override ``stream``."""

    name: str = "agent"

    def stream(self, history: History, ctx: AgentContext) -> AsyncIterator[str]:
        """Yield the answer in chunks.

        Raises:
            AgentError: the call failed.
        """
        raise NotImplementedError

    async def complete(self, history: History, ctx: AgentContext) -> str:
        """Return the whole answer.

        Raises:
            AgentError: the call failed.
        """
        parts = [chunk async for chunk in self.stream(history, ctx)]
        return "".join(parts)

    async def aclose(self) -> None:
        """Release resources; nothing to do by default."""


def last_user_text(history: History) -> str:
    """The content of the last user message ("" when there is none)."""
    for message in reversed(history):
        if message.get("role") == "user":
            return message.get("content", "")
    return ""
