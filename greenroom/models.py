"""The records greenroom keeps: sessions, messages, tasks, events.

Plain dataclasses, no behaviour beyond conversion to JSON-able dicts. The store
persists them, the actors own them, the HTTP layer renders them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, overload

JSON = dict[str, Any]


class TaskStatus(StrEnum):
    """A task's status. The last five are terminal."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"

    @property
    def terminal(self) -> bool:
        """Whether the task has ended."""
        return self not in (TaskStatus.QUEUED, TaskStatus.RUNNING)


TERMINAL = frozenset(s for s in TaskStatus if s.terminal)
TASK_KINDS = ("background", "side")

# The types of session events. Every one but message.delta takes a sequence number.
EVENT_TASK_QUEUED = "task.queued"
EVENT_TASK_STARTED = "task.started"
EVENT_TASK_COMPLETED = "task.completed"
EVENT_MESSAGE_COMPLETED = "message.completed"
EVENT_MESSAGE_DELTA = "message.delta"


def new_id(prefix: str) -> str:
    """A fresh, URL-safe id such as ``ses_3f2a…``."""
    return f"{prefix}_{uuid.uuid4().hex}"


def now() -> float:
    """Wall-clock time in seconds since the epoch (what records store)."""
    return time.time()


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why a task did not complete: an error type and a message."""

    type: str
    message: str

    def to_json(self) -> JSON:
        return {"type": self.type, "message": self.message}

    @classmethod
    def from_json(cls, data: JSON | None) -> ErrorInfo | None:
        if data is None:
            return None
        return cls(type=str(data["type"]), message=str(data["message"]))

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        return cls(type=type(exc).__name__, message=str(exc) or type(exc).__name__)


@dataclass(slots=True)
class SessionRecord:
    """A session as stored: who it talks to and when it began."""

    id: str
    agent: str
    created_at: float
    metadata: JSON = field(default_factory=dict)

    def to_json(self) -> JSON:
        return {
            "id": self.id,
            "agent": self.agent,
            "created_at": self.created_at,
            "metadata": self.metadata,
        }


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a transcript (``greenroom.Message``)."""

    role: str  # "user" | "assistant" | "system"
    content: str
    created_at: float
    turn_id: str | None = None
    seq: int | None = None  # the message.completed event's seq, for assistant messages

    def to_json(self) -> JSON:
        return {
            "role": self.role,
            "content": self.content,
            "created_at": self.created_at,
            "turn_id": self.turn_id,
            "seq": self.seq,
        }

    def to_chat(self) -> dict[str, str]:
        """The form an agent receives: ``{"role", "content"}``."""
        return {"role": self.role, "content": self.content}


@dataclass(slots=True)
class TaskRecord:
    """A background task. Mutable while it runs; frozen in effect once terminal."""

    id: str
    session_id: str
    kind: str
    agent: str
    prompt: str
    status: TaskStatus
    created_at: float
    timeout_s: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    content: str | None = None
    error: ErrorInfo | None = None
    seq: int | None = None  # the task.completed event's seq
    idempotency_key: str | None = None
    request_id: str | None = None
    attempt: int = 0  # how many times it has started running
    max_attempts: int = 1  # a restart may run it again while attempt < max_attempts

    def evolve(self, **changes: Any) -> TaskRecord:
        """A copy with ``changes`` applied: ``dataclasses.replace``, several times faster
        (a task is copied a few times on its way through the actors and the store).

        Raises:
            AttributeError: a change names no field.
        """
        new = TaskRecord(
            self.id,
            self.session_id,
            self.kind,
            self.agent,
            self.prompt,
            self.status,
            self.created_at,
            self.timeout_s,
            self.started_at,
            self.finished_at,
            self.content,
            self.error,
            self.seq,
            self.idempotency_key,
            self.request_id,
            self.attempt,
            self.max_attempts,
        )
        for name, value in changes.items():
            setattr(new, name, value)
        return new

    def to_json(self) -> JSON:
        """The task object of the API (DESIGN.md, HTTP API)."""
        data: JSON = {
            "id": self.id,
            "session_id": self.session_id,
            "kind": self.kind,
            "agent": self.agent,
            "status": self.status.value,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "timeout_s": self.timeout_s,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
        }
        if self.status.terminal:
            data.update(
                content=self.content,
                error=self.error.to_json() if self.error else None,
                finished_at=self.finished_at,
                seq=self.seq,
            )
        return data

    def info(self) -> TaskInfo:
        """The task as the API shows it (a frozen copy)."""
        ended = self.status.terminal
        return TaskInfo(
            id=self.id,
            session_id=self.session_id,
            kind=self.kind,
            agent=self.agent,
            status=self.status,
            created_at=self.created_at,
            started_at=self.started_at,
            timeout_s=self.timeout_s,
            attempt=self.attempt,
            max_attempts=self.max_attempts,
            content=self.content if ended else None,
            error=self.error if ended else None,
            finished_at=self.finished_at if ended else None,
            seq=self.seq if ended else None,
        )

    def completion(self) -> Completion:
        """The completion of a terminal task.

        Raises:
            RuntimeError: the task has not ended.
        """
        return self.info().completion()


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A task as the API shows it: what ``tasks()``, ``get_task()``, ``cancel()`` and
    ``Task.info`` return. ``content``, ``error``, ``finished_at`` and ``seq`` are set
    once it has ended."""

    id: str
    session_id: str
    kind: str
    agent: str
    status: TaskStatus
    created_at: float
    started_at: float | None
    timeout_s: float | None
    attempt: int
    max_attempts: int
    content: str | None = None
    error: ErrorInfo | None = None
    finished_at: float | None = None
    seq: int | None = None

    @property
    def ended(self) -> bool:
        """Whether the task is in a terminal status."""
        return self.status.terminal

    def completion(self) -> Completion:
        """The completion of an ended task.

        Raises:
            RuntimeError: the task has not ended.
        """
        if not self.ended or self.seq is None or self.finished_at is None:
            raise RuntimeError(f"task {self.id} has not ended")
        return Completion(
            seq=self.seq,
            task_id=self.id,
            session_id=self.session_id,
            status=self.status,
            content=self.content,
            error=self.error,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
        )


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A session as the API shows it: what ``Session.info()`` returns."""

    id: str
    agent: str
    created_at: float
    metadata: JSON
    task_counts: dict[str, int]
    last_seq: int
    acked_up_to: int
    turn_running: bool
    messages: int

    @classmethod
    def new(cls, record: SessionRecord) -> SessionInfo:
        """A session just created: nothing has happened in it yet."""
        return cls(
            id=record.id,
            agent=record.agent,
            created_at=record.created_at,
            metadata=dict(record.metadata),
            task_counts={},
            last_seq=0,
            acked_up_to=0,
            turn_running=False,
            messages=0,
        )


