"""Every message the actors exchange, in one module.

Messages carry their correlation ids explicitly (``request_id`` and friends): a
message may wait in a mailbox long after the request that sent it. A message that
expects an answer carries a :class:`~greenroom.actors.bridge.Reply`; the actor answers
through it exactly once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from greenroom.actors.bridge import Reply
from greenroom.actors.events import EventStream
from greenroom.models import TaskRecord


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A consumer of session events living on the asyncio loop (SSE stream, embedded turn)."""

    id: str
    loop: asyncio.AbstractEventLoop
    stream: EventStream
    turn_id: str | None = None  # only this turn's events, then the subscriber is dropped


# --- to the directory (lifecycle; each names the incarnation it is about) ----------


@dataclass(frozen=True, slots=True)
class Passivated:
    """Incarnation ``generation`` of a session agreed to stop; the directory may forget it."""

    session_id: str
    generation: int


@dataclass(frozen=True, slots=True)
class PassivateRefused:
    """Incarnation ``generation`` is busy and stays."""

    session_id: str
    generation: int


@dataclass(frozen=True, slots=True)
class SessionGone:
    """Incarnation ``generation`` found no such session in the store (or could not load it)."""

    session_id: str
    generation: int


@dataclass(frozen=True, slots=True)
class Sweep:
    """Passivate sessions idle for ``session_idle_s`` or beyond ``max_live_sessions``."""


@dataclass(frozen=True, slots=True)
class PassivateAll:
    """Shutdown: ask every live session to passivate; reply when all have answered."""

    reply: Reply


# --- to a session -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Activate:
    """Wake the session (and so recover its orphaned tasks); nothing else to do."""


@dataclass(frozen=True, slots=True)
class Passivate:
    """From the directory: stop if idle (answer Passivated), else PassivateRefused."""

    generation: int
    force: bool = False


@dataclass(frozen=True, slots=True)
class GetInfo:
    reply: Reply
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class StartTurn:
    content: str
    reply: Reply
    subscriber: Subscriber | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class TurnDelta:
    turn_id: str
    chunk: str


@dataclass(frozen=True, slots=True)
class TurnDone:
    turn_id: str
    content: str | None
    error: tuple[str, str] | None  # (type, message)
    duration_ms: float


@dataclass(frozen=True, slots=True)
class GetMessages:
    reply: Reply
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class StartTask:
    prompt: str
    kind: str
    agent: str | None
    timeout_s: float | None
    reply: Reply
    idempotency_key: str | None = None
    request_id: str | None = None
    max_attempts: int = 1


@dataclass(frozen=True, slots=True)
class TaskStarted:
    task_id: str
    started_at: float
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class Recover:
    """At start-up: this task was queued or running when the last process ended."""

    task_id: str


@dataclass(frozen=True, slots=True)
class TaskCompleted:
    """From a task actor (or the scheduler, the orchestrator at shutdown or recovery):
    the task ended. ``task`` carries its terminal status, content and error."""

    task: TaskRecord
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class GetTask:
    task_id: str
    reply: Reply
    wait: bool = False
    waiter_id: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class ListTasks:
    reply: Reply
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class CancelTask:
    task_id: str
    reply: Reply
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class GetResults:
    after: int
    limit: int
    reply: Reply
    wait: bool = False
    waiter_id: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class DropWaiter:
    """The loop side gave up waiting (timeout or client gone)."""

    waiter_id: str


@dataclass(frozen=True, slots=True)
class Ack:
    up_to: int
    reply: Reply
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Subscribe:
    subscriber: Subscriber
    after: int | None
    reply: Reply
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class GetEvents:
    """A page of stored events after ``after`` (how a far-behind subscriber catches up)."""

    after: int
    limit: int
    reply: Reply
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    subscriber_id: str


# --- to a task --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentOutcome:
    """The agent coroutine ended (from the loop)."""

    content: str | None
    error: BaseException | None
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class Timeout:
    """The task's deadline passed (from a loop timer)."""


@dataclass(frozen=True, slots=True)
class Cancel:
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Interrupt:
    """Shutdown: end now as ``interrupted``."""

    reason: str = "shutdown"
    extra: dict[str, Any] = field(default_factory=dict)
