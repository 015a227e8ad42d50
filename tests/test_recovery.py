"""Durability: a process killed with SIGKILL loses nothing a client was promised."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from greenroom import Orchestrator, StoreError, TaskStatus

ROOT = Path(__file__).resolve().parent.parent


def _start_child(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, object]]:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_child", str(data_dir)],
        cwd=ROOT,
        stdin=subprocess.PIPE,  # held open while this test lives; EOF ends the child
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()  # the child prints once its work is in flight
    if not line:
        child.kill()
        pytest.fail("crash child died early: " + (child.stderr.read() if child.stderr else ""))
    return child, json.loads(line)


def _kill(child: subprocess.Popen[str]) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    for stream in (child.stdin, child.stdout, child.stderr):
        if stream is not None:
            stream.close()


def _settings(data_dir: Path) -> dict[str, object]:
    return {"data_dir": str(data_dir), "store": {"kind": "sqlite"}}


async def test_kill_9_loses_no_result_and_keeps_the_queue(tmp_path: Path) -> None:
    child, before = _start_child(tmp_path)
    _kill(child)
    stuck: list[str] = before["inflight"]  # type: ignore[assignment]
    gate = asyncio.Event()

    async def forever(history: object) -> str:  # this time it can finish
        await gate.wait()
        return "finished after the restart"

    orch = Orchestrator(_settings(tmp_path))
    orch.register_agent("forever", forever)  # before start: recovery runs tasks at once
    async with orch:
        session = orch.session(str(before["session"]))
        first = await session.results(after=0)
        # Running with no attempt left: interrupted. The others are queued or running again.
        tasks = {t.id: t for t in await session.tasks()}
        assert tasks[stuck[1]].status == "interrupted"
        for task_id in (stuck[0], stuck[2], stuck[3]):
            info = await session.get_task(task_id, wait_s=0)
            assert info.status in ("queued", "running"), info
        gate.set()
        for task_id in (stuck[0], stuck[2], stuck[3]):
            done = await (await session.task(task_id)).wait(timeout=10)
            assert done.status is TaskStatus.COMPLETED
            assert done.content == "finished after the restart"
        attempts = {t.id: t.attempt for t in await session.tasks()}
        assert [attempts[t] for t in stuck] == [2, 1, 1, 1]  # "stuck 0" ran twice
        results = await session.results(after=0)
        by_task = {r.task_id: r for r in results}
        assert len(by_task) == len(results) == 7  # none lost, none duplicated
        for task_id in before["done"]:  # type: ignore[attr-defined]
            assert by_task[task_id].status is TaskStatus.COMPLETED
        assert by_task[stuck[1]].status is TaskStatus.INTERRUPTED
        assert by_task[stuck[1]].error is not None
        assert [r.task_id for r in first] == [r.task_id for r in results][: len(first)]
        assert [r.seq for r in results] == sorted(r.seq for r in results)
        transcript = await session.messages()
        assert [(m.role, m.content) for m in transcript] == [
            ("user", "remember this"),
            ("assistant", before["turn"]),
        ]
        # A retried Idempotency-Key after the restart returns the original task.
        again = await session.start_task(
            "stuck 0", agent="forever", idempotency_key="stuck-0", max_attempts=2
        )
        assert again.id == stuck[0]
    # A second restart records nothing new: each task has exactly one completion.
    async with Orchestrator(_settings(tmp_path)) as orch:
        again_results = await orch.session(str(before["session"])).results(after=0)
        assert [(r.seq, r.task_id) for r in again_results] == [(r.seq, r.task_id) for r in results]


async def test_second_process_on_the_same_data_dir_refuses_to_start(tmp_path: Path) -> None:
    child, _ = _start_child(tmp_path)
    try:
        with pytest.raises(StoreError, match="in use by another greenroom process"):
            async with Orchestrator(_settings(tmp_path)):
                pass
    finally:
        _kill(child)
