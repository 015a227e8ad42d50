"""Reading results is never silently short: pages say there is more, and a walk gets all."""

from __future__ import annotations

import pytest

from greenroom import Orchestrator, ResultsPage

WAIT_S = 20


async def test_250_results_come_in_pages_that_say_more_follows(orch: Orchestrator) -> None:
    session = await orch.create_session()
    tasks = [await session.start_task(f"job {i}") for i in range(250)]
    for task in tasks:
        await task.wait(timeout=WAIT_S)
    page = await session.results(after=0)
    assert isinstance(page, ResultsPage)
    assert len(page) == 100 and page.has_more and page.next_after == page[-1].seq
    pages = [page]
    while page.has_more:
        page = await session.results(after=page.next_after)
        pages.append(page)
    assert [len(p) for p in pages] == [100, 100, 50]
    seen = [c.task_id for p in pages for c in p]
    assert seen == [t.id for t in tasks]
    walked = [c async for c in session.iter_results(limit=7)]
    assert [c.task_id for c in walked] == seen
    assert [c.seq for c in walked] == sorted(c.seq for c in walked)
    last = await session.results(after=walked[-1].seq)
    assert (list(last), last.next_after, last.has_more) == ([], walked[-1].seq, False)
    assert await session.ack(up_to=walked[-1].seq) == walked[-1].seq


async def test_a_page_request_out_of_range_names_the_parameter(orch: Orchestrator) -> None:
    session = await orch.create_session()
    with pytest.raises(ValueError, match="limit"):
        await session.results(limit=0)
    with pytest.raises(ValueError, match="after"):
        await session.results(after=-1)
