"""Virtual sessions: idle session actors are passivated and come back transparently."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from greenroom import Orchestrator, TaskStatus
from greenroom.settings import LimitsSettings, Settings, StoreSettings
from tests.actors.agents import Gate

WAIT_S = 20


def sqlite_settings(tmp_path: Path, **limits: float) -> Settings:
    return Settings(
        data_dir=str(tmp_path), store=StoreSettings(kind="sqlite"), limits=LimitsSettings(**limits)
    )  # type: ignore[arg-type]


async def test_thousands_of_sessions_each_get_their_result_with_bounded_threads(
    tmp_path: Path,
) -> None:
    baseline_threads = threading.active_count()
    peak = 0
    async with Orchestrator(
        sqlite_settings(tmp_path, max_live_sessions=20, max_running_tasks=16)
    ) as orch:
        sessions = []
        for batch in range(10):
            created = await asyncio.gather(*(orch.create_session() for _ in range(200)))
            tasks = await asyncio.gather(*(s.start_task(f"job {batch}") for s in created))
            done = await asyncio.gather(*(t.wait(timeout=WAIT_S) for t in tasks))
            assert {d.status for d in done} == {TaskStatus.COMPLETED}
            sessions.extend(created)
            peak = max(peak, threading.active_count())
        # Every session, asleep or awake, still answers with its result.
        for session in sessions[::97]:
            results = await session.results()
            assert [r.status for r in results] == [TaskStatus.COMPLETED]
        live = (await orch.stats())["live_sessions"]
    assert live <= 20 + 200  # the bound, plus sessions busy at the moment of the sweep
    # Threads: actors are bounded by live sessions + running tasks, not by sessions made.
    assert peak - baseline_threads <= 20 + 200 + 16 + 10, peak


async def test_a_passivated_session_is_reactivated_by_its_next_message(tmp_path: Path) -> None:
    gate = Gate()
    async with Orchestrator(sqlite_settings(tmp_path, max_live_sessions=1)) as orch:
        orch.register_agent("gate", gate)
        first = await orch.create_session()
        task = await first.start_task("kept", agent="gate")
        # Many other sessions push the busy one over the live bound: it must stay.
        for _ in range(5):
            other = await orch.create_session()
            await (await other.start_task("x")).wait(timeout=WAIT_S)
        gate.opened.set()
        done = await task.wait(timeout=WAIT_S)
        assert done.content == "gate:kept"
        for _ in range(3):  # the idle one now gets passivated and re-activated in turn
            await (await (await orch.create_session()).start_task("y")).wait(WAIT_S)
        assert [r.task_id for r in await first.results()] == [task.id]
        assert (await first.info())["task_counts"] == {"completed": 1}
