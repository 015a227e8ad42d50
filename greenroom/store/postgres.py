"""The PostgreSQL store: several nodes share one database.

Writes go through one writer thread that owns a connection in pipeline mode: it drains
whatever is queued and sends the whole batch — ``BEGIN``, every statement, ``COMMIT`` —
without waiting between statements, so a batch costs one round trip to the server. If a
batch fails, its writes are retried one by one so a bad write cannot fail its
neighbours. Reads use a ``psycopg_pool`` pool, on executor threads.

Ownership (see ``greenroom/cluster.py``): each node renews its row in ``nodes``; the
row's ``expires_at`` is computed by the database's clock. A node claims a session by
raising the session's ``lease_gen`` (:meth:`PostgresStore.claim_and_load`), which is
allowed when nobody owns it, when it is already the owner, or when the owner's node row
has expired. Each write carries the generation it was claimed under
(``Write.fence``); ``greenroom_fence`` locks the session row and refuses the write with
:class:`~greenroom.errors.LeaseLostError` once the generation moved on, so a node that
was paused or cut off can never write again after another node took over.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from greenroom.errors import (
    LeaseLostError,
    OwnedElsewhereError,
    StoreError,
    StoreInDoubtError,
)
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

FENCE_SQLSTATE = "GR001"  # raised by greenroom_fence when the lease generation moved on
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sessions (
        id text PRIMARY KEY, agent text NOT NULL, created_at double precision NOT NULL,
        metadata jsonb NOT NULL, acked_up_to bigint NOT NULL DEFAULT 0,
        last_seq bigint NOT NULL DEFAULT 0, owner text, lease_gen bigint NOT NULL DEFAULT 0);
    CREATE INDEX sessions_newest ON sessions (created_at DESC, id DESC);
    CREATE INDEX sessions_owner ON sessions (owner) WHERE owner IS NOT NULL;
    CREATE TABLE messages (
        id bigserial PRIMARY KEY, session_id text NOT NULL, role text NOT NULL,
        content text NOT NULL, created_at double precision NOT NULL, turn_id text, seq bigint);
    CREATE INDEX messages_session ON messages (session_id, id);
    CREATE TABLE tasks (
        id text PRIMARY KEY, session_id text NOT NULL, kind text NOT NULL,
        agent text NOT NULL, prompt text NOT NULL, status text NOT NULL,
        created_at double precision NOT NULL, timeout_s double precision,
        started_at double precision, finished_at double precision, content text,
        error text, seq bigint, idempotency_key text, request_id text,
        attempt integer NOT NULL DEFAULT 0, max_attempts integer NOT NULL DEFAULT 1);
    CREATE INDEX tasks_session ON tasks (session_id);
    CREATE INDEX tasks_unfinished ON tasks (session_id) WHERE status IN ('queued', 'running');
    CREATE TABLE events (
        session_id text NOT NULL, seq bigint NOT NULL, gen bigint NOT NULL DEFAULT 0,
        type text NOT NULL, ts double precision NOT NULL, data jsonb NOT NULL,
        PRIMARY KEY (session_id, seq));
    CREATE TABLE nodes (
        id text PRIMARY KEY, url text NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now(), expires_at timestamptz NOT NULL);
    CREATE FUNCTION greenroom_fence(p_sid text, p_gen bigint) RETURNS void
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM 1 FROM sessions WHERE id = p_sid AND lease_gen = p_gen FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'lease of session % lost: generation % is no longer current',
                p_sid, p_gen USING ERRCODE = 'GR001';
        END IF;
    END $$;
    """,
)
_TASK_UPSERT = (
    f"INSERT INTO tasks ({TASK_COLUMNS}) VALUES ({', '.join(['%s'] * 17)}) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in TASK_COLUMNS.split(", ")[1:])
)
_LIVE_NODE = "SELECT 1 FROM nodes n WHERE n.id = {col} AND n.expires_at > now()"


