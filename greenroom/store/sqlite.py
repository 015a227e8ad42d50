"""The SQLite store (the default): WAL mode, versioned schema, group commit.

Writes go through one writer thread that owns the write connection: ``write`` only
queues (the event loop calls it) and the writer reports through a callback. It drains
whatever is queued, writes the whole batch in one transaction and commits once, then
reports to each caller — so durability costs one fsync per batch, not per write. If a
batch fails, its writes are retried one by one so a bad write cannot fail its
neighbours. Reads use a bounded pool of connections (idle ones are closed) and never
wait for the writer (WAL). Every sqlite error reaches the caller as
:class:`~greenroom.errors.StoreError`; the writer survives it, so the store works again
once the fault clears.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from greenroom.errors import StoreError
from greenroom.files import private_file
from greenroom.models import (
    ChatMessage,
    Event,
    SessionRecord,
    SessionSnapshot,
    TaskRecord,
    Write,
)
from greenroom.store.rows import TASK_COLUMNS, task_from_row, task_row
from greenroom.store.writer import GroupCommitWriter, PendingWrite

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY, agent TEXT NOT NULL, created_at REAL NOT NULL,
        metadata TEXT NOT NULL, acked_up_to INTEGER NOT NULL DEFAULT 0,
        last_seq INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, role TEXT NOT NULL,
        content TEXT NOT NULL, created_at REAL NOT NULL, turn_id TEXT, seq INTEGER);
    CREATE INDEX messages_session ON messages (session_id, id);
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY, session_id TEXT NOT NULL, kind TEXT NOT NULL,
        agent TEXT NOT NULL, prompt TEXT NOT NULL, status TEXT NOT NULL,
        created_at REAL NOT NULL, timeout_s REAL, started_at REAL, finished_at REAL,
        content TEXT, error TEXT, seq INTEGER, idempotency_key TEXT, request_id TEXT);
    CREATE INDEX tasks_session ON tasks (session_id);
    CREATE INDEX tasks_unfinished ON tasks (status) WHERE status IN ('queued', 'running');
    CREATE TABLE events (
        session_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,
        ts REAL NOT NULL, data TEXT NOT NULL, PRIMARY KEY (session_id, seq)) WITHOUT ROWID;
    """,
    # 2: retries across restarts (a queued task is queued again; a running one may run again)
    """
    ALTER TABLE tasks ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 1;
    CREATE INDEX sessions_newest ON sessions (created_at DESC, id DESC);
    """,
)


