"""The memory store: dicts behind a lock. For tests and ephemeral use; nothing survives
the process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from greenroom.errors import StoreError
from greenroom.models import ChatMessage, Event, SessionRecord, SessionSnapshot, TaskRecord, Write


@dataclass(slots=True)
class _Session:
    record: SessionRecord
    messages: list[ChatMessage] = field(default_factory=list)
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    acked_up_to: int = 0
    last_seq: int = 0


class MemoryStore:
    """Implements :class:`greenroom.typing.Store` in memory; thread-safe.

    Records are copied on the way in and out, so a caller mutating a ``TaskRecord``
    after ``commit`` cannot change what is stored. Every call is fast and never waits
    on I/O, so the runtime calls it on the event loop (``inline``).
    """

    inline = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}

    def open(self) -> None:
        """Nothing to create."""

    def close(self) -> None:
        """Nothing to flush; the data stays for a later ``open`` in this process."""

    def check(self) -> None:
        """Always available."""

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
        """See :meth:`greenroom.typing.Store.commit`.

        Raises:
            StoreError: the session does not exist and ``session`` was not given.
        """
        with self._lock:
            if session is not None and session_id not in self._sessions:
                self._sessions[session_id] = _Session(replace(session))
            stored = self._sessions.get(session_id)
            if stored is None:
                raise StoreError(f"commit for unknown session {session_id!r}")
            stored.messages.extend(messages)
            for task in tasks:
                stored.tasks[task.id] = task.evolve()
            for event in events:
                stored.events.append(event)
                stored.last_seq = max(stored.last_seq, event.seq or 0)
            if acked_up_to is not None:
                stored.acked_up_to = max(stored.acked_up_to, acked_up_to)

    def write(self, write: Write, done: Callable[[BaseException | None], None]) -> None:
        """See :meth:`greenroom.typing.Store.write`; ``done`` is called before returning."""
        try:
            self.commit(
                write.session_id,
                session=write.session,
                messages=write.messages,
                tasks=write.tasks,
                events=write.events,
                acked_up_to=write.acked_up_to,
            )
        except StoreError as exc:
            done(exc)
        else:
            done(None)

    def load_session(self, session_id: str, *, recent_events: int) -> SessionSnapshot | None:
        """See :meth:`greenroom.typing.Store.load_session`."""
        with self._lock:
            stored = self._sessions.get(session_id)
            if stored is None:
                return None
            recent = stored.events[-recent_events:] if recent_events > 0 else []
            return SessionSnapshot(
                session=replace(stored.record),
                messages=list(stored.messages),
                tasks=[t.evolve() for t in stored.tasks.values()],
                last_seq=stored.last_seq,
                acked_up_to=stored.acked_up_to,
                recent_events=list(recent),
            )

    def events_after(self, session_id: str, after: int, limit: int) -> list[Event]:
        """See :meth:`greenroom.typing.Store.events_after`."""
        with self._lock:
            stored = self._sessions.get(session_id)
            if stored is None:
                return []
            return [e for e in stored.events if (e.seq or 0) > after][:limit]

    def first_seq(self, session_id: str) -> int | None:
        """See :meth:`greenroom.typing.Store.first_seq`."""
        with self._lock:
            stored = self._sessions.get(session_id)
            if stored is None or not stored.events:
                return None
            return stored.events[0].seq

    def unfinished_tasks(self) -> list[TaskRecord]:
        """See :meth:`greenroom.typing.Store.unfinished_tasks`."""
        with self._lock:
            return [
                t.evolve()
                for s in self._sessions.values()
                for t in s.tasks.values()
                if not t.status.terminal
            ]

    def prune(self, *, finished_before: float) -> int:
        """See :meth:`greenroom.typing.Store.prune`."""
        removed = 0
        with self._lock:
            for stored in self._sessions.values():
                mark = stored.acked_up_to
                old = [
                    t.id
                    for t in stored.tasks.values()
                    if t.status.terminal
                    and t.seq is not None
                    and t.seq <= mark
                    and (t.finished_at or 0) < finished_before
                ]
                for task_id in old:
                    del stored.tasks[task_id]
                kept = [
                    e
                    for e in stored.events
                    if not ((e.seq or 0) <= mark and e.ts < finished_before)
                ]
                removed += len(old) + len(stored.events) - len(kept)
                stored.events = kept
        return removed

    def list_sessions(self, *, after: str | None, limit: int) -> list[SessionRecord]:
        """See :meth:`greenroom.typing.Store.list_sessions`."""
        with self._lock:
            records = sorted(
                (s.record for s in self._sessions.values()),
                key=lambda r: (r.created_at, r.id),
                reverse=True,
            )
        start = 0
        if after is not None:
            ids = [r.id for r in records]
            if after not in ids:
                return []
            start = ids.index(after) + 1
        return [replace(r) for r in records[start : start + limit]]

    def count_sessions(self) -> int:
        """See :meth:`greenroom.typing.Store.count_sessions`."""
        with self._lock:
            return len(self._sessions)