class PostgresStore(GroupCommitWriter):
    """Implements :class:`greenroom.typing.Store` on a PostgreSQL database.

    Args:
        dsn: a libpq connection string, ``postgresql://user@host:port/db``.
        pool_size: read connections at most (the writer has one more of its own).
        connect_timeout_s: how long opening a connection may take.

    Attributes:
        batches: transactions the writer has committed.
    """

    inline = False

    def __init__(self, dsn: str, *, pool_size: int = 4, connect_timeout_s: float = 5.0) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size: must be >= 1, got {pool_size}")
        super().__init__()
        self.dsn = dsn
        self.where = _redact(dsn)
        self.connect_timeout_s = connect_timeout_s
        self.batches = 0
        self._lease_conn: psycopg.Connection[Any] | None = None
        self._lease_lock = threading.Lock()
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            open=False,
            kwargs={
                "autocommit": True,
                "connect_timeout": int(max(1, connect_timeout_s)),
                "application_name": "greenroom-read",
            },
            check=ConnectionPool.check_connection,
            name="greenroom-read",
        )

    # --- lifecycle --------------------------------------------------------------------

    def open(self) -> None:
        """Create or migrate the schema, open the pool, start the writer.

        Raises:
            StoreError: the database cannot be reached, or its schema is newer than this code.
        """
        with self._errors("open"), self._connect("greenroom-migrate") as conn:
            self._migrate(conn)
        with self._errors("open"):
            self._pool.open(wait=True, timeout=self.connect_timeout_s)
        self._start_writer("greenroom-pg-writer")

    def _connect(self, name: str = "greenroom-writer") -> psycopg.Connection[Any]:
        """A connection of our own; ``name`` shows in ``pg_stat_activity``."""
        return psycopg.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=int(max(1, self.connect_timeout_s)),
            application_name=name,
        )

    @contextmanager
    def _membership(self, operation: str) -> Iterator[psycopg.Connection[Any]]:
        """The lease's own connection: a renewal never waits behind reads for a pooled
        one (a node that cannot renew in time stops serving)."""
        if self._closed:
            raise StoreError(f"{operation}: the store {self.where} is closed")
        with self._errors(operation), self._lease_lock:
            conn = self._lease_conn
            if conn is None or conn.closed or conn.broken:
                conn = self._lease_conn = self._connect("greenroom-lease")
            yield conn

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            # Nodes starting together migrate one at a time.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('greenroom_schema'))")
            conn.execute("CREATE TABLE IF NOT EXISTS greenroom_schema (version integer NOT NULL)")
            row = conn.execute("SELECT max(version) FROM greenroom_schema").fetchone()
            version = int(row[0] or 0) if row else 0
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"{self.where}: schema version {version} is newer than this greenroom "
                    f"knows ({len(MIGRATIONS)}); upgrade greenroom"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                conn.execute(script)
                conn.execute("INSERT INTO greenroom_schema (version) VALUES (%s)", (number,))

    def close(self) -> None:
        """Flush pending writes, stop the writer, close the pool (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop_writer()
        self._pool.close()
        with self._lease_lock:
            if self._lease_conn is not None:
                self._lease_conn.close()

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            raise StoreError(f"{operation} failed on {self.where}: {_first_line(exc)}") from exc
        except TimeoutError as exc:  # the pool had no connection in time
            raise StoreError(f"{operation} failed on {self.where}: {exc}") from exc

    @contextmanager
    def _reader(self, operation: str) -> Iterator[psycopg.Connection[Any]]:
        if self._closed:
            raise StoreError(f"{operation}: the store {self.where} is closed")
        with self._errors(operation), self._pool.connection(timeout=30.0) as conn:
            yield conn

    def check(self) -> None:
        """Raise StoreError unless the database answers a read and a (rolled back) write."""
        with self._reader("check") as conn:
            conn.execute("SELECT count(*) FROM greenroom_schema").fetchone()
            with contextlib.suppress(_Rollback), conn.transaction():
                conn.execute("UPDATE greenroom_schema SET version = version")
                raise _Rollback

    # --- writes -----------------------------------------------------------------------

    def _writer_connection(self) -> psycopg.Connection[Any]:
        return self._connect()

    def _writer_usable(self, conn: psycopg.Connection[Any], last_ok: bool) -> bool:
        return not conn.closed and not conn.broken

    def _write_batch(self, conn: psycopg.Connection[Any], batch: list[PendingWrite]) -> bool:
        try:
            self._transaction(conn, batch)
        except psycopg.Error as exc:
            if len(batch) == 1 or conn.broken:
                for write in batch:
                    write.error = self._error(exc)
            else:
                for index, write in enumerate(batch):  # one bad write must not fail the rest
                    try:
                        self._transaction(conn, [write])
                    except psycopg.Error as one:
                        write.error = self._error(one)
                        if conn.broken:  # the rest were not written: say so, reload
                            for rest in batch[index + 1 :]:
                                rest.error = self._error(one)
                            break
        except Exception as exc:  # a bug must not kill the writer and hang callers
            for write in batch:
                write.error = StoreError(f"commit failed on {self.where}: {exc!r}")
        return all(write.error is None for write in batch)

    def _error(self, exc: psycopg.Error) -> StoreError:
        text = f"commit failed on {self.where}: {_first_line(exc)}"
        if exc.sqlstate == FENCE_SQLSTATE:
            return LeaseLostError(text)
        if isinstance(exc, psycopg.OperationalError) or exc.sqlstate is None:
            # The connection broke: the commit may or may not have happened.
            return StoreInDoubtError(text)
        return StoreError(text)

    def _transaction(self, conn: psycopg.Connection[Any], batch: list[PendingWrite]) -> None:
        # BEGIN, every statement and COMMIT go out together and the writer waits once,
        # at the pipeline's sync: one round trip per batch. (psycopg's transaction()
        # block would wait for BEGIN and for COMMIT separately.)
        try:
            with conn.pipeline(), conn.cursor() as cur:
                cur.execute("BEGIN")
                for write in batch:
                    _apply(cur, write.write)
                cur.execute("COMMIT")
        except BaseException:
            if not conn.broken and conn.info.transaction_status != TransactionStatus.IDLE:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
            raise
        self.batches += 1

    # --- reads ------------------------------------------------------------------------

    def load_session(self, session_id: str, *, recent_events: int) -> SessionSnapshot | None:
        """See :meth:`greenroom.typing.Store.load_session`."""
        with self._reader("load_session") as conn, conn.transaction():
            return _load(conn, session_id, recent_events)

    def claim_and_load(
        self, session_id: str, node_id: str, *, recent_events: int
    ) -> tuple[int, SessionSnapshot] | None:
        """Claim the session for ``node_id`` and load it, in one transaction.

        Returns:
            The new lease generation and the snapshot, or None if no such session.

        Raises:
            OwnedElsewhereError: another node holds a live lease on it.
            StoreError: the database failed, or ``node_id``'s own row has expired.
        """
        with self._reader("claim") as conn, conn.transaction():
            row = conn.execute(
                "UPDATE sessions s SET owner = %(node)s, lease_gen = s.lease_gen + 1 "
                "WHERE s.id = %(sid)s "
                f"AND EXISTS ({_LIVE_NODE.format(col='%(node)s')}) "
                "AND (s.owner IS NULL OR s.owner = %(node)s "
                f"OR NOT EXISTS ({_LIVE_NODE.format(col='s.owner')})) "
                "RETURNING s.lease_gen",
                {"sid": session_id, "node": node_id},
            ).fetchone()
            if row is None:
                self._not_claimed(conn, session_id, node_id)  # raises if the session exists
                return None
            snapshot = _load(conn, session_id, recent_events)
            assert snapshot is not None
            return int(row[0]), snapshot

    def _not_claimed(self, conn: psycopg.Connection[Any], session_id: str, node_id: str) -> None:
        """Say why a claim failed: owned elsewhere, or this node's lease expired."""
        row = conn.execute(
            "SELECT s.owner, n.url, "
            f"EXISTS ({_LIVE_NODE.format(col='%(node)s')}) "
            "FROM sessions s LEFT JOIN nodes n ON n.id = s.owner WHERE s.id = %(sid)s",
            {"sid": session_id, "node": node_id},
        ).fetchone()
        if row is None:
            return None
        owner, url, alive = row
        if not alive:
            raise StoreError(f"claim: this node's lease ({node_id}) has expired")
        raise OwnedElsewhereError(
            f"session {session_id!r} is live on node {owner!r}", node_id=owner, url=url or ""
        )

    def events_after(self, session_id: str, after: int, limit: int) -> list[Event]:
        """See :meth:`greenroom.typing.Store.events_after`."""
        with self._reader("events_after") as conn:
            return [
                _event(r)
                for r in conn.execute(
                    "SELECT seq, type, ts, data FROM events WHERE session_id = %s AND seq > %s "
                    "ORDER BY seq LIMIT %s",
                    (session_id, after, limit),
                )
            ]

    def first_seq(self, session_id: str) -> int | None:
        """See :meth:`greenroom.typing.Store.first_seq`."""
        with self._reader("first_seq") as conn:
            row = conn.execute(
                "SELECT min(seq) FROM events WHERE session_id = %s", (session_id,)
            ).fetchone()
            return None if row is None or row[0] is None else int(row[0])

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
        with self._reader("prune") as conn, conn.transaction():
            tasks = conn.execute(
                "DELETE FROM tasks t USING sessions s WHERE s.id = t.session_id "
                "AND t.seq IS NOT NULL AND t.finished_at < %s AND t.seq <= s.acked_up_to",
                (finished_before,),
            ).rowcount
            events = conn.execute(
                "DELETE FROM events e USING sessions s WHERE s.id = e.session_id "
                "AND e.ts < %s AND e.seq <= s.acked_up_to",
                (finished_before,),
            ).rowcount
            return int(tasks) + int(events)

    def list_sessions(self, *, after: str | None, limit: int) -> list[SessionRecord]:
        """See :meth:`greenroom.typing.Store.list_sessions`."""
        columns = "SELECT id, agent, created_at, metadata FROM sessions"
        order = "ORDER BY created_at DESC, id DESC LIMIT %s"
        with self._reader("list_sessions") as conn:
            if after is None:
                rows = conn.execute(f"{columns} {order}", (limit,)).fetchall()
            else:
                rows = conn.execute(
                    f"{columns} WHERE (created_at, id) < "
                    f"(SELECT created_at, id FROM sessions WHERE id = %s) {order}",
                    (after, limit),
                ).fetchall()
        return [SessionRecord(r[0], r[1], r[2], r[3]) for r in rows]

    def count_sessions(self) -> int:
        """See :meth:`greenroom.typing.Store.count_sessions`."""
        with self._reader("count_sessions") as conn:
            row = conn.execute("SELECT count(*) FROM sessions").fetchone()
            return int(row[0]) if row else 0

    # --- membership (greenroom/cluster.py) --------------------------------------------

    def join(self, node_id: str, url: str, lease_s: float) -> None:
        """Insert or refresh this node's row, valid for ``lease_s`` by the database clock."""
        with self._membership("join") as conn:
            conn.execute(
                "INSERT INTO nodes (id, url, started_at, expires_at) "
                "VALUES (%s, %s, now(), now() + make_interval(secs => %s)) "
                "ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, "
                "started_at = EXCLUDED.started_at, expires_at = EXCLUDED.expires_at",
                (node_id, url, lease_s),
            )

    def renew(self, node_id: str, lease_s: float) -> bool:
        """Extend this node's lease; False when it had already expired (nothing renewed)."""
        with self._membership("renew") as conn:
            cur = conn.execute(
                "UPDATE nodes SET expires_at = now() + make_interval(secs => %s) "
                "WHERE id = %s AND expires_at > now()",
                (lease_s, node_id),
            )
            return cur.rowcount == 1

    def leave(self, node_id: str) -> None:
        """End this node's lease now and give up its sessions (a clean shutdown)."""
        with self._membership("leave") as conn, conn.transaction():
            conn.execute("UPDATE sessions SET owner = NULL WHERE owner = %s", (node_id,))
            conn.execute("UPDATE nodes SET expires_at = now() WHERE id = %s", (node_id,))

    def orphaned_sessions(self, node_id: str, limit: int, *, own: bool = False) -> list[str]:
        """Sessions with queued or running tasks whose owner is gone, or nobody (and,
        with ``own``, those owned by ``node_id``: after its restart they are orphans too).

        Their tasks need a new home: the caller activates each, which claims it and
        recovers its tasks.
        """
        mine = "OR s.owner = %(node)s " if own else ""
        with self._reader("orphaned_sessions") as conn:
            rows = conn.execute(
                "SELECT DISTINCT t.session_id FROM tasks t JOIN sessions s ON s.id = t.session_id "
                "WHERE t.status IN ('queued', 'running') AND (s.owner IS NULL "
                f"{mine}OR (s.owner <> %(node)s AND NOT EXISTS "
                f"({_LIVE_NODE.format(col='s.owner')}))) LIMIT %(limit)s",
                {"node": node_id, "limit": limit},
            ).fetchall()
        return [r[0] for r in rows]

    def cluster_status(self) -> list[dict[str, Any]]:
        """Every node: id, url, alive, seconds left on its lease, sessions it owns."""
        with self._reader("cluster_status") as conn:
            rows = conn.execute(
                "SELECT n.id, n.url, n.expires_at > now(), "
                "extract(epoch FROM n.expires_at - now()), n.started_at, "
                "(SELECT count(*) FROM sessions s WHERE s.owner = n.id) "
                "FROM nodes n ORDER BY n.id"
            ).fetchall()
        return [
            {
                "node_id": r[0],
                "url": r[1],
                "alive": bool(r[2]),
                "lease_left_s": round(float(r[3]), 1),
                "started_at": r[4].isoformat(),
                "sessions": int(r[5]),
            }
            for r in rows
        ]


