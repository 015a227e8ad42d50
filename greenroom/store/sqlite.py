"""The SQLite store (the default): WAL mode, versioned schema, group commit.

Writes from many actor threads go through one writer thread that owns the write
connection. It drains whatever is queued, writes the whole batch in one transaction and
commits once, then wakes each caller — so durability costs one fsync per batch, not per
write. If a batch fails, its writes are retried one by one so a bad write cannot fail
its neighbours. Reads use a small pool of connections and never wait for the writer
(WAL). Every sqlite error reaches the caller as :class:`~greenroom.errors.StoreError`;
the writer survives it, so the store works again once the fault clears.
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenroom.errors import StoreError
from greenroom.models import (
    ChatMessage,
    ErrorInfo,
    Event,
    SessionRecord,
    SessionSnapshot,
    TaskRecord,
    TaskStatus,
)

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
)
_TASK_COLUMNS = (
    "id, session_id, kind, agent, prompt, status, created_at, timeout_s, "
    "started_at, finished_at, content, error, seq, idempotency_key, request_id"
)
_BATCH_MAX = 512


@dataclass(slots=True)
class _Write:
    session_id: str
    session: SessionRecord | None
    messages: Sequence[ChatMessage]
    tasks: Sequence[TaskRecord]
    events: Sequence[Event]
    acked_up_to: int | None
    done: threading.Event = field(default_factory=threading.Event)
    error: StoreError | None = None


class SqliteStore:
    """Implements :class:`greenroom.typing.Store` on one SQLite file.

    Args:
        path: the database file (created if missing).
        synchronous: ``"NORMAL"`` (durable across process crashes in WAL mode) or
            ``"FULL"`` (across power loss too).
        busy_timeout_ms: how long a write waits for a lock held by another connection.

    Attributes:
        batches: transactions the writer has committed (group commit makes this smaller
            than the number of ``commit`` calls under concurrency).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 5000,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous: must be 'NORMAL' or 'FULL', got {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self.batches = 0
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._closed = False

    # --- lifecycle --------------------------------------------------------------------

    def open(self) -> None:
        """Create or migrate the schema and start the writer thread.

        Raises:
            StoreError: the file cannot be opened, or its schema is newer than this code.
        """
        with self._errors("open"):
            conn = self._connect()
            try:
                self._migrate(conn)
            finally:
                conn.close()
        self._writer = threading.Thread(target=self._write_loop, name="greenroom-sqlite-writer")
        self._writer.start()

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
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break

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
        with self._errors(operation):
            try:
                conn = self._readers.get_nowait()
            except queue.Empty:
                conn = self._connect()
            try:
                yield conn
            finally:
                self._readers.put(conn)

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

    def commit(
        self,
        session_id: str,
        *,
        session: SessionRecord | None = None,
        messages: Sequence[ChatMessage] = (),
        tasks: Sequence[TaskRecord] = (),
        events: Sequence[Event] = (),
        acked_up_to: int | None = None,
    ) -> None:
        """See :meth:`greenroom.typing.Store.commit`; blocks until the write is durable.

        Raises:
            StoreError: the write failed (nothing of it was written) or the store is closed.
        """
        if self._closed or self._writer is None:
            raise StoreError(f"commit: the store {self.path} is not open")
        write = _Write(session_id, session, list(messages), list(tasks), list(events), acked_up_to)
        self._queue.put(write)
        write.done.wait()
        if write.error is not None:
            raise write.error

    def _write_loop(self) -> None:
        conn = self._connect()
        broken = False
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < _BATCH_MAX:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                if broken:
                    # After a fault (read-only file, full disk) the connection may be stuck
                    # read-only or broken: reopen it before each batch until writes work,
                    # so the store recovers as soon as the fault clears.
                    conn.close()
                    conn = self._connect()
                broken = not self._write_batch(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    def _write_batch(self, conn: sqlite3.Connection, batch: list[_Write]) -> bool:
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
        for write in batch:
            write.done.set()
        return all(write.error is None for write in batch)

    def _transaction(self, conn: sqlite3.Connection, batch: list[_Write]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for write in batch:
                _apply(conn, write)
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
                _task(r)
                for r in conn.execute(
                    f"SELECT {_TASK_COLUMNS} FROM tasks WHERE session_id = ?", (session_id,)
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
                _task(r)
                for r in conn.execute(
                    f"SELECT {_TASK_COLUMNS} FROM tasks WHERE status IN ('queued', 'running') "
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

    def count_sessions(self) -> int:
        """See :meth:`greenroom.typing.Store.count_sessions`."""
        with self._reader("count_sessions") as conn:
            return int(conn.execute("SELECT count(*) FROM sessions").fetchone()[0])


def _apply(conn: sqlite3.Connection, write: _Write) -> None:
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
        f"INSERT OR REPLACE INTO tasks ({_TASK_COLUMNS}) VALUES ({', '.join('?' * 15)})",
        [_task_row(t) for t in write.tasks],
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


def _task_row(t: TaskRecord) -> tuple[Any, ...]:
    error = json.dumps(t.error.to_json()) if t.error else None
    return (
        t.id,
        t.session_id,
        t.kind,
        t.agent,
        t.prompt,
        t.status.value,
        t.created_at,
        t.timeout_s,
        t.started_at,
        t.finished_at,
        t.content,
        error,
        t.seq,
        t.idempotency_key,
        t.request_id,
    )


def _task(r: Sequence[Any]) -> TaskRecord:
    return TaskRecord(
        id=r[0],
        session_id=r[1],
        kind=r[2],
        agent=r[3],
        prompt=r[4],
        status=TaskStatus(r[5]),
        created_at=r[6],
        timeout_s=r[7],
        started_at=r[8],
        finished_at=r[9],
        content=r[10],
        error=ErrorInfo.from_json(json.loads(r[11])) if r[11] else None,
        seq=r[12],
        idempotency_key=r[13],
        request_id=r[14],
    )


def _event(r: Sequence[Any]) -> Event:
    return Event(type=r[1], data=json.loads(r[3]), seq=r[0], ts=r[2])
