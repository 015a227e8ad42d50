"""The core's guarantees, scenario by scenario, through the embedded API.

The first five tests are regression tests for the failure modes a widely used agent
web UI shipped with its background tasks.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from greenroom import (
    AgentNotFoundError,
    Orchestrator,
    QueueFullError,
    TaskNotFoundError,
    TaskStatus,
    TaskTimeoutError,
    TurnInProgressError,
)
from greenroom.errors import AckBeyondLastSeqError
from tests.actors.agents import (
    CrashingAgent,
    Gate,
    boom,
    chunks,
    empty,
    forever,
    history_echo,
    stubborn,
)
from tests.conftest import make_settings

WAIT_S = 10


async def test_completion_hook_fires_for_every_way_a_task_can_end(orch: Orchestrator) -> None:
    orch.register_agent("boom", boom)
    orch.register_agent("forever", forever)
    orch.register_agent("crashing", CrashingAgent())
    session = await orch.create_session()
    ok = await session.start_task("fine")
    failed = await session.start_task("x", agent="boom")
    timed_out = await session.start_task("x", agent="forever", timeout_s=0.05)
    cancelled = await session.start_task("x", agent="forever")
    crashed = await session.start_task("x", agent="crashing")
    await cancelled.cancel()
    expected = {
        ok.id: TaskStatus.COMPLETED,
        failed.id: TaskStatus.FAILED,
        timed_out.id: TaskStatus.TIMED_OUT,
        cancelled.id: TaskStatus.CANCELLED,
        crashed.id: TaskStatus.FAILED,
    }
    for task in (ok, failed, timed_out, cancelled, crashed):
        done = await task.wait(timeout=WAIT_S)
        assert done.status is expected[task.id]
    results = await session.results()
    assert sorted(r.task_id for r in results) == sorted(expected)
    assert len({r.seq for r in results}) == len(results)
    crash = next(r for r in results if r.task_id == crashed.id)
    assert crash.error is not None and crash.error.type == "ActorCrashed"


async def test_status_poll_never_drops_tasks_still_running(orch: Orchestrator) -> None:
    gate = Gate()
    orch.register_agent("gate", gate)
    session = await orch.create_session()
    slow = [await session.start_task(f"slow {i}", agent="gate") for i in range(3)]
    quick = await session.start_task("quick")
    await quick.wait(timeout=WAIT_S)
    for _ in range(3):  # polling repeatedly must not pop anything
        listing = {t.id: t.status for t in await session.tasks()}
        assert set(listing) == {t.id for t in slow} | {quick.id}
        assert all(listing[t.id] in ("queued", "running") for t in slow)
        assert listing[quick.id] == "completed"
    gate.opened.set()
    for task in slow:
        assert (await task.wait(timeout=WAIT_S)).content == f"gate:slow {slow.index(task)}"


async def test_one_poller_never_consumes_another_pollers_results(orch: Orchestrator) -> None:
    session = await orch.create_session()
    tasks = [await session.start_task(f"job {i}") for i in range(10)]
    for task in tasks:
        await task.wait(timeout=WAIT_S)
    first = await session.results(after=0)
    second = await session.results(after=0)
    assert [r.task_id for r in first] == [r.task_id for r in second]
    assert {r.task_id for r in first} == {t.id for t in tasks}
    await session.ack(up_to=first[-1].seq)  # one client acknowledging...
    third = await session.results(after=0)  # ...does not hide them from another
    assert [r.seq for r in third] == [r.seq for r in first]


async def test_failed_agent_never_leaves_the_task_running(orch: Orchestrator) -> None:
    orch.register_agent("boom", boom)
    session = await orch.create_session()
    task = await session.start_task("x", agent="boom")
    done = await task.wait(timeout=WAIT_S)
    assert done.status is TaskStatus.FAILED
    assert done.content is None
    assert done.error is not None
    assert done.error.type == "RuntimeError"
    assert "exploded" in done.error.message
    listing = await session.tasks()
    assert [t.status for t in listing] == ["failed"]


async def test_empty_answer_is_completed_with_empty_content(orch: Orchestrator) -> None:
    orch.register_agent("empty", empty)
    session = await orch.create_session()
    done = await (await session.start_task("x", agent="empty")).wait(timeout=WAIT_S)
    assert done.status is TaskStatus.COMPLETED
    assert done.content == ""
    assert done.error is None


async def test_timeout_ends_the_task_and_discards_late_output(orch: Orchestrator) -> None:
    orch.register_agent("stubborn", stubborn)
    session = await orch.create_session()
    task = await session.start_task("x", agent="stubborn", timeout_s=0.05)
    done = await task.wait(timeout=WAIT_S)
    assert done.status is TaskStatus.TIMED_OUT
    assert done.content is None
    assert done.error is not None and "timeout" in done.error.message
    assert [r.status for r in await session.results()] == [TaskStatus.TIMED_OUT]


async def test_cancel_twice_gives_one_cancelled_completion(orch: Orchestrator) -> None:
    orch.register_agent("forever", forever)
    session = await orch.create_session()
    task = await session.start_task("x", agent="forever")
    first = await task.cancel()
    second = await task.cancel()
    assert first.status == second.status == "cancelled"
    assert first.seq == second.seq
    assert len(await session.results()) == 1


async def test_cancel_of_a_queued_task_never_runs_it(tmp_path: Path) -> None:
    gate = Gate()
    async with Orchestrator(make_settings(tmp_path, max_running_tasks=1)) as orch:
        orch.register_agent("gate", gate)
        session = await orch.create_session()
        running = await session.start_task("first", agent="gate")
        queued = await session.start_task("second", agent="gate")
        assert (await session.get_task(queued.id)).status == "queued"
        assert (await queued.cancel()).status == "cancelled"
        gate.opened.set()
        assert (await running.wait(timeout=WAIT_S)).status is TaskStatus.COMPLETED
        assert gate.calls == 1


async def test_queue_bound_refuses_new_tasks_and_keeps_accepted_ones(tmp_path: Path) -> None:
    gate = Gate()
    async with Orchestrator(
        make_settings(tmp_path, max_running_tasks=1, max_queued_tasks=2)
    ) as orch:
        orch.register_agent("gate", gate)
        session = await orch.create_session()
        accepted = [await session.start_task(f"t{i}", agent="gate") for i in range(3)]
        with pytest.raises(QueueFullError, match="max_queued_tasks"):
            await session.start_task("one too many", agent="gate")
        assert len(await session.tasks()) == 3
        gate.opened.set()
        statuses = [(await t.wait(timeout=WAIT_S)).status for t in accepted]
        assert statuses == [TaskStatus.COMPLETED] * 3
        # Capacity is back once the queue drained.
        await (await session.start_task("again", agent="gate")).wait(timeout=WAIT_S)


async def test_side_question_sees_the_history_and_background_job_does_not(
    orch: Orchestrator,
) -> None:
    orch.register_agent("history", history_echo)
    session = await orch.create_session(agent="history")
    answer = "".join([c async for c in session.send("my name is Ada")])
    assert answer == "user:my name is Ada"
    side = await (await session.start_task("what is my name?", kind="side")).wait(WAIT_S)
    background = await (await session.start_task("what is my name?")).wait(WAIT_S)
    assert side.content == (
        "user:my name is Ada | assistant:user:my name is Ada | user:what is my name?"
    )
    assert background.content == "user:what is my name?"


async def test_foreground_turn_streams_chunks_and_lands_in_the_transcript(
    orch: Orchestrator,
) -> None:
    orch.register_agent("chunks", chunks)
    session = await orch.create_session(agent="chunks")
    got = [c async for c in session.send("one two three")]
    assert got == ["one ", "two ", "three "]
    transcript = await session.messages()
    assert [(m.role, m.content) for m in transcript] == [
        ("user", "one two three"),
        ("assistant", "one two three "),
    ]


async def test_second_turn_while_one_runs_is_a_conflict(orch: Orchestrator) -> None:
    gate = Gate()
    orch.register_agent("gate", gate)
    session = await orch.create_session(agent="gate")
    await session.start_turn("first")
    with pytest.raises(TurnInProgressError):
        await session.start_turn("second")
    gate.opened.set()


async def test_task_wait_raises_a_timeout_error_and_the_task_keeps_running(
    orch: Orchestrator,
) -> None:
    gate = Gate()
    orch.register_agent("gate", gate)
    session = await orch.create_session()
    task = await session.start_task("x", agent="gate")
    with pytest.raises(TaskTimeoutError):
        await task.wait(timeout=0.05)
    with pytest.raises(TimeoutError):  # TaskTimeoutError is a TimeoutError
        await task.wait(timeout=0.01)
    gate.opened.set()
    assert (await task.wait(timeout=WAIT_S)).content == "gate:x"


async def test_results_long_poll_returns_as_soon_as_a_completion_lands(
    orch: Orchestrator,
) -> None:
    gate = Gate()
    orch.register_agent("gate", gate)
    session = await orch.create_session()
    await session.start_task("x", agent="gate")
    poll = asyncio.create_task(session.results(after=0, wait=WAIT_S * 3))
    await asyncio.wait_for(gate.entered.wait(), WAIT_S)
    assert not poll.done()
    gate.opened.set()
    results = await asyncio.wait_for(poll, WAIT_S)
    assert [r.content for r in results] == ["gate:x"]


async def test_bad_input_gets_clear_errors_and_loses_nothing(orch: Orchestrator) -> None:
    session = await orch.create_session()
    kept = await session.start_task("kept")
    with pytest.raises(ValueError, match="kind"):
        await session.start_task("x", kind="sideways")
    with pytest.raises(ValueError, match="prompt"):
        await session.start_task("   ")
    with pytest.raises(TypeError, match="prompt"):
        await session.start_task(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout_s"):
        await session.start_task("x", timeout_s=-1)
    with pytest.raises(AgentNotFoundError, match="nope"):
        await session.start_task("x", agent="nope")
    with pytest.raises(AgentNotFoundError):
        await orch.create_session(agent="nope")
    with pytest.raises(TaskNotFoundError):
        await session.get_task("tsk_missing")
    with pytest.raises(AckBeyondLastSeqError, match="up_to"):  # a state conflict, not bad input
        await session.ack(up_to=10_000)
    with pytest.raises(ValueError, match="after"):
        await session.results(after=-1)
    assert (await kept.wait(timeout=WAIT_S)).status is TaskStatus.COMPLETED
    assert len(await session.tasks()) == 1


async def test_idempotency_key_returns_the_same_task(orch: Orchestrator) -> None:
    session = await orch.create_session()
    first = await session.start_task("x", idempotency_key="k1")
    again = await session.start_task("x", idempotency_key="k1")
    other = await session.start_task("x", idempotency_key="k2")
    assert first.id == again.id != other.id
    assert len(await session.tasks()) == 2


async def test_subscriber_receives_task_events_in_sequence(orch: Orchestrator) -> None:
    session = await orch.create_session()
    async with await session.subscribe(after=0) as feed:
        task = await session.start_task("x")
        events = [await asyncio.wait_for(feed.get(), WAIT_S) for _ in range(3)]
    assert [e.type for e in events] == ["task.queued", "task.started", "task.completed"]
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[-1].data["task_id"] == task.id
    replayed = await session.subscribe(after=1)
    again = [await asyncio.wait_for(replayed.get(), WAIT_S) for _ in range(2)]
    replayed.close()
    assert [e.seq for e in again] == [2, 3]