@dataclass(frozen=True, slots=True)
class Completion:
    """The one completion every task produces, as its parent session recorded it."""

    seq: int
    task_id: str
    session_id: str
    status: TaskStatus
    content: str | None
    error: ErrorInfo | None
    created_at: float
    started_at: float | None
    finished_at: float

    def to_json(self) -> JSON:
        """The result object of the API."""
        return {
            "seq": self.seq,
            "task_id": self.task_id,
            "session_id": self.session_id,
            "status": self.status.value,
            "content": self.content,
            "error": self.error.to_json() if self.error else None,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True, slots=True)
class ResultsPage(Sequence[Completion]):
    """One page of a session's results, oldest first; a sequence of :class:`Completion`.

    Never silently short: ``has_more`` says whether results follow, and reading on from
    ``next_after`` (``session.results(after=page.next_after)``) gets them.
    """

    results: tuple[Completion, ...]
    next_after: int  # the last seq on this page, or the ``after`` asked for when empty
    has_more: bool

    def __len__(self) -> int:
        return len(self.results)

    @overload
    def __getitem__(self, index: int) -> Completion: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Completion]: ...

    def __getitem__(self, index: int | slice) -> Completion | Sequence[Completion]:
        return self.results[index]


@dataclass(frozen=True, slots=True)
class SessionsPage:
    """Sessions newest first, one page; read on with ``after=next_after`` while
    ``has_more``."""

    sessions: tuple[SessionRecord, ...]
    next_after: str | None  # the id of this page's last session
    has_more: bool


@dataclass(frozen=True, slots=True)
class EventsPage:
    """Stored events of a session after a seq, oldest first, at most a page of them.

    A ``stream.gap`` event first names exactly the seqs that were pruned (retention).
    Read on from ``next_after`` while ``has_more``.
    """

    events: tuple[Event, ...]
    next_after: int
    has_more: bool


@dataclass(frozen=True, slots=True)
class Event:
    """A session event. ``seq`` is None only for ephemeral ``message.delta`` events."""

    type: str
    data: JSON
    seq: int | None = None
    ts: float = field(default_factory=now)

    def to_json(self) -> JSON:
        return {"seq": self.seq, "type": self.type, "ts": self.ts, "data": self.data}


@dataclass(slots=True)
class SessionSnapshot:
    """Everything needed to re-activate a session actor from the store."""

    session: SessionRecord
    messages: list[ChatMessage]
    tasks: list[TaskRecord]
    last_seq: int
    acked_up_to: int
    recent_events: list[Event]  # the newest events, oldest first, for SSE replay


@dataclass(frozen=True, slots=True)
class Write:
    """One atomic write of a session's state, as a store applies it.

    ``session`` inserts the session record (first write only). ``messages`` are
    appended to the transcript. ``tasks`` are inserted or replaced whole by id.
    ``events`` (each with a ``seq``) are appended to the session's event log.
    ``acked_up_to`` raises the session's acknowledgement mark (never lowers it).

    With several nodes (the PostgreSQL store), ``fence`` is the generation of the
    session's lease its writer holds: the store refuses the write if another claim has
    moved the generation on since (``LeaseLostError``). ``release`` gives the lease up
    (the session was passivated). Single-node stores ignore both.
    """

    session_id: str
    session: SessionRecord | None = None
    messages: tuple[ChatMessage, ...] = ()
    tasks: tuple[TaskRecord, ...] = ()
    events: tuple[Event, ...] = ()
    acked_up_to: int | None = None
    fence: int | None = None
    release: bool = False


Message = ChatMessage
"""One message of a session's transcript, as ``Session.messages()`` returns it."""

STREAM_RESET = Event(type="stream.reset", data={"reason": "subscriber too slow"})
"""Ends a subscription whose reader fell too far behind; resume from the last seq."""
STREAM_CLOSED = Event(type="stream.closed", data={"reason": "session stopped"})
"""Ends a subscription because its session stopped (shutdown)."""
