"""A restart keeps the queue: queued tasks run after it; running ones run again while
they have attempts left, else they end interrupted. Exactly one completion each."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from greenroom import IdempotencyKeyReusedError, Orchestrator, TaskStatus

WAIT_S = 10


def config(tmp_path: Path) -> dict[str, Any]:
    return {
        "data_dir": str(tmp_path),
        "store": {"kind": "sqlite"},
        "limits": {"max_running_tasks": 2},
        "server": {"shutdown_grace_s": 0.5},
    }


async def test_a_graceful_restart_keeps_queued_tasks_and_retries_running_ones(
    tmp_path: Path,
) -> None:
    started = asyncio.Event()

    async def held(history: Any) -> str:
        started.set()
        await asyncio.Event().wait()  # never finishes in the first process
        return "never"

    first = Orchestrator(config(tmp_path))
    first.register_agent("job", held)
    async with first:
        session = await first.create_session()
        retried = await session.start_task("a", agent="job", max_attempts=2)
        once = await session.start_task("b", agent="job")
        queued = [await session.start_task(f"q{i}", agent="job") for i in range(3)]
        await asyncio.wait_for(started.wait(), WAIT_S)
        assert [t.status for t in await session.tasks()][2:] == ["queued"] * 3
    sid = session.id

    async def quick(history: Any) -> str:
        return "done: " + history[-1]["content"]

    second = Orchestrator(config(tmp_path))
    second.register_agent("job", quick)
    async with second:
        session = second.session(sid)
        finals = {
            t.id: await (await session.task(t.id)).wait(timeout=WAIT_S) for t in [retried, *queued]
        }
        assert {f.status for f in finals.values()} == {TaskStatus.COMPLETED}
        assert finals[queued[0].id].content == "done: q0"
        tasks = {t.id: t for t in await session.tasks()}
        assert tasks[retried.id].attempt == 2  # it ran again, and says so
        assert [tasks[q.id].attempt for q in queued] == [1, 1, 1]
        results = [r async for r in session.iter_results()]
    by_task = {r.task_id: r for r in results}
    assert len(results) == len(by_task) == 5  # exactly one completion per task
    assert by_task[once.id].status is TaskStatus.INTERRUPTED  # no attempt left


async def test_an_idempotency_key_means_one_request(tmp_path: Path) -> None:
    async with Orchestrator({"data_dir": str(tmp_path), "store": {"kind": "memory"}}) as orch:
        session = await orch.create_session()
        first = await session.start_task("report", idempotency_key="k")
        again = await session.start_task("report", idempotency_key="k")
        assert again.id == first.id
        try:
            await session.start_task("another report", idempotency_key="k")
        except IdempotencyKeyReusedError as exc:
            assert "different request" in str(exc)
        else:
            raise AssertionError("a reused key with another prompt was accepted")
        assert len(await session.tasks()) == 1
