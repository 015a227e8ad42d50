"""Property: random operations with restarts in between keep one completion per task."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenroom import Orchestrator
from tests.actors.agents import Gate

# (op, argument, session index, max_attempts)
START = st.tuples(
    st.just("start"), st.sampled_from(["echo", "gate"]), st.integers(0, 1), st.integers(1, 2)
)
# Every example starts a task first: one that starts none would check nothing.
OPS = st.tuples(
    START,
    st.lists(
        st.one_of(
            START,
            st.tuples(st.just("cancel"), st.integers(0, 50), st.just(0), st.just(1)),
            st.tuples(st.just("ack"), st.integers(0, 1), st.just(0), st.just(1)),
            st.tuples(st.just("restart"), st.just(""), st.just(0), st.just(1)),
        ),
        min_size=2,
        max_size=24,
    ),
).map(lambda first_and_rest: [first_and_rest[0], *first_and_rest[1]])


def _config(data_dir: str) -> dict[str, Any]:
    return {
        "data_dir": data_dir,
        "store": {"kind": "sqlite"},
        "logging": {"level": "error"},
        "server": {"shutdown_grace_s": 0.1},
        # Two run at once, so restarts find tasks queued as well as running.
        "limits": {"max_running_tasks": 2},
    }


async def _start(data_dir: str, *, open_gate: bool = False) -> Orchestrator:
    orch = Orchestrator(_config(data_dir))
    gate = Gate()  # closed until the last start: until then restarts cut these tasks
    if open_gate:
        gate.opened.set()
    orch.register_agent("gate", gate)  # before start(): recovered tasks run at once
    await orch.start()
    return orch


async def _run(ops: list[tuple[str, Any, int, int]], data_dir: str) -> None:
    orch = await _start(data_dir)
    sessions = [(await orch.create_session()).id for _ in range(2)]
    started: list[tuple[str, str]] = []  # (session id, task id)
    try:
        for op, arg, which, attempts in ops:
            session = orch.session(sessions[which])
            if op == "start":
                task = await session.start_task("p", agent=arg, max_attempts=attempts)
                started.append((session.id, task.id))
            elif op == "cancel" and started:
                sid, tid = started[arg % len(started)]
                await orch.session(sid).cancel_task(tid)
            elif op == "ack":
                seen = await session.results(limit=1000)
                if seen:
                    await session.ack(up_to=seen[-1].seq)
            elif op == "restart":
                await orch.stop()
                orch = await _start(data_dir)
        assert started, "the example started no task"
        await orch.stop()
        # One last restart, with the gate open: what was queued (or running with an
        # attempt left) runs to its end now; then count.
        orch = await _start(data_dir, open_gate=True)
        for sid in sessions:
            mine = [tid for s, tid in started if s == sid]
            session = orch.session(sid)
            finals = [await (await session.task(tid)).wait(timeout=10) for tid in mine]
            results = await session.results(limit=1000)
            assert sorted(r.task_id for r in results) == sorted(mine)
            assert [r.seq for r in results] == sorted({r.seq for r in results})
            assert all(f.status.terminal for f in finals)
    finally:
        await orch.stop()


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=OPS)
def test_random_operations_with_restarts_keep_one_completion_per_task(
    ops: list[tuple[str, Any, int, int]],
) -> None:
    data_dir = tempfile.mkdtemp(prefix="greenroom-prop-")
    try:
        asyncio.run(_run(ops, data_dir))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
