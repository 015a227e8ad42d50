"""A store fault while a session is being activated loses nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from greenroom import Orchestrator, TaskStatus
from greenroom.errors import StoreError
from greenroom.models import SessionRecord, SessionSnapshot, TaskRecord
from greenroom.store.sqlite import SqliteStore
from tests.conftest import make_settings

WAIT_S = 10


class FlakyLoads(SqliteStore):
    """A real SQLite store whose first ``failures`` session loads fail (a locked disk)."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures
        self.loads = 0

    def load_session(self, session_id: str, *, recent_events: int) -> SessionSnapshot | None:
        self.loads += 1
        if self.loads <= self.failures:
            raise StoreError("database is locked (injected)")
        return super().load_session(session_id, recent_events=recent_events)


def left_by_a_crash(db: Path) -> None:
    """What a crashed process left: a session with a running task."""
    earlier = SqliteStore(db)
    earlier.open()
    earlier.commit("ses_1", session=SessionRecord("ses_1", "echo", 1.0, {}))
    running = TaskRecord("tsk_1", "ses_1", "background", "echo", "p", TaskStatus.RUNNING, 1.0)
    earlier.commit("ses_1", tasks=[running])
    earlier.close()


async def test_a_completion_for_a_session_that_fails_to_load_is_recorded_once_it_loads(
    tmp_path: Path,
) -> None:
    db = tmp_path / "greenroom.db"
    await asyncio.to_thread(left_by_a_crash, db)

    store = FlakyLoads(db, failures=2)
    async with Orchestrator(make_settings(tmp_path), store=store) as orch:
        # Recovery routes the task's `interrupted` completion to ses_1, whose first
        # activations fail: the completion must come back until one succeeds.
        session = orch.session("ses_1")
        refused, results = 0, []
        deadline = time.monotonic() + WAIT_S
        while not results and time.monotonic() < deadline:
            try:  # a read that meets a failed activation gets its StoreError
                results = await session.results(wait=WAIT_S)
            except StoreError:
                refused += 1
        again = await session.results()
    assert [(r.task_id, r.status) for r in again] == [("tsk_1", TaskStatus.INTERRUPTED)]
    assert results == again
    assert store.loads >= 3 and refused >= 1
