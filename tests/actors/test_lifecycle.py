"""One lifecycle for the orchestrator, and each actor's declared failure policy."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from greenroom import NotRunningError, Orchestrator, ShuttingDownError, TaskStatus
from greenroom.actors import messages as m
from greenroom.actors.runtime import State
from tests.conftest import make_settings

WAIT_S = 10


async def test_the_lifecycle_is_one_state_and_calls_after_stop_name_it(tmp_path: Path) -> None:
    orch = Orchestrator(make_settings(tmp_path))
    assert orch.state is State.NEW
    with pytest.raises(NotRunningError, match="not started"):
        orch.session("ses_x")
    await orch.start()
    assert orch.state is State.RUNNING and orch.running
    session = await orch.create_session()
    await orch.stop()
    assert orch.state is State.CLOSED and not orch.running
    with pytest.raises(NotRunningError, match="closed") as caught:
        await orch.create_session()
    assert caught.value.state == "closed"
    with pytest.raises(NotRunningError):
        await session.info()
    with pytest.raises(NotRunningError):
        orch.session(session.id)
    with pytest.raises(RuntimeError, match="cannot start"):
        await orch.start()  # closed is final
    await orch.stop()  # twice is fine


async def test_new_work_during_shutdown_is_refused_as_shutting_down(tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def slow(history: object) -> str:
        await gate.wait()
        return "late"

    orch = Orchestrator(make_settings(tmp_path))
    await orch.start()
    orch.register_agent("slow", slow)
    session = await orch.create_session(agent="slow")
    turn = await session.start_turn("hold the shutdown open")
    assert turn
    stopping = asyncio.create_task(orch.stop())
    await asyncio.sleep(0)  # one loop turn: stop() sets CLOSING before its first await
    assert orch.state is State.CLOSING
    with pytest.raises(ShuttingDownError):
        await session.start_task("too late")
    with pytest.raises(ShuttingDownError):
        await orch.create_session()
    gate.set()
    await asyncio.wait_for(stopping, WAIT_S)
    assert orch.state is State.CLOSED


async def test_actors_do_not_take_a_thread_each(tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def held(history: object) -> str:
        await gate.wait()
        return "ok"

    before = threading.active_count()
    async with Orchestrator(make_settings(tmp_path, max_running_tasks=500)) as orch:
        orch.register_agent("held", held)
        sessions = await asyncio.gather(*(orch.create_session() for _ in range(200)))
        tasks = await asyncio.gather(*(s.start_task("x", agent="held") for s in sessions))
        stats = await orch.stats()
        assert stats["actors"]["session"] == 200 and stats["actors"]["task"] == 200
        # 400 live actors; the threads are the loop's, the log writer's, the executor's.
        assert threading.active_count() - before <= 8, threading.active_count()
        gate.set()
        done = await asyncio.gather(*(t.wait(timeout=WAIT_S) for t in tasks))
    assert {d.status for d in done} == {TaskStatus.COMPLETED}


async def test_unknown_messages_are_warnings_and_the_actors_go_on(orch: Orchestrator) -> None:
    session = await orch.create_session()
    runtime = orch.runtime
    with capture_logs() as logs:
        runtime.route(session.id, "not a message")
        runtime.directory.actor_ref.tell(3.14)
        assert (await session.info()).id == session.id  # the session still answers
        # The directory's failure policy: a handler error is logged and it goes on.
        runtime.directory.actor_ref.tell(m.Passivated([session.id], 1))  # type: ignore[arg-type]
        await session.info()
        info = await (await orch.create_session()).info()
    assert info.id.startswith("ses_")
    warned = {(e["event"], e.get("msg")) for e in logs if e["log_level"] == "warning"}
    assert ("unexpected_message", "str") in warned
    assert ("unexpected_message", "float") in warned
    crashed = [e for e in logs if e["event"] == "actor_crashed"]
    assert crashed and crashed[0]["actor"] == "directory" and crashed[0]["msg"] == "Passivated"
