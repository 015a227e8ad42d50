"""Agents for tests: real coroutines with controllable behaviour (no mocks of our code)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from greenroom.typing import AgentContext, History


class Gate:
    """An agent that answers only when the test opens the gate: deterministic, no sleeps."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.entered = asyncio.Event()
        self.calls = 0

    async def __call__(self, history: History) -> str:
        self.calls += 1
        self.entered.set()
        await self.opened.wait()
        return "gate:" + history[-1]["content"]


async def boom(history: History) -> str:
    raise RuntimeError("the model server exploded")


async def empty(history: History) -> str:
    return ""


async def forever(history: History) -> str:
    await asyncio.Event().wait()
    return "never"


async def stubborn(history: History) -> str:
    """Ignores cancellation and answers late anyway."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()
    return "late answer that must be discarded"


async def history_echo(history: History) -> str:
    return " | ".join(f"{m['role']}:{m['content']}" for m in history)


async def chunks(history: History) -> AsyncIterator[str]:
    for word in history[-1]["content"].split():
        yield word + " "


class CrashingAgent:
    """A buggy Agent implementation: calling ``complete`` raises in the caller's thread."""

    name = "crashing"

    def stream(self, history: History, ctx: AgentContext) -> AsyncIterator[str]:
        raise RuntimeError("bug in agent plumbing")

    def complete(self, history: History, ctx: AgentContext) -> str:
        raise RuntimeError("bug in agent plumbing")

    async def aclose(self) -> None:
        return None
