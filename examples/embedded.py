"""greenroom embedded, end to end: a session, a turn, background work, results.

Run it with ``.venv/bin/python examples/embedded.py`` (``make test`` runs it too).
Uses the memory store and a small Python agent, so it needs no key and leaves no files.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import greenroom


async def shouty(history: greenroom.History) -> AsyncIterator[str]:
    """A tiny streaming agent: the last message, upper-cased, word by word."""
    for word in history[-1]["content"].split():
        await asyncio.sleep(0.01)
        yield word.upper() + " "


async def slow_summary(history: greenroom.History) -> str:
    """A 'long job': counts what it was given."""
    await asyncio.sleep(0.2)
    return f"{len(history)} message(s) seen; last was {history[-1]['content']!r}"


async def main() -> None:
    config = {"store": {"kind": "memory"}, "logging": {"level": "warning"}}
    async with greenroom.Orchestrator(config=config) as orch:
        orch.register_agent("shouty", shouty)
        orch.register_agent("summary", slow_summary)
        session = await orch.create_session(agent="shouty")

        print("turn:", "".join([chunk async for chunk in session.send("hello from greenroom")]))

        job = await session.start_task("summarise the quarter", kind="background", agent="summary")
        side = await session.start_task("what did I just say?", kind="side", agent="summary")
        print("started", job.id, "and", side.id, "- the conversation can go on meanwhile")
        print("turn:", "".join([chunk async for chunk in session.send("still here")]))

        side_done = await side.wait(timeout=30)
        print("side question answered:", side_done.content)
        job_done = await job.wait(timeout=30)
        print("background job", job_done.status.value, "->", job_done.content)

        results = await session.results(after=0)
        for result in results:
            print(f"result seq={result.seq} task={result.task_id} status={result.status.value}")
        await session.ack(up_to=results[-1].seq)
        print("all results acknowledged up to", results[-1].seq)


if __name__ == "__main__":
    asyncio.run(main())
