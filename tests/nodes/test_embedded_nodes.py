"""Nodes in one process (embedded orchestrators on one PostgreSQL database): a task that
ended here keeps its real answer through a write of unknown outcome and a lapsed lease."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import psycopg
import pytest

from greenroom import Orchestrator
from greenroom.errors import GreenroomError, TurnInProgressError
from greenroom.models import TaskStatus
from tests.pg import fresh_database

ANSWER = "THE REAL ANSWER"


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_database() as name:
        yield name


def node(dsn: str, node_id: str, lease_s: float = 10.0) -> Orchestrator:
    return Orchestrator(
        {
            "store": {"kind": "postgres", "dsn": dsn, "pool_size": 2},
            "cluster": {
                "node_id": node_id,
                "advertise_url": f"http://{node_id}",
                "lease_s": lease_s,
            },
        }
    )


def gated_agent(gate: asyncio.Event) -> Callable[[Any], Any]:
    async def agent(history: Any) -> str:
        await gate.wait()
        return ANSWER

    return agent


async def sql(dsn: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    def run() -> list[tuple[Any, ...]]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            return conn.execute(query, args).fetchall()

    return await asyncio.get_running_loop().run_in_executor(None, run)


async def until(probe: Callable[[], Any], what: str, timeout_s: float = 15.0) -> Any:
    """Await ``probe()`` until it returns something truthy; greenroom errors (503s to
    a client: a lease being taken again) count as not yet."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                value = await probe()
            except GreenroomError:
                value = None
            if value:
                return value
            await asyncio.sleep(0.05)  # a poll, bounded by the timeout above


@pytest.fixture
async def gate() -> AsyncIterator[asyncio.Event]:
    event = asyncio.Event()
    yield event
    event.set()


async def test_a_completion_whose_write_broke_is_recorded_not_interrupted(
    dsn: str, gate: asyncio.Event
) -> None:
    orch = node(dsn, "a")
    orch.register_agent("gated", gated_agent(gate))
    async with orch:
        session = await orch.create_session()
        task = await session.start_task("go", agent="gated")
        await until(lambda: _status_is(session, task.id, TaskStatus.RUNNING), "the task to run")
        # The writer's connection dies: the completion's write fails with its outcome
        # unknown, and the session reloads itself from the database.
        killed = await sql(
            dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'greenroom-writer' AND datname = current_database()",
        )
        assert killed == [(True,)]
        gate.set()
        assert orch.metrics.registry is not None
        await until(lambda: _value(orch, "greenroom_store_write_errors_total"), "the write to fail")
        # At once (before the completion's own retry a second later), a reader
        # re-activates the session: the database still says "running".
        ended = await until(lambda: _ended(session, task.id), "the task to end")
        assert (ended.status, ended.content) == (TaskStatus.COMPLETED, ANSWER)
        page = await session.results(after=0)
        assert [(r.task_id, r.content) for r in page] == [(task.id, ANSWER)]
        await until(lambda: _empty(orch), "nothing left unrecorded")


async def test_a_lapsed_lease_keeps_the_sessions_and_a_running_task_ends_here(
    dsn: str, gate: asyncio.Event
) -> None:
    a, b = node(dsn, "a", lease_s=1.5), node(dsn, "b", lease_s=1.5)
    a.register_agent("gated", gated_agent(gate))
    b.register_agent("gated", gated_agent(asyncio.Event()))  # never answers: must not run
    async with a, b:
        session = await a.create_session()
        task = await session.start_task("go", agent="gated")
        await until(lambda: _status_is(session, task.id, TaskStatus.RUNNING), "the task to run")
        assert a.node is not None
        a.node.lapsed("a test: as if a renewal came too late")
        # The database lease is still a's: nothing is released, b's sweep takes nothing.
        owners = await sql(dsn, "SELECT owner FROM sessions WHERE id = %s", session.id)
        assert owners == [("a",)]
        assert b.node is not None and b.node.activated_orphans == 0
        gate.set()
        ended = await until(lambda: _ended(session, task.id), "the task to end")
        assert (ended.status, ended.content, ended.attempt) == (TaskStatus.COMPLETED, ANSWER, 1)
        assert b.node.activated_orphans == 0
        assert await sql(dsn, "SELECT owner FROM sessions WHERE id = %s", session.id) == [("a",)]


async def _status_is(session: Any, task_id: str, status: TaskStatus) -> bool:
    return bool((await session.get_task(task_id)).status is status)


async def _ended(session: Any, task_id: str) -> Any:
    info = await session.get_task(task_id)
    return info if info.status.terminal else None


async def _value(orch: Orchestrator, name: str) -> float:
    assert orch.metrics.registry is not None
    return orch.metrics.registry.get_sample_value(name) or 0.0


async def _empty(orch: Orchestrator) -> bool:
    return (await orch.stats())["completions_unrecorded"] == 0


async def test_a_turn_running_through_a_lapse_is_answered_and_blocks_a_second_turn(
    dsn: str, gate: asyncio.Event
) -> None:
    async def streaming(history: Any) -> AsyncIterator[str]:
        yield "half "
        await gate.wait()
        yield "and the rest"

    a = node(dsn, "a", lease_s=1.5)
    a.register_agent("streaming", streaming)
    async with a:
        session = await a.create_session(agent="streaming")
        turn_id = await session.start_turn("hello")
        await until(lambda: _turn_running(session), "the turn to run")
        assert a.node is not None
        a.node.lapsed("a test: as if a renewal came too late")  # every session passivated
        # A fresh incarnation (once the lease is back) knows the turn still runs here.
        assert await until(lambda: _turn_running(session), "the session back")
        with pytest.raises(TurnInProgressError):
            await session.start_turn("another")
        gate.set()
        answers = await until(lambda: _answers(session), "the answer")
        assert answers == [("half and the rest", turn_id)]
        assert (await a.stats())["turns_unrecorded"] == 0


async def _turn_running(session: Any) -> bool:
    return bool((await session.info()).turn_running)


async def _answers(session: Any) -> list[tuple[str, str]]:
    return [(m.content, m.turn_id) for m in await session.messages() if m.role == "assistant"]