class SqliteStore(GroupCommitWriter):
    """Implements :class:`greenroom.typing.Store` on one SQLite file.

    Args:
        path: the database file (created if missing).
        synchronous: ``"NORMAL"`` (durable across process crashes in WAL mode) or
            ``"FULL"`` (across power loss too).
        busy_timeout_ms: how long a write waits for a lock held by another connection.
        read_pool_size: read connections open at most; a read beyond waits its turn.
        read_idle_s: a pooled read connection unused this long is closed.

    Attributes:
        batches: transactions the writer has committed (group commit makes this smaller
            than the number of ``commit`` calls under concurrency).
    """

    inline = False  # every read may wait on the disk: the runtime calls it off the loop

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 5000,
        read_pool_size: int = 4,
        read_idle_s: float = 30.0,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous: must be 'NORMAL' or 'FULL', got {synchronous!r}")
        if read_pool_size < 1:
            raise ValueError(f"read_pool_size: must be >= 1, got {read_pool_size}")
        super().__init__()
        self.path = Path(path)
        self.where = str(self.path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self.read_idle_s = read_idle_s
        self.batches = 0
        self._pool = _ReadPool(self._connect, read_pool_size, read_idle_s)

    # --- lifecycle --------------------------------------------------------------------

    def open(self) -> None:
        """Create or migrate the schema and start the writer thread.

        Raises:
            StoreError: the file cannot be opened, or its schema is newer than this code.
        """
        with self._errors("open"):
            if not self.path.exists():
                # SQLite gives the -wal and -shm files the database file's mode.
                private_file(self.path)
            conn = self._connect()
            try:
                self._migrate(conn)
            finally:
                conn.close()
        self._start_writer("greenroom-sqlite-writer")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path}: schema version {version} is newer than this "
                f"greenroom knows ({len(MIGRATIONS)}); upgrade greenroom"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            conn.executescript(f"BEGIN IMMEDIATE; {script} PRAGMA user_version = {number}; COMMIT;")

    def close(self) -> None:
        """Flush pending writes, stop the writer, close connections (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop_writer()
        self._pool.close()

    def read_connections(self) -> int:
        """Read connections open now (pooled or in use)."""
        return self._pool.open

    def trim_idle(self) -> int:
        """Close read connections unused for ``read_idle_s``; returns how many."""
        return self._pool.trim()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=self.busy_timeout_ms / 1000,
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        return conn

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"{operation} failed on {self.path}: {exc}") from exc

    @contextmanager
    def _reader(self, operation: str) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise StoreError(f"{operation}: the store {self.path} is closed")
        with self._errors(operation), self._pool.connection() as conn:
            yield conn

    def check(self) -> None:
        """Raise StoreError unless the database can be read and written.

        Uses a fresh connection (a pooled one may have been opened while the file was
        read-only) and really attempts a write, rolled back.
        """
        if self._closed:
            raise StoreError(f"check: the store {self.path} is closed")
        with self._errors("check"):
            conn = self._connect()
            try:
                conn.execute("SELECT count(*) FROM sessions LIMIT 1").fetchone()
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.execute(f"PRAGMA user_version = {int(version)}")
                finally:
                    conn.execute("ROLLBACK")
            finally:
                conn.close()

    # --- writes -----------------------------------------------------------------------

    def _writer_connection(self) -> sqlite3.Connection:
        return self._connect()

    def _writer_usable(self, conn: sqlite3.Connection, last_ok: bool) -> bool:
        # After a fault (read-only file, full disk) the connection may stay read-only:
        # the writer reopens it until writes work again.
        return last_ok

    def _write_batch(self, conn: sqlite3.Connection, batch: list[PendingWrite]) -> bool:
        """Write a batch; False when any write failed."""
        try:
            self._transaction(conn, batch)
        except sqlite3.Error as exc:
            if len(batch) == 1:
                batch[0].error = StoreError(f"commit failed on {self.path}: {exc}")
            else:
                for write in batch:  # one bad write must not fail its neighbours
                    try:
                        self._transaction(conn, [write])
                    except sqlite3.Error as one:
                        write.error = StoreError(f"commit failed on {self.path}: {one}")
        except Exception as exc:  # a bug must not kill the writer and hang callers
            for write in batch:
                write.error = StoreError(f"commit failed on {self.path}: {exc!r}")
        return all(write.error is None for write in batch)

    def _transaction(self, conn: sqlite3.Connection, batch: list[PendingWrite]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for write in batch:
                _apply(conn, write.write)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.batches += 1

    # --- reads ------------------------------------------------------------------------

    def load_session(self, session_id: str, *, recent_events: int) -> SessionSnapshot | None:
        """See :meth:`greenroom.typing.Store.load_session`."""
        with self._reader("load_session") as conn:
            row = conn.execute(
                "SELECT id, agent, created_at, metadata, acked_up_to, last_seq "
                "FROM sessions WHERE id = ?",
                (session_id,),
            ).fetchone()
            if row is None:
                return None
            record = SessionRecord(row[0], row[1], row[2], json.loads(row[3]))
            messages = [
                ChatMessage(*r)
                for r in conn.execute(
                    "SELECT role, content, created_at, turn_id, seq FROM messages "
                    "WHERE session_id = ? ORDER BY id",
                    (session_id,),
                )
            ]
            tasks = [
                task_from_row(r)
                for r in conn.execute(
                    f"SELECT {TASK_COLUMNS} FROM tasks WHERE session_id = ?", (session_id,)
                )
            ]
            events = [
                _event(r)
                for r in conn.execute(
                    "SELECT seq, type, ts, data FROM events WHERE session_id = ? "
                    "ORDER BY seq DESC LIMIT ?",
                    (session_id, max(recent_events, 0)),
                )
            ]
            events.reverse()
            return SessionSnapshot(record, messages, tasks, row[5], row[4], events)

    def events_after(self, session_id: str, after: int, limit: int) -> list[Event]:
        """See :meth:`greenroom.typing.Store.events_after`."""
        with self._reader("events_after") as conn:
            return [
                _event(r)
                for r in conn.execute(
                    "SELECT seq, type, ts, data FROM events WHERE session_id = ? AND seq > ? "
                    "ORDER BY seq LIMIT ?",
                    (session_id, after, limit),
                )
            ]

    def first_seq(self, session_id: str) -> int | None:
        """See :meth:`greenroom.typing.Store.first_seq`."""
        with self._reader("first_seq") as conn:
            row = conn.execute(
                "SELECT min(seq) FROM events WHERE session_id = ?", (session_id,)
            ).fetchone()
            return None if row[0] is None else int(row[0])

    def unfinished_tasks(self) -> list[TaskRecord]:
        """See :meth:`greenroom.typing.Store.unfinished_tasks`."""
        with self._reader("unfinished_tasks") as conn:
            return [
                task_from_row(r)
                for r in conn.execute(
                    f"SELECT {TASK_COLUMNS} FROM tasks WHERE status IN ('queued', 'running') "
                    "ORDER BY created_at"
                )
            ]

    def prune(self, *, finished_before: float) -> int:
        """See :meth:`greenroom.typing.Store.prune`."""
        with self._reader("prune") as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                tasks = conn.execute(
                    "DELETE FROM tasks WHERE seq IS NOT NULL AND finished_at < ? AND seq <= "
                    "(SELECT acked_up_to FROM sessions s WHERE s.id = tasks.session_id)",
                    (finished_before,),
                ).rowcount
                events = conn.execute(
                    "DELETE FROM events WHERE ts < ? AND seq <= "
                    "(SELECT acked_up_to FROM sessions s WHERE s.id = events.session_id)",
                    (finished_before,),
                ).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return int(tasks) + int(events)

    def list_sessions(self, *, after: str | None, limit: int) -> list[SessionRecord]:
        """See :meth:`greenroom.typing.Store.list_sessions`."""
        columns = "SELECT id, agent, created_at, metadata FROM sessions"
        order = "ORDER BY created_at DESC, id DESC LIMIT ?"
        with self._reader("list_sessions") as conn:
            if after is None:
                rows = conn.execute(f"{columns} {order}", (limit,)).fetchall()
            else:
                rows = conn.execute(
                    f"{columns} WHERE (created_at, id) < "
                    f"(SELECT created_at, id FROM sessions WHERE id = ?) {order}",
                    (after, limit),
                ).fetchall()
        return [SessionRecord(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def count_sessions(self) -> int:
        """See :meth:`greenroom.typing.Store.count_sessions`."""
        with self._reader("count_sessions") as conn:
            return int(conn.execute("SELECT count(*) FROM sessions").fetchone()[0])


def _apply(conn: sqlite3.Connection, write: Write) -> None:
    sid = write.session_id
    if write.session is not None:
        rec = write.session
        conn.execute(
            "INSERT OR IGNORE INTO sessions (id, agent, created_at, metadata) VALUES (?, ?, ?, ?)",
            (rec.id, rec.agent, rec.created_at, json.dumps(rec.metadata)),
        )
    conn.executemany(
        "INSERT INTO messages (session_id, role, content, created_at, turn_id, seq) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(sid, m.role, m.content, m.created_at, m.turn_id, m.seq) for m in write.messages],
    )
    conn.executemany(
        f"INSERT OR REPLACE INTO tasks ({TASK_COLUMNS}) VALUES ({', '.join('?' * 17)})",
        [task_row(t) for t in write.tasks],
    )
    conn.executemany(
        "INSERT INTO events (session_id, seq, type, ts, data) VALUES (?, ?, ?, ?, ?)",
        [(sid, e.seq, e.type, e.ts, json.dumps(e.data)) for e in write.events],
    )
    last_seq = max((e.seq or 0 for e in write.events), default=0)
    if last_seq or write.acked_up_to is not None:
        conn.execute(
            "UPDATE sessions SET last_seq = max(last_seq, ?), "
            "acked_up_to = max(acked_up_to, ?) WHERE id = ?",
            (last_seq, write.acked_up_to or 0, sid),
        )


def _event(r: Sequence[Any]) -> Event:
    return Event(type=r[1], data=json.loads(r[3]), seq=r[0], ts=r[2])


class _ReadPool:
    """At most ``size`` read connections; one idle for ``idle_s`` is closed on next use.

    Reads run on executor threads, so waiting for a free connection is fine there.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], size: int, idle_s: float) -> None:
        self._connect = connect
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[tuple[float, sqlite3.Connection]] = []  # newest last
        self._idle_s = idle_s
        self.open = 0

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        with self._slots:
            conn = self._take()
            try:
                yield conn
            finally:
                with self._lock:
                    self._idle.append((time.monotonic(), conn))

    def trim(self) -> int:
        """Close the connections idle for longer than ``idle_s``."""
        with self._lock:
            cutoff = time.monotonic() - self._idle_s
            stale = [conn for used, conn in self._idle if used < cutoff]
            self._idle = [(used, conn) for used, conn in self._idle if used >= cutoff]
            self.open -= len(stale)
        for old in stale:
            old.close()
        return len(stale)

    def _take(self) -> sqlite3.Connection:
        self.trim()
        with self._lock:
            conn = self._idle.pop()[1] if self._idle else None
            if conn is None:
                self.open += 1
        if conn is None:
            try:
                conn = self._connect()
            except BaseException:
                with self._lock:
                    self.open -= 1
                raise
        return conn

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self.open -= len(idle)
        for _, conn in idle:
            conn.close()
