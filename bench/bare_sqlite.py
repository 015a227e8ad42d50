"""Bare ``sqlite3`` baselines: the rows greenroom writes, without greenroom.

:class:`GroupCommitWriter` is the minimal hand-written durable writer: the same pragmas
as greenroom's store (WAL, ``synchronous=NORMAL``, ``busy_timeout``), one writer thread
owning the connection, and group commit — it drains whatever is queued (at most
:data:`BATCH_MAX` writes), writes the batch in one ``BEGIN IMMEDIATE … COMMIT`` and then
resolves every waiting future with one wake-up of the event loop per batch.

:func:`completions` is the ``durable_completions`` baseline: for each task the three
writes greenroom's store receives (``queued``, ``started``, ``completed``: the task row
upserted, one event row inserted, the session's ``last_seq`` raised), each one queued
only once the previous one of that task is durable, every task submitted at once.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BATCH_MAX = 512  # as greenroom's store
Statement = tuple[str, tuple[Any, ...]]


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def create_schema(path: Path, scripts: Sequence[str]) -> None:
    """Create the tables. Callers pass greenroom's own migrations (same tables, same
    indexes, so the rows cost the same); this module imports nothing of greenroom, so a
    baseline process carries none of its memory."""
    conn = connect(path)
    try:
        for script in scripts:
            conn.executescript(f"BEGIN IMMEDIATE; {script} COMMIT;")
    finally:
        conn.close()


class GroupCommitWriter:
    """One writer thread; one transaction per batch of queued writes."""

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop) -> None:
        self.path = path
        self.loop = loop
        self.batches = 0
        self.writes = 0
        self._queue: queue.SimpleQueue[tuple[list[Statement], asyncio.Future[None]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="bare-sqlite-writer")
        self._thread.start()

    def write(self, statements: list[Statement]) -> asyncio.Future[None]:
        """Queue one write (its statements commit together); the future resolves once durable."""
        future = self.loop.create_future()
        self._queue.put((statements, future))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        conn = connect(self.path)
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch, stop = [first], False
                while len(batch) < BATCH_MAX:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                conn.execute("BEGIN IMMEDIATE")
                for statements, _ in batch:
                    for sql, params in statements:
                        conn.execute(sql, params)
                conn.execute("COMMIT")
                self.batches += 1
                self.writes += len(batch)
                self.loop.call_soon_threadsafe(_resolve, [future for _, future in batch])
                if stop:
                    return
        finally:
            conn.close()


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


# --- durable_completions --------------------------------------------------------------

TASK_COLUMNS = (
    "id",
    "session_id",
    "kind",
    "agent",
    "prompt",
    "status",
    "created_at",
    "timeout_s",
    "started_at",
    "finished_at",
    "content",
    "error",
    "seq",
    "idempotency_key",
    "request_id",
    "attempt",
    "max_attempts",
)
_TASK_UPSERT = (
    f"INSERT OR REPLACE INTO tasks ({', '.join(TASK_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(TASK_COLUMNS))})"
)
_EVENT_INSERT = "INSERT INTO events (session_id, seq, type, ts, data) VALUES (?, ?, ?, ?, ?)"
_LAST_SEQ = (
    "UPDATE sessions SET last_seq = max(last_seq, ?), acked_up_to = max(acked_up_to, ?) "
    "WHERE id = ?"
)


class _Task:
    __slots__ = (
        "agent",
        "attempt",
        "created_at",
        "finished_at",
        "id",
        "prompt",
        "sid",
        "started_at",
    )

    def __init__(self, sid: str, prompt: str) -> None:
        self.id = f"tsk_{uuid.uuid4().hex}"
        self.sid = sid
        self.prompt = prompt
        self.agent = "instant"
        self.created_at = time.time()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.attempt = 0

    def info(self, status: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "session_id": self.sid,
            "kind": "background",
            "agent": self.agent,
            "status": status,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "timeout_s": 600.0,
            "attempt": self.attempt,
            "max_attempts": 1,
        }

    def row(self, status: str, content: str | None, seq: int | None) -> tuple[Any, ...]:
        return (
            self.id,
            self.sid,
            "background",
            self.agent,
            self.prompt,
            status,
            self.created_at,
            600.0,
            self.started_at,
            self.finished_at,
            content,
            None,
            seq,
            None,
            None,
            self.attempt,
            1,
        )


def _step(sid: str, seq: int, kind: str, task_row: tuple[Any, ...], data: Any) -> list[Statement]:
    return [
        (_TASK_UPSERT, task_row),
        (_EVENT_INSERT, (sid, seq, kind, time.time(), json.dumps(data))),
        (_LAST_SEQ, (seq, 0, sid)),
    ]


async def _one_task(writer: GroupCommitWriter, seqs: dict[str, int], task: _Task) -> None:
    sid = task.sid
    seqs[sid] += 1
    data: dict[str, Any] = {"task": task.info("queued")}
    await writer.write(_step(sid, seqs[sid], "task.queued", task.row("queued", None, None), data))
    task.started_at = time.time()
    task.attempt = 1
    seqs[sid] += 1
    data = {"task": task.info("running")}
    await writer.write(_step(sid, seqs[sid], "task.started", task.row("running", None, None), data))
    task.finished_at = time.time()
    seqs[sid] += 1
    seq = seqs[sid]
    data = {
        "seq": seq,
        "task_id": task.id,
        "session_id": sid,
        "status": "completed",
        "content": "done",
        "error": None,
        "created_at": task.created_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
    }
    row = task.row("completed", "done", seq)
    await writer.write(_step(sid, seq, "task.completed", row, data))


async def completions(n: int, path: Path, sessions: int = 100) -> tuple[float, int]:
    """Seconds to durably record ``n`` tasks' three writes each, and the batches committed,
    into the database ``path`` (made by :func:`create_schema`)."""
    conn = connect(path)
    try:
        columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(tasks)"))
    finally:
        conn.close()
    # The schema is greenroom's: if it grew a column, this baseline must write it too.
    assert columns == TASK_COLUMNS, f"tasks columns changed: {columns}"
    writer = GroupCommitWriter(path, asyncio.get_running_loop())
    try:
        sids = [f"ses_{uuid.uuid4().hex}" for _ in range(sessions)]
        await asyncio.gather(
            *(
                writer.write(
                    [
                        (
                            "INSERT OR IGNORE INTO sessions (id, agent, created_at, metadata) "
                            "VALUES (?, ?, ?, ?)",
                            (sid, "instant", time.time(), "{}"),
                        )
                    ]
                )
                for sid in sids
            )
        )
        seqs = dict.fromkeys(sids, 0)
        batches_before = writer.batches
        started = time.perf_counter()
        await asyncio.gather(
            *(_one_task(writer, seqs, _Task(sids[i % sessions], f"t{i}")) for i in range(n))
        )
        elapsed = time.perf_counter() - started
        batches = writer.batches - batches_before
    finally:
        writer.close()
    conn = connect(path)
    try:
        done = conn.execute("SELECT count(*) FROM tasks WHERE status = 'completed'").fetchone()[0]
    finally:
        conn.close()
    assert done == n, f"{done} of {n} completions stored"
    return elapsed, batches


# --- sessions -------------------------------------------------------------------------


class _LiveSession:
    """What a hand-written server keeps per live session: its record and empty state."""

    __slots__ = ("acked_up_to", "agent", "created_at", "id", "last_seq", "messages", "metadata")

    def __init__(self, sid: str, agent: str, created_at: float) -> None:
        self.id = sid
        self.agent = agent
        self.created_at = created_at
        self.metadata: dict[str, Any] = {}
        self.messages: list[Any] = []
        self.last_seq = 0
        self.acked_up_to = 0

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "agent": self.agent,
            "created_at": self.created_at,
            "metadata": self.metadata,
            "tasks": 0,
        }


async def sessions(n: int, max_live: int, path: Path, batch: int = 500) -> float:
    """The ``sessions`` baseline: create ``n`` sessions durably (same row, group commit),
    keep at most ``max_live`` in an LRU dict, read each once; returns seconds."""
    from collections import OrderedDict

    writer = GroupCommitWriter(path, asyncio.get_running_loop())
    live: OrderedDict[str, _LiveSession] = OrderedDict()
    insert = "INSERT OR IGNORE INTO sessions (id, agent, created_at, metadata) VALUES (?, ?, ?, ?)"

    async def create() -> _LiveSession:
        session = _LiveSession(f"ses_{uuid.uuid4().hex}", "echo", time.time())
        params = (session.id, session.agent, session.created_at, json.dumps(session.metadata))
        await writer.write([(insert, params)])
        live[session.id] = session
        while len(live) > max_live:
            live.popitem(last=False)  # its row is durable: nothing to write
        return session

    try:
        started = time.perf_counter()
        for _ in range(0, n, batch):
            made = await asyncio.gather(*(create() for _ in range(batch)))
            for session in made:
                if session.id in live:
                    live.move_to_end(session.id)
                    session.info()
        return time.perf_counter() - started
    finally:
        writer.close()


def main() -> None:
    """``python -m bench.bare_sqlite sessions N MAX_LIVE DB``: one JSON line."""
    import sys

    from bench.common import ThreadSampler, peak_rss_mib

    n, max_live, path = int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    with ThreadSampler() as sampler:
        seconds = asyncio.run(sessions(n, max_live, path))
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_rss_mib(), "threads": sampler.peak}))


if __name__ == "__main__":
    main()