class _Rollback(Exception):
    pass


def _apply(cur: psycopg.Cursor[Any], write: Write) -> None:
    sid = write.session_id
    if write.fence is not None:
        cur.execute("SELECT greenroom_fence(%s, %s)", (sid, write.fence))
    if write.session is not None:
        rec = write.session
        cur.execute(
            "INSERT INTO sessions (id, agent, created_at, metadata) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (id) DO NOTHING",
            (rec.id, rec.agent, rec.created_at, Jsonb(rec.metadata)),
        )
    if write.messages:
        cur.executemany(
            "INSERT INTO messages (session_id, role, content, created_at, turn_id, seq) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [(sid, m.role, m.content, m.created_at, m.turn_id, m.seq) for m in write.messages],
        )
    if write.tasks:
        cur.executemany(_TASK_UPSERT, [task_row(t) for t in write.tasks])
    if write.events:
        gen = write.fence or 0
        cur.executemany(
            "INSERT INTO events (session_id, seq, gen, type, ts, data) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [(sid, e.seq, gen, e.type, e.ts, Jsonb(e.data)) for e in write.events],
        )
    last_seq = max((e.seq or 0 for e in write.events), default=0)
    if last_seq or write.acked_up_to is not None:
        cur.execute(
            "UPDATE sessions SET last_seq = greatest(last_seq, %s), "
            "acked_up_to = greatest(acked_up_to, %s) WHERE id = %s",
            (last_seq, write.acked_up_to or 0, sid),
        )
    if write.release and write.fence is not None:
        cur.execute(
            "UPDATE sessions SET owner = NULL WHERE id = %s AND lease_gen = %s",
            (sid, write.fence),
        )


