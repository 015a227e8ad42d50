"""Subscribers get every stored event after their resume point; a gap names exactly what
retention pruned."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from greenroom import Orchestrator
from greenroom.errors import ResumeBeyondLastSeqError
from tests.conftest import make_settings

WAIT_S = 10


async def test_a_gap_names_exactly_the_pruned_events_and_the_rest_follow(tmp_path: Path) -> None:
    async with Orchestrator(make_settings(tmp_path, replay_events=4)) as orch:
        session = await orch.create_session()
        for i in range(6):  # 18 events
            await (await session.start_task(f"job {i}")).wait(timeout=WAIT_S)
        await session.ack(up_to=9)
        removed = orch.runtime.store.prune(finished_before=time.time() + 60)
        assert removed > 0
        feed = await session.subscribe(after=2)
        first = await feed.get()
        assert first.type == "stream.gap"
        assert (first.data["missing_from"], first.data["missing_to"]) == (3, 9)
        assert first.data["first_available"] == 10
        rest = [await feed.get() for _ in range(9)]
        assert [e.seq for e in rest] == list(range(10, 19))
        live = await session.start_task("live")
        after_live = [await feed.get() for _ in range(3)]
        assert [e.seq for e in after_live] == [19, 20, 21]
        assert after_live[0].data["task"]["id"] == live.id
        feed.close()
        page = await session.events(after=0, limit=1000)
        assert page.events[0].type == "stream.gap" and page.events[0].data["missing_to"] == 9
        assert page.next_after == 21 and not page.has_more
        with pytest.raises(ResumeBeyondLastSeqError):
            await session.subscribe(after=22)
