"""The directory under random interleavings: never two live incarnations, nothing left.

Random mixes of activations, messages to known and unknown ids, passivation (idle and
over the bound), late lifecycle messages naming old incarnations, and shutdown. After
every step at most one incarnation holds a session's state; once idle and swept no
session actor is left; no message to a known session goes unanswered; at shutdown
every actor has stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenroom import Orchestrator, SessionNotFoundError, TaskStatus
from greenroom.actors import messages as m
from greenroom.actors.runtime import Runtime
from greenroom.actors.session import SessionActor
from tests.conftest import make_settings

WAIT_S = 10

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.just(0)),
        st.tuples(st.just("task"), st.integers(0, 50)),
        st.tuples(st.just("read"), st.integers(0, 50)),
        st.tuples(st.just("unknown"), st.integers(0, 3)),
        st.tuples(st.just("sweep"), st.just(0)),
        st.tuples(st.just("late"), st.integers(0, 50)),
        st.tuples(st.just("stream"), st.integers(0, 50)),
    ),
    min_size=3,
    max_size=40,
)


def serving(runtime: Runtime) -> Counter[str]:
    """Incarnations holding a session's state, by session id."""
    return Counter(
        a.session_id
        for a in list(runtime._actors)
        if isinstance(a, SessionActor) and a.core is not None and not a.actor_stopped.is_set()
    )


async def until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)  # polls a condition with a deadline; not a fixed wait


def late_messages(runtime: Runtime, sid: str) -> list[Any]:
    """Lifecycle messages about incarnations that are not (or no longer) the live one."""
    entry = runtime.directory.live.get(sid)
    old = entry.generation - 1 if entry is not None else runtime.directory.generations
    return [m.Passivated(sid, old), m.SessionGone(sid, old), m.PassivateRefused(sid, old)]


async def _run(tmp_path: Path, ops: list[tuple[str, int]]) -> None:
    config = make_settings(tmp_path, max_live_sessions=2, session_idle_s=0.2)
    orch = Orchestrator(config)
    await orch.start()
    runtime = orch.runtime
    sessions: list[Any] = [await orch.create_session()]
    started: Counter[str] = Counter()
    streams: list[Any] = []
    try:
        for op, arg in ops:
            pick = sessions[arg % len(sessions)]
            if op == "create":
                sessions.append(await orch.create_session())
            elif op == "task":
                done = await (await pick.start_task("p")).wait(timeout=WAIT_S)
                assert done.status is TaskStatus.COMPLETED
                started[pick.id] += 1
            elif op == "read":
                assert (await pick.info()).id == pick.id
            elif op == "unknown":
                with pytest.raises(SessionNotFoundError):
                    await orch.session(f"ses_nobody{arg}").info()
            elif op == "sweep":
                runtime.directory.actor_ref.tell(m.Sweep())
            elif op == "late":
                for message in late_messages(runtime, pick.id):
                    runtime.directory.actor_ref.tell(message)
            elif op == "stream":
                streams.append(await pick.subscribe())  # busy: must not be passivated
            assert max(serving(runtime).values(), default=0) <= 1, serving(runtime)
        for session in sessions:  # every message to a known session was answered
            results = await session.results(limit=1000)
            assert len(results) == started[session.id]
        for stream in streams:
            stream.close()
        await until(lambda: not serving(runtime), "every session to be passivated")
        await until(lambda: runtime.live_actors().get("session", 0) == 0, "session actors to stop")
        assert runtime.live_actors().get("task", 0) == 0
    finally:
        await orch.stop()
    assert runtime.live_actors() == {}


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_random_lifecycles_never_run_two_incarnations_or_leave_actors(
    tmp_path: Path, ops: list[tuple[str, int]]
) -> None:
    asyncio.run(_run(tmp_path, ops))


async def test_requests_for_unknown_ids_leave_no_actor_behind(tmp_path: Path) -> None:
    """The soak's finding: unknown ids with passivation churning leaked session actors."""
    config = make_settings(tmp_path, max_live_sessions=2, session_idle_s=0.2)
    async with Orchestrator(config) as orch:
        runtime = orch.runtime
        busy = [await (await orch.create_session()).subscribe() for _ in range(4)]
        for round_ in range(20):
            calls = [orch.session(f"ses_ghost{i % 7}").info() for i in range(30)]
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            assert all(isinstance(o, SessionNotFoundError) for o in outcomes), round_
            runtime.directory.actor_ref.tell(m.Sweep())
        for sub in busy:
            sub.close()
        await until(lambda: runtime.live_actors().get("session", 0) == 0, "no session actor")
        assert runtime.directory.live == {}
