"""Virtual sessions: idle session actors are passivated and come back transparently."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from greenroom import Orchestrator, TaskStatus
from greenroom.settings import LimitsSettings, Settings, StoreSettings
from tests.actors.agents import Gate

WAIT_S = 20

LogEntries = list[MutableMapping[str, Any]]


def sqlite_settings(tmp_path: Path, **limits: float) -> Settings:
    return Settings(
        data_dir=str(tmp_path), store=StoreSettings(kind="sqlite"), limits=LimitsSettings(**limits)
    )  # type: ignore[arg-type]


def sessions_that(logs: LogEntries, event: str) -> list[str]:
    """The session ids of the captured log lines ``event`` (forced passivations, which
    only shutdown does, left out)."""
    return [e["session_id"] for e in logs if e["event"] == event and not e.get("forced")]


async def live_sessions_within(orch: Orchestrator, bound: int) -> int:
    """Wait (up to WAIT_S) until at most ``bound`` sessions are live; return how many are."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while True:
        stats = await orch.stats()
        if stats["live_sessions"] <= bound and stats["passivating"] == 0:
            return int(stats["live_sessions"])
        if loop.time() > deadline:
            raise AssertionError(f"still over the bound of {bound} live sessions: {stats}")
        await asyncio.sleep(0.01)


async def test_thousands_of_sessions_each_get_their_result_with_bounded_threads(
    tmp_path: Path,
) -> None:
    baseline_threads = threading.active_count()
    peak = 0
    # session_idle_s stays at its default (minutes): only the live bound passivates here.
    with capture_logs() as logs:
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
            # Every session, asleep or awake, still answers with its result. The old ones
            # were passivated to make room and come back from the store.
            sampled = sessions[:-200:97]
            for session in sampled:
                results = await session.results()
                assert [r.status for r in results] == [TaskStatus.COMPLETED]
            # All work is idle now and each activation enforced the bound: exactly it.
            live = await live_sessions_within(orch, 20)
            passivated = sessions_that(logs, "session_passivated")
            activated = sessions_that(logs, "session_activated")
    assert live == 20
    # 2000 sessions were live once and at most 20 are now: the rest were passivated.
    assert len(set(passivated)) >= len(sessions) - 20
    assert set(activated) >= {s.id for s in sampled}  # re-activated from the store
    # Threads: actors are bounded by live sessions + running tasks, not by sessions made.
    assert peak - baseline_threads <= 20 + 200 + 16 + 10, peak


async def test_a_passivated_session_is_reactivated_by_its_next_message(tmp_path: Path) -> None:
    gate = Gate()
    with capture_logs() as logs:
        async with Orchestrator(sqlite_settings(tmp_path, max_live_sessions=1)) as orch:
            orch.register_agent("gate", gate)
            first = await orch.create_session()
            task = await first.start_task("kept", agent="gate")
            # Many other sessions push the busy one over the live bound: it must stay.
            others = []
            for _ in range(5):
                other = await orch.create_session()
                others.append(other.id)
                await (await other.start_task("x")).wait(timeout=WAIT_S)
            assert first.id not in sessions_that(logs, "session_passivated")
            assert set(sessions_that(logs, "session_passivated")) & set(others[:-1])
            gate.opened.set()
            done = await task.wait(timeout=WAIT_S)
            assert done.content == "gate:kept"
            for _ in range(3):  # the idle one now gets passivated and re-activated in turn
                await (await (await orch.create_session()).start_task("y")).wait(WAIT_S)
            assert first.id in sessions_that(logs, "session_passivated")
            assert first.id not in sessions_that(logs, "session_activated")
            assert [r.task_id for r in await first.results()] == [task.id]
            assert (await first.info()).task_counts == {"completed": 1}
            assert sessions_that(logs, "session_activated") == [first.id]  # from the store
