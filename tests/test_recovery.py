"""Durability: a process killed with SIGKILL loses nothing a client was promised."""

from __future__ import annotations

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
    for stream in (child.stdout, child.stderr):
        if stream is not None:
            stream.close()


def _settings(data_dir: Path) -> dict[str, object]:
    return {"data_dir": str(data_dir), "store": {"kind": "sqlite"}}


async def test_kill_9_loses_no_result_and_interrupts_in_flight_tasks(tmp_path: Path) -> None:
    child, before = _start_child(tmp_path)
    _kill(child)
    async with Orchestrator(_settings(tmp_path)) as orch:
        session = orch.session(str(before["session"]))
        results = await session.results(after=0)
        by_task = {r.task_id: r for r in results}
        assert len(by_task) == len(results) == 7  # none lost, none duplicated
        for task_id in before["done"]:  # type: ignore[attr-defined]
            assert by_task[task_id].status is TaskStatus.COMPLETED
        for task_id in before["inflight"]:  # type: ignore[attr-defined]
            assert by_task[task_id].status is TaskStatus.INTERRUPTED
            assert by_task[task_id].error is not None
        assert [r.seq for r in results] == sorted(r.seq for r in results)
        transcript = await session.messages()
        assert [(m["role"], m["content"]) for m in transcript] == [
            ("user", "remember this"),
            ("assistant", before["turn"]),
        ]
        # A retried Idempotency-Key after the restart returns the original task.
        again = await session.start_task("stuck 0", idempotency_key="stuck-0")
        assert again.id == before["inflight"][0]  # type: ignore[index]
        statuses = {t["id"]: t["status"] for t in await session.tasks()}
        assert len(statuses) == 7
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
