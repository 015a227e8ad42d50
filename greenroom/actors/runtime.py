"""What every actor shares: settings, store, agents, the scheduler, the loop.

Agents run as coroutines on one shared asyncio loop; actors hand work to it with
``run_coroutine_threadsafe`` and get the outcome back as a message.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from greenroom.actors import bridge
from greenroom.actors.messages import Route, TurnDelta, TurnDone
from greenroom.actors.scheduler import Scheduler
from greenroom.errors import AgentNotFoundError
from greenroom.settings import Settings
from greenroom.typing import Agent, AgentContext, History, Store

log = structlog.get_logger("greenroom")


@dataclass(eq=False)
class Runtime:
    """The shared parts of a running orchestrator. Built by ``Orchestrator.start``."""

    settings: Settings
    store: Store
    loop: asyncio.AbstractEventLoop
    agents: Mapping[str, Agent]
    scheduler: Scheduler = field(init=False)
    directory: Any = None  # the directory's ActorRef, set once started
    closing: bool = False  # intake closed (shutdown under way)
    active_turns: set[asyncio.Task[None]] = field(default_factory=set)  # loop-side only
    # Every actor this runtime started and that is still alive (weak: dead ones drop out),
    # so shutdown can wait until each one has really stopped.
    actors: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet)

    def started(self, ref: Any) -> Any:
        """Record an actor this runtime started; returns ``ref``."""
        self.actors.add(ref)
        return ref

    def wait_stopped(self, timeout_s: float) -> int:
        """Block (off the loop) until every recorded actor stopped; returns how many did not."""
        deadline = time.monotonic() + timeout_s
        left = 0
        for ref in list(self.actors):
            if not ref.actor_stopped.wait(max(0.0, deadline - time.monotonic())):
                left += 1
        return left

    def agent(self, name: str) -> Agent:
        """The agent registered under ``name``.

        Raises:
            AgentNotFoundError: no such agent.
        """
        try:
            return self.agents[name]
        except KeyError:
            known = ", ".join(sorted(self.agents)) or "none"
            raise AgentNotFoundError(f"unknown agent {name!r} (known: {known})") from None

    def route(self, session_id: str, message: Any) -> None:
        """Send ``message`` to a session through the directory (activating it if asleep)."""
        if not bridge.tell(self.directory, Route(session_id, message)):
            log.error("route_failed", session_id=session_id, msg=type(message).__name__)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` on the shared loop (from an actor thread)."""
        asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call_later(self, delay_s: float, session_id: str, message: Any) -> None:
        """Route ``message`` to a session after ``delay_s`` (from any thread)."""
        self.loop.call_soon_threadsafe(
            self.loop.call_later, delay_s, self.route, session_id, message
        )

    async def run_turn(
        self, session_ref: Any, agent: Agent, history: History, ctx: AgentContext
    ) -> None:
        """Stream a foreground turn on the loop, reporting chunks to the session actor."""
        task = asyncio.current_task()
        assert task is not None
        self.active_turns.add(task)
        started = time.perf_counter()
        parts: list[str] = []
        turn_id = ctx.turn_id or ""
        try:
            async for chunk in agent.stream(history, ctx):
                if chunk:
                    parts.append(chunk)
                    bridge.tell(session_ref, TurnDelta(turn_id, chunk))
        except asyncio.CancelledError:
            done = TurnDone(
                turn_id, None, ("Interrupted", "the turn was interrupted by shutdown"), _ms(started)
            )
            bridge.tell(session_ref, done)
            raise
        except Exception as exc:
            error = (type(exc).__name__, str(exc) or type(exc).__name__)
            bridge.tell(session_ref, TurnDone(turn_id, None, error, _ms(started)))
        else:
            bridge.tell(session_ref, TurnDone(turn_id, "".join(parts), None, _ms(started)))
        finally:
            self.active_turns.discard(task)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
