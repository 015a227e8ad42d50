"""The seams of greenroom: Protocols and type aliases, in one place.

* :class:`Agent` — what runs a chat history into text (echo, openai, python callables).
* :class:`Store` — where sessions, transcripts, tasks and events are kept (memory, sqlite).
* :class:`Clock` — monotonic time, so state machines can be tested without sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from greenroom.models import ChatMessage, Event, SessionRecord, SessionSnapshot, TaskRecord, Write

History = list[dict[str, str]]
"""A chat history as agents receive it: ``[{"role": "user", "content": "hi"}, ...]``."""

AgentCallable = Callable[[History], "Awaitable[str] | AsyncIterator[str] | str"]
"""A user's agent: takes the history, returns a ``str`` (or awaitable of one) or is an
async generator of ``str`` chunks."""


@dataclass(frozen=True, slots=True)
class AgentContext:
    """What an agent call knows of where it runs. Ids go into every log line it writes."""

    session_id: str
    task_id: str | None = None
    turn_id: str | None = None
    request_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def log_ids(self) -> dict[str, str]:
        """The correlation ids that apply, for structlog ``bind``."""
        ids = {
            "session_id": self.session_id,
            "task_id": self.task_id,
            "turn_id": self.turn_id,
            "request_id": self.request_id,
        }
        return {k: v for k, v in ids.items() if v is not None}


@runtime_checkable
class Agent(Protocol):
    """An agent backend. Both methods run on the shared asyncio loop.

    ``stream`` is used for foreground turns: chunks reach the user as they come, so it
    may retry only before its first chunk. ``complete`` is used for background tasks:
    its output reaches no one before the completion, so it may retry a stream that broke
    half-way, within its retry budget.
    """

    name: str

    def stream(self, history: History, ctx: AgentContext) -> AsyncIterator[str]:
        """Yield the answer in chunks.

        Raises:
            AgentError: the call failed (after whatever retries the agent does).
        """
        ...

    async def complete(self, history: History, ctx: AgentContext) -> str:
        """Return the whole answer.

        Raises:
            AgentError: the call failed (after whatever retries the agent does).
        """
        ...

    async def aclose(self) -> None:
        """Release connections and other resources."""
        ...


@runtime_checkable
class Store(Protocol):
    """Persistence for sessions.

    The runtime calls ``write`` from the event loop, so it must not wait: it queues the
    write and reports through ``done``. Every other method may block and is called off
    the loop, unless ``inline`` is true (an in-memory store whose every call is fast).
    Every method may raise :class:`greenroom.errors.StoreError` when the storage fails;
    a failed ``commit`` or ``write`` has written nothing.
    """

    inline: bool
    """True when every method is fast and never waits on I/O (the memory store)."""

    def open(self) -> None:
        """Create or migrate the schema; called once before any other method."""
        ...

    def close(self) -> None:
        """Flush pending writes and release the storage."""
        ...

    def check(self) -> None:
        """Raise ``StoreError`` unless the store can be read and written."""
        ...

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
        """Write all of these for one session atomically and durably, then return.

        ``session`` inserts the session record (first commit only). ``messages`` are
        appended to the transcript. ``tasks`` are inserted or replaced whole by id.
        ``events`` (each with a ``seq``) are appended to the session's event log.
        ``acked_up_to`` raises the session's acknowledgement mark (never lowers it).
        """
        ...

    def write(self, write: Write, done: Callable[[BaseException | None], None]) -> None:
        """Apply ``write`` atomically and durably, without waiting for it.

        ``done(None)`` once it is durable, or ``done(error)`` when it failed and nothing
        of it was written; ``done`` may run on any thread. Must not block the caller.
        """
        ...

    def load_session(self, session_id: str, *, recent_events: int) -> SessionSnapshot | None:
        """Everything needed to re-activate a session, or None if it does not exist.

        ``tasks`` holds every task still kept (running ones and finished ones not yet
        pruned). ``recent_events`` bounds how many of the newest events come along.
        """
        ...

    def events_after(self, session_id: str, after: int, limit: int) -> list[Event]:
        """Stored events of the session with ``seq > after``, oldest first, at most ``limit``."""
        ...

    def first_seq(self, session_id: str) -> int | None:
        """The smallest event seq still stored for the session (None when none)."""
        ...

    def unfinished_tasks(self) -> list[TaskRecord]:
        """Every task stored as queued or running (for recovery at start-up)."""
        ...

    def prune(self, *, finished_before: float) -> int:
        """Delete acknowledged finished tasks, and events, older than ``finished_before``.

        Only tasks whose completion seq is at or below their session's ``acked_up_to``
        are deleted; events are deleted when their seq is at or below it too.
        Returns how many rows were deleted.
        """
        ...

    def list_sessions(self, *, after: str | None, limit: int) -> list[SessionRecord]:
        """Sessions newest first (``created_at``, then id), at most ``limit``.

        ``after`` is the id of the last session of the previous page: the page starts
        after it. An unknown ``after`` gives an empty list.
        """
        ...

    def count_sessions(self) -> int:
        """How many sessions are stored."""
        ...


class Clock(Protocol):
    """Monotonic seconds, injectable for tests."""

    def __call__(self) -> float: ...