def _load(conn: psycopg.Connection[Any], sid: str, recent_events: int) -> SessionSnapshot | None:
    row = conn.execute(
        "SELECT id, agent, created_at, metadata, acked_up_to, last_seq FROM sessions WHERE id = %s",
        (sid,),
    ).fetchone()
    if row is None:
        return None
    record = SessionRecord(row[0], row[1], row[2], row[3])
    messages = [
        ChatMessage(*r)
        for r in conn.execute(
            "SELECT role, content, created_at, turn_id, seq FROM messages "
            "WHERE session_id = %s ORDER BY id",
            (sid,),
        )
    ]
    tasks = [
        task_from_row(r)
        for r in conn.execute(f"SELECT {TASK_COLUMNS} FROM tasks WHERE session_id = %s", (sid,))
    ]
    events = [
        _event(r)
        for r in conn.execute(
            "SELECT seq, type, ts, data FROM events WHERE session_id = %s "
            "ORDER BY seq DESC LIMIT %s",
            (sid, max(recent_events, 0)),
        )
    ]
    events.reverse()
    return SessionSnapshot(record, messages, tasks, int(row[5]), int(row[4]), events)


def _event(r: Sequence[Any]) -> Event:
    return Event(type=r[1], data=r[3], seq=r[0], ts=r[2])


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _redact(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "postgresql (unparsable dsn)"
    user, host = info.get("user", ""), info.get("host", "localhost")
    return f"postgresql://{user}@{host}:{info.get('port', 5432)}/{info.get('dbname', '')}"
