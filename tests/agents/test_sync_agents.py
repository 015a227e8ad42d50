"""Synchronous agents run off the loop and never hold the program open."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from greenroom import Orchestrator, TaskStatus
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]

HANGING_SYNC_AGENT = """
import asyncio, threading, time
from greenroom import Orchestrator

running = threading.Event()

def slow(history):
    running.set()
    time.sleep(30)  # a blocking call: a sync model client, say
    return "late"

async def main():
    async with Orchestrator({"store": {"kind": "memory"}, "data_dir": DATA}) as orch:
        orch.register_agent("slow", slow)
        session = await orch.create_session(agent="slow")
        await session.start_task("x")
        assert await asyncio.to_thread(running.wait, 10)  # the agent is running
        raise SystemExit(3)  # the user's code fails

asyncio.run(main())
"""


def test_a_sync_agent_still_running_does_not_hold_the_program_open(tmp_path: Path) -> None:
    script = HANGING_SYNC_AGENT.replace("DATA", repr(str(tmp_path)))
    # The agent sleeps 30 s: a process that waited for it would hit this timeout.
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=25,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr


async def test_a_sync_agent_runs_off_the_loop_and_its_answer_arrives(tmp_path: Path) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def sync_agent(history: list[dict[str, str]]) -> str:
        seen.append(threading.get_ident())
        return "sync: " + history[-1]["content"]

    async with Orchestrator(make_settings(tmp_path)) as orch:
        orch.register_agent("sync", sync_agent)
        session = await orch.create_session(agent="sync")
        done = await (await session.start_task("hello")).wait(timeout=10)
        turn = "".join([c async for c in session.send("again")])
    assert (done.status, done.content, turn) == (TaskStatus.COMPLETED, "sync: hello", "sync: again")
    assert seen and loop_thread not in seen
