"""The writer thread both SQL stores use: a queue, group commit, one report per write.

``write`` only queues (the event loop calls it). The thread takes whatever is queued —
up to ``BATCH_MAX`` writes — and hands the batch to the store's ``_write_batch``, which
writes it in one transaction (one fsync for SQLite, one round trip for PostgreSQL) and
sets each write's error. Every caller then hears its own outcome through ``done``.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from greenroom.errors import StoreError
from greenroom.models import ChatMessage, Event, SessionRecord, TaskRecord, Write

BATCH_MAX = 512


@dataclass(slots=True)
class PendingWrite:
    """A queued write and whom to tell; ``error`` is set by a failed ``_write_batch``."""

    write: Write
    done: Callable[[BaseException | None], None]
    error: StoreError | None = None


class GroupCommitWriter:
    """Base of a store whose writes go through one thread with its own connection.

    A subclass sets ``where`` (the store, for messages) and implements
    ``_writer_connection`` (open one), ``_writer_usable`` (may this connection take the
    next batch, given whether the last one went through) and ``_write_batch``.
    """

    where: str

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[PendingWrite | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._closed = False

    # --- the subclass's part ----------------------------------------------------------

    def _writer_connection(self) -> Any:
        raise NotImplementedError

    def _writer_usable(self, conn: Any, last_ok: bool) -> bool:
        raise NotImplementedError

    def _write_batch(self, conn: Any, batch: list[PendingWrite]) -> bool:
        """Write the batch, set each failed write's ``error``; False if any failed."""
        raise NotImplementedError

    # --- lifecycle --------------------------------------------------------------------

    def _start_writer(self, name: str) -> None:
        self._writer = threading.Thread(target=self._write_loop, name=name)
        self._writer.start()

    def _stop_writer(self) -> None:
        """Let the writer finish what is queued, then end it."""
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()

    # --- the Store protocol's writes --------------------------------------------------

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
        finished = threading.Event()
        errors: list[BaseException] = []

        def done(error: BaseException | None) -> None:
            if error is not None:
                errors.append(error)
            finished.set()

        write = Write(
            session_id, session, tuple(messages), tuple(tasks), tuple(events), acked_up_to
        )
        self.write(write, done)
        finished.wait()
        if errors:
            raise errors[0]

    def write(self, write: Write, done: Callable[[BaseException | None], None]) -> None:
        """See :meth:`greenroom.typing.Store.write`: queues for the writer thread.

        Raises:
            StoreError: the store is not open (nothing was queued).
        """
        if self._closed or self._writer is None:
            raise StoreError(f"write: the store {self.where} is not open")
        self._queue.put(PendingWrite(write, done))

    # --- the thread -------------------------------------------------------------------

    def _write_loop(self) -> None:
        conn: Any = None
        ok = True
        try:
            while True:
                batch, stop = self._next_batch()
                if not batch:
                    return
                if conn is not None and not self._writer_usable(conn, ok):
                    # After a fault the connection may be stuck (read-only, broken):
                    # reopen it before the next batch, so writes work once it clears.
                    with contextlib.suppress(Exception):
                        conn.close()
                    conn = None
                if conn is None:
                    try:
                        conn = self._writer_connection()
                    except Exception as exc:
                        ok = False
                        for pending in batch:
                            pending.error = StoreError(f"commit failed on {self.where}: {exc}")
                        _tell(batch)
                        if stop:
                            return
                        continue
                ok = self._write_batch(conn, batch)
                _tell(batch)
                if stop:
                    return
        finally:
            if conn is not None:
                conn.close()

    def _next_batch(self) -> tuple[list[PendingWrite], bool]:
        """What is queued (waiting for the first), and whether close() came after it."""
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < BATCH_MAX:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                return batch, True
            batch.append(nxt)
        return batch, False


def _tell(batch: list[PendingWrite]) -> None:
    for pending in batch:
        with contextlib.suppress(Exception):  # a caller's callback must not kill the writer
            pending.done(pending.error)
