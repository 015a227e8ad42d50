"""GET /v1/sessions: newest first, paged with a cursor, never silently short."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenroom import Orchestrator
from tests.http.conftest import Client, new_session


async def test_sessions_are_listed_newest_first_in_pages(client: Client) -> None:
    made = [await new_session(client, metadata={"n": i}) for i in range(7)]
    seen: list[str] = []
    after = ""
    pages = 0
    while True:
        response = await client.get(f"/v1/sessions?limit=3&after={after}")
        assert response.status == 200
        page = await response.json()
        seen += [s["id"] for s in page["sessions"]]
        pages += 1
        if not page["has_more"]:
            break
        after = page["next_after"]
    assert pages == 3
    assert seen == made[::-1]


async def test_a_bad_page_request_is_a_400(client: Client) -> None:
    for query in ("limit=0", "limit=1001", "limit=x", "after=" + "x" * 201):
        response = await client.get(f"/v1/sessions?{query}")
        assert response.status == 400, query


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_both_stores_page_the_same_way(tmp_path: Path, kind: str) -> None:
    config = {"data_dir": str(tmp_path), "store": {"kind": kind}}
    async with Orchestrator(config) as orch:
        made = [(await orch.create_session()).id for _ in range(5)]
        first = await orch.sessions(limit=2)
        assert [s.id for s in first.sessions] == made[::-1][:2] and first.has_more
        rest = await orch.sessions(after=first.next_after, limit=10)
        assert [s.id for s in rest.sessions] == made[::-1][2:] and not rest.has_more
        unknown = await orch.sessions(after="ses_nobody")
        assert (unknown.sessions, unknown.has_more) == ((), False)
