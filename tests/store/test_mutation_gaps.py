"""Store behaviour that survived mutation testing (`make mutate`, docs/mutation.md):
the exact edges of pruning, reads of sessions with no events, counting, and errors that
name the operation that failed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from greenroom.errors import StoreError
from greenroom.models import Event, SessionRecord, TaskRecord, TaskStatus
from greenroom.store.sqlite import SqliteStore
from greenroom.typing import Store


def _session(sid: str) -> SessionRecord:
    return SessionRecord(sid, "echo", 1.0, {})


def _done(tid: str, sid: str, seq: int, finished_at: float) -> TaskRecord:
    return TaskRecord(
        tid,
        sid,
        "background",
        "echo",
        "p",
        TaskStatus.COMPLETED,
        1.0,
        finished_at=finished_at,
        content="ok",
        seq=seq,
    )


def _seed(store: Store, sid: str) -> None:
    """Four results (seq 1..4, finished and logged at t = 10, 20, 30, 40); ack up to 3."""
    store.commit(
        sid,
        session=_session(sid),
        tasks=[_done(f"{sid}_t{i}", sid, i, 10.0 * i) for i in range(1, 5)],
        events=[Event("task.completed", {"i": i}, i, 10.0 * i) for i in range(1, 5)],
        acked_up_to=3,
    )


def _left(store: Store, sid: str) -> tuple[list[int | None], list[int | None]]:
    snap = store.load_session(sid, recent_events=100)
    assert snap is not None
    return sorted(t.seq for t in snap.tasks), [e.seq for e in snap.recent_events]  # type: ignore[type-var]


def test_prune_takes_the_acknowledged_seq_itself_and_keeps_the_cutoff_instant(
    store: Store,
) -> None:
    _seed(store, "ses_a")
    _seed(store, "ses_b")
    # finished_before=30: strictly older only. Seq 3 is acknowledged but finished at
    # exactly 30, so it stays; seq 1 and 2 go; seq 4 was never acknowledged.
    assert store.prune(finished_before=30.0) == 8  # 2 tasks + 2 events, in each session
    assert _left(store, "ses_a") == ([3, 4], [3, 4])
    assert _left(store, "ses_b") == ([3, 4], [3, 4])
    # Later, seq 3 (== the acknowledged mark) goes too; seq 4 never does unacknowledged.
    assert store.prune(finished_before=1000.0) == 4
    assert _left(store, "ses_a") == ([4], [4])
    assert store.first_seq("ses_a") == 4
    assert store.prune(finished_before=1000.0) == 0


def test_a_session_with_no_events_has_no_first_seq_and_nothing_after(store: Store) -> None:
    assert store.count_sessions() == 0
    store.commit("ses_a", session=_session("ses_a"))
    store.commit("ses_b", session=_session("ses_b"), events=[Event("x", {}, 1, 1.0)])
    assert store.first_seq("ses_a") is None
    assert store.first_seq("ses_nobody") is None
    assert store.events_after("ses_a", 0, 10) == []
    assert [e.seq for e in store.events_after("ses_b", 0, 10)] == [1]
    assert store.events_after("ses_b", 1, 10) == []
    assert store.count_sessions() == 2


@pytest.mark.parametrize(
    ("operation", "call"),
    [
        ("check", lambda s: s.check()),
        ("load_session", lambda s: s.load_session("ses_1", recent_events=1)),
        ("events_after", lambda s: s.events_after("ses_1", 0, 10)),
        ("first_seq", lambda s: s.first_seq("ses_1")),
        ("unfinished_tasks", lambda s: s.unfinished_tasks()),
        ("prune", lambda s: s.prune(finished_before=1.0)),
        ("count_sessions", lambda s: s.count_sessions()),
    ],
)
def test_every_read_of_a_closed_sqlite_store_names_the_operation(
    tmp_path: Path, operation: str, call: object
) -> None:
    store = SqliteStore(tmp_path / "g.db")
    store.open()
    store.close()
    with pytest.raises(StoreError) as caught:
        call(store)  # type: ignore[operator]
    assert str(caught.value) == f"{operation}: the store {tmp_path / 'g.db'} is closed"


def test_a_failing_sqlite_read_names_the_operation_and_the_file(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "g.db")
    store.open()
    store.commit("ses_1", session=_session("ses_1"), events=[Event("x", {}, 1, 1.0)])
    try:
        other = sqlite3.connect(store.path)  # another client drops the table under the store
        other.execute("DROP TABLE events")
        other.commit()
        other.close()
        for operation, call in [
            ("events_after", lambda: store.events_after("ses_1", 0, 10)),
            ("first_seq", lambda: store.first_seq("ses_1")),
            ("prune", lambda: store.prune(finished_before=1.0)),
        ]:
            with pytest.raises(StoreError) as caught:
                call()
            assert str(caught.value).startswith(f"{operation} failed on {store.path}: ")
            assert "no such table: events" in str(caught.value)
    finally:
        store.close()


def test_check_leaves_the_schema_version_as_it_was(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "g.db")
    store.open()
    try:
        conn = sqlite3.connect(store.path, isolation_level=None)
        before = conn.execute("PRAGMA user_version").fetchone()[0]
        store.check()
        store.check()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == before
        conn.execute("BEGIN IMMEDIATE")  # check released its write lock
        conn.execute("ROLLBACK")
        conn.close()
    finally:
        store.close()


def test_every_field_of_a_task_an_event_and_a_session_comes_back(store: Store) -> None:
    record = SessionRecord("ses_a", "echo", 1.5, {"user": "ada", "n": 2})
    running = TaskRecord(
        "t1",
        "ses_a",
        "side",
        "echo",
        "the prompt",
        TaskStatus.RUNNING,
        2.0,
        timeout_s=30.0,
        started_at=2.5,
        request_id="req-1",
        attempt=1,
        max_attempts=3,
    )
    event = Event("task.started", {"task_id": "t1"}, 1, 2.75)
    store.commit("ses_a", session=record, tasks=[running], events=[event])
    store.commit("ses_b", session=SessionRecord("ses_b", "other", 3.0, {}))
    snap = store.load_session("ses_a", recent_events=10)
    assert snap is not None
    assert snap.tasks == [running]
    assert snap.recent_events == [event]
    assert store.events_after("ses_a", 0, 10) == [event]
    assert store.unfinished_tasks() == [running]
    assert store.list_sessions(after=None, limit=10) == [
        SessionRecord("ses_b", "other", 3.0, {}),
        record,
    ]
    assert store.list_sessions(after="ses_b", limit=10) == [record]
    assert store.load_session("ses_a", recent_events=0).recent_events == []  # type: ignore[union-attr]
