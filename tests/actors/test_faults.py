"""Faults inside actors: a task actor whose own handler crashes still reports once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from greenroom import Orchestrator, TaskStatus
from greenroom.typing import AgentContext, History

WAIT_S = 10


class Unanswerable:
    """An answer that is not a ``str`` and cannot even be tested for truth."""

    def __bool__(self) -> bool:
        raise RuntimeError("the truth of this answer is undefined")


class UnanswerableAgent:
    """A buggy Agent implementation: ``complete`` returns without error, but what it
    returns makes the task actor's own handler raise (``outcome.content or ""``), so the
    crash happens inside the actor, after the agent call ended, on pykka's failure path.
    """

    name = "unanswerable"

    def __init__(self) -> None:
        self.calls = 0

    async def stream(self, history: History, ctx: AgentContext) -> AsyncIterator[str]:
        yield "streamed fine"

    async def complete(self, history: History, ctx: AgentContext) -> Any:
        self.calls += 1
        return Unanswerable()

    async def aclose(self) -> None:
        return None


async def test_a_crash_in_a_task_actors_handler_gives_one_failed_completion(
    orch: Orchestrator,
) -> None:
    agent = UnanswerableAgent()
    orch.register_agent("unanswerable", agent)
    session = await orch.create_session()
    crashed = await session.start_task("x", agent="unanswerable")
    done = await crashed.wait(timeout=WAIT_S)
    assert agent.calls == 1  # the agent ran and returned: the actor itself crashed
    assert done.status is TaskStatus.FAILED
    assert done.content is None
    assert done.error is not None
    assert done.error.type == "ActorCrashed"
    assert "truth of this answer is undefined" in done.error.message
    results = await session.results()
    assert [(r.task_id, r.status) for r in results] == [(crashed.id, TaskStatus.FAILED)]
    # The slot the crashed actor held is free again, and no task actor is left behind.
    stats = await orch.stats()
    assert stats["tasks"] == {"running": 0, "queued": 0, "reserved": 0}
    assert stats["actors"].get("task", 0) == 0
    # The session is still usable: another task, a turn, and the crash stays recorded once.
    after = await session.start_task("after the crash")
    assert (await after.wait(timeout=WAIT_S)).content == "after the crash"
    assert "".join([c async for c in session.send("still talking")]) == "still talking"
    results = await session.results()
    assert [r.task_id for r in results] == [crashed.id, after.id]
    assert [r.status for r in results] == [TaskStatus.FAILED, TaskStatus.COMPLETED]
    assert results[0].seq < results[1].seq
    assert {t.id: t.status for t in await session.tasks()} == {
        crashed.id: "failed",
        after.id: "completed",
    }
