"""A database written by an older greenroom opens, migrates, and keeps its promises."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from greenroom import Orchestrator, TaskStatus
from greenroom.store.sqlite import MIGRATIONS, SqliteStore


def version_1_database(path: Path) -> None:
    """Schema 1 (before task attempts), with a session and a task it left running."""
    conn = sqlite3.connect(path)
    conn.executescript(f"BEGIN; {MIGRATIONS[0]} PRAGMA user_version = 1; COMMIT;")
    conn.execute(
        "INSERT INTO sessions (id, agent, created_at, metadata) VALUES ('ses_old', 'echo', 1, '{}')"
    )
    conn.execute(
        "INSERT INTO tasks (id, session_id, kind, agent, prompt, status, created_at) "
        "VALUES ('tsk_old', 'ses_old', 'background', 'echo', 'p', 'running', 1)"
    )
    conn.commit()
    conn.close()


def test_a_version_1_database_is_migrated_in_place(tmp_path: Path) -> None:
    db = tmp_path / "greenroom.db"
    version_1_database(db)
    store = SqliteStore(db)
    store.open()
    try:
        snapshot = store.load_session("ses_old", recent_events=10)
        assert snapshot is not None
        (task,) = snapshot.tasks
        assert (task.status, task.attempt, task.max_attempts) == (TaskStatus.RUNNING, 0, 1)
    finally:
        store.close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    conn.close()


async def test_a_task_an_old_version_left_running_is_interrupted_once(tmp_path: Path) -> None:
    await asyncio.to_thread(version_1_database, tmp_path / "greenroom.db")
    config = {"data_dir": str(tmp_path), "store": {"kind": "sqlite"}}
    async with Orchestrator(config) as orch:
        results = await orch.session("ses_old").results(wait=10)
    assert [(r.task_id, r.status) for r in results] == [("tsk_old", TaskStatus.INTERRUPTED)]
