"""Reading what the store holds, behind one small interface: who owns which session, and
each session's events (with their generation), tasks and last seq.

:class:`PostgresProbe` reads the cluster's tables (the schema the nodes create);
:class:`SqliteProbe` reads a single node's ``greenroom.db`` (no owners, no generations),
so the same checker runs against today's single-node greenroom.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from tests.cluster.history import StoredEvent, StoredSession
from tests.cluster.postgres import Postgres


class StoreProbe(Protocol):
    async def owners(self) -> dict[str, str | None]:
        """Session id -> the node that owns it (None: nobody)."""

    async def sessions(self, sids: Iterable[str]) -> dict[str, StoredSession]:
        """The stored state of each of ``sids`` (an empty record for an unknown one)."""


def _assemble(
    sids: Iterable[str],
    sessions: list[dict[str, Any]],
    events: list[dict[str, Any]],
    tasks: list[dict[str, Any]],
) -> dict[str, StoredSession]:
    out = {sid: StoredSession(sid) for sid in sids}
    for row in sessions:
        if row["id"] in out:
            out[row["id"]].owner = row.get("owner")
            out[row["id"]].last_seq = int(row["last_seq"])
    for row in events:
        if row["session_id"] in out:
            data = row["data"]
            event = StoredEvent(
                seq=int(row["seq"]),
                gen=None if row.get("gen") is None else int(row["gen"]),
                type=row["type"],
                data=json.loads(data) if isinstance(data, str) else data,
            )
            out[row["session_id"]].events.append(event)
    for row in tasks:
        if row["session_id"] in out:
            out[row["session_id"]].tasks[row["id"]] = row["status"]
    for stored in out.values():
        stored.events.sort(key=lambda e: e.seq)
    return out


class PostgresProbe:
    """The cluster's PostgreSQL database."""

    def __init__(self, pg: Postgres, database: str) -> None:
        self.pg = pg
        self.database = database

    async def owners(self) -> dict[str, str | None]:
        rows = await self.pg.query("SELECT id, owner FROM sessions", self.database)
        return {row["id"]: row["owner"] for row in rows}

    async def sessions(self, sids: Iterable[str]) -> dict[str, StoredSession]:
        query = self.pg.query
        db = self.database
        return _assemble(
            sids,
            await query("SELECT id, owner, last_seq FROM sessions", db),
            await query("SELECT session_id, seq, gen, type, data FROM events", db),
            await query("SELECT id, session_id, status FROM tasks", db),
        )


class SqliteProbe:
    """A single node's SQLite database, read-only (the node may still be running)."""

    def __init__(self, db_path: Path, node_id: str) -> None:
        self.db_path = db_path
        self.node_id = node_id

    def _rows(self, sql: str) -> list[dict[str, Any]]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(sql)]
        finally:
            conn.close()

    async def owners(self) -> dict[str, str | None]:
        rows = await asyncio.to_thread(self._rows, "SELECT id FROM sessions")
        return {row["id"]: self.node_id for row in rows}

    async def sessions(self, sids: Iterable[str]) -> dict[str, StoredSession]:
        def read() -> dict[str, StoredSession]:
            stored = _assemble(
                sids,
                self._rows("SELECT id, last_seq FROM sessions"),
                self._rows("SELECT session_id, seq, type, data FROM events"),
                self._rows("SELECT id, session_id, status FROM tasks"),
            )
            for session in stored.values():
                session.owner = self.node_id
            return stored

        return await asyncio.to_thread(read)
