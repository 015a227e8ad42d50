"""The event loop never waits on an actor, and random workloads keep exactly-once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from blockbuster import blockbuster_ctx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenroom import Orchestrator, TaskStatus
from greenroom.models import ChatMessage, Event, SessionRecord, TaskRecord
from greenroom.store import MemoryStore
from tests.actors.agents import Gate
from tests.conftest import make_settings

WAIT_S = 10


class GatedStore(MemoryStore):
    """A real memory store whose commits for one session block until the test says go.

    It stands in for a slow disk: the session actor's thread is stuck in a write.
    """

    def __init__(self) -> None:
        super().__init__()
        self.blocked_session: str | None = None
        self.release = threading.Event()
        self.entered = threading.Event()

    def commit(
        self,
        session_id: str,
        *,
        session: SessionRecord | None = None,
        messages: Sequence[ChatMessage] = (),
        tasks: Sequence[TaskRecord] = (),
        events: Sequence[Event] = (),
        acked_up_to: int | None = None,
    ) -> None:
        if session_id == self.blocked_session:
            self.entered.set()
            self.release.wait(WAIT_S)
        super().commit(
            session_id,
            session=session,
            messages=messages,
            tasks=tasks,
            events=events,
            acked_up_to=acked_up_to,
        )


async def _max_tick_gap(stop: asyncio.Event) -> float:
    """Tick every millisecond until ``stop``; return the longest gap seen, in ms."""
    worst = 0.0
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        worst = max(worst, now - last)
        last = now
    return worst * 1000


async def test_event_loop_keeps_ticking_while_a_session_actor_is_stuck(tmp_path: Path) -> None:
    store = GatedStore()
    async with Orchestrator(make_settings(tmp_path), store=store) as orch:
        stuck = await orch.create_session()
        free = await orch.create_session()
        stop = asyncio.Event()
        ticker = asyncio.create_task(_max_tick_gap(stop))
        with blockbuster_ctx(["greenroom"]):
            store.blocked_session = stuck.id
            blocked = asyncio.create_task(stuck.start_task("waits for the disk"))
            await asyncio.wait_for(asyncio.to_thread(store.entered.wait, WAIT_S), WAIT_S)
            # While that actor is stuck in a write, other sessions are served.
            tasks = [await free.start_task(f"job {i}") for i in range(50)]
            done = [await t.wait(timeout=WAIT_S) for t in tasks]
            assert not blocked.done()
            store.release.set()
            await asyncio.wait_for(blocked, WAIT_S)
        stop.set()
        worst_gap_ms = await ticker
    assert [d.status for d in done] == [TaskStatus.COMPLETED] * 50
    assert worst_gap_ms <= 20, f"the loop stalled for {worst_gap_ms:.1f} ms"


# --- property: random mixes keep exactly one completion per task ---------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("start"), st.sampled_from(["echo", "gate", "boom"])),
        st.tuples(st.just("cancel"), st.integers(0, 200)),
        st.tuples(st.just("wait"), st.integers(0, 200)),
        st.tuples(st.just("poll"), st.integers(0, 3)),
        st.tuples(st.just("ack"), st.integers(0, 200)),
        st.tuples(st.just("open"), st.just(0)),
    ),
    min_size=5,
    max_size=60,
)


async def _run_ops(tmp_path: Path, ops: list[tuple[str, Any]]) -> None:
    gate = Gate()

    async def boom(history: Any) -> str:
        raise ValueError("nope")

    async with Orchestrator(make_settings(tmp_path, max_running_tasks=4)) as orch:
        orch.register_agent("gate", gate)
        orch.register_agent("boom", boom)
        session = await orch.create_session()
        started = []
        for op, arg in ops:
            if op == "start":
                started.append(await session.start_task("p", agent=arg))
            elif op == "cancel" and started:
                await started[arg % len(started)].cancel()
            elif op == "wait" and started:
                await started[arg % len(started)].refresh()
            elif op == "poll":
                await session.results(after=arg)
            elif op == "ack":
                seen = await session.results()
                if seen:
                    await session.ack(up_to=seen[arg % len(seen)].seq)
            elif op == "open":
                gate.opened.set()
        gate.opened.set()
        finals = [await t.wait(timeout=WAIT_S) for t in started]
        results = await session.results(limit=1000)
    assert sorted(r.task_id for r in results) == sorted(t.id for t in started)
    assert [r.seq for r in results] == sorted({r.seq for r in results})
    assert all(f.status.terminal for f in finals)
    by_id = {r.task_id: r for r in results}
    assert all(by_id[f.task_id].status is f.status for f in finals)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_random_operations_yield_exactly_one_completion_per_task(
    tmp_path: Path, ops: list[tuple[str, Any]]
) -> None:
    asyncio.run(_run_ops(tmp_path, ops))
