"""A child process for crash tests: puts work in flight on a SQLite data dir, reports
what it did as one JSON line, then waits to be killed with SIGKILL.

Usage: python -m tests.crash_child DATA_DIR
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading

from greenroom import Orchestrator


async def forever(history: list[dict[str, str]]) -> str:
    await asyncio.Event().wait()
    return "never"


async def main(data_dir: str) -> None:
    config = {
        "data_dir": data_dir,
        "store": {"kind": "sqlite"},
        "limits": {"max_running_tasks": 2},
        "logging": {"level": "error"},
    }
    orch = Orchestrator(config)
    await orch.start()
    orch.register_agent("forever", forever)
    session = await orch.create_session()
    turn = "".join([c async for c in session.send("remember this")])
    done = []
    for i in range(3):
        task = await session.start_task(f"done {i}", idempotency_key=f"done-{i}")
        done.append((await task.wait(timeout=30)).task_id)
    # Two run (max_running_tasks 2): "stuck 0" may run twice, "stuck 1" once. Two queue.
    inflight = [
        (
            await session.start_task(
                f"stuck {i}",
                agent="forever",
                idempotency_key=f"stuck-{i}",
                max_attempts=2 if i == 0 else 1,
            )
        ).id
        for i in range(4)
    ]
    for task_id in inflight[:2]:  # both running before the kill
        while (await session.get_task(task_id)).status != "running":
            await session.get_task(task_id, wait_s=0.05)
    print(
        json.dumps({"session": session.id, "turn": turn, "done": done, "inflight": inflight}),
        flush=True,
    )
    await asyncio.Event().wait()  # killed here, never stopped cleanly


def _exit_with_the_parent() -> None:
    """The test holds our stdin open; if it dies without killing us (a timeout, say),
    stdin reaches EOF and we go too, instead of lingering with the data dir locked."""
    sys.stdin.read()
    os._exit(0)


if __name__ == "__main__":
    threading.Thread(target=_exit_with_the_parent, daemon=True).start()
    asyncio.run(main(sys.argv[1]))
