"""What a session core asks its shell to do. Plain records: the core does no I/O.

A core's step returns a list of effects, carried out in order. Two of them have an
outcome the core must see before it goes on — :class:`Persist` and
:class:`LoadEvents` — and :class:`Reserve` may fail; each is the last effect of its
list, and the shell hands its outcome (``None``, the loaded value, or the exception)
back to ``SessionCore.resolve``. Until then the session handles no other message, so
every reply and event about a change leaves only after the change is durable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from greenroom.actors.bridge import ReplyTo
from greenroom.actors.messages import Subscriber
from greenroom.models import Event, Write
from greenroom.typing import AgentContext, History


@dataclass(frozen=True, slots=True)
class Persist:
    """Write this durably; the outcome (None or the StoreError) goes to ``resolve``."""

    write: Write


@dataclass(frozen=True, slots=True)
class LoadEvents:
    """Read stored events after ``after``; ``resolve`` gets ``(first_seq, events)``."""

    after: int
    limit: int


@dataclass(frozen=True, slots=True)
class Reserve:
    """Take a place in the task queue; ``resolve`` gets None or the QueueFullError.

    ``force`` takes it past ``max_queued_tasks``: for a task accepted before a restart.
    """

    task_id: str
    force: bool = False


@dataclass(frozen=True, slots=True)
class Release:
    """Give back a place taken by :class:`Reserve` whose task was never submitted."""

    task_id: str


@dataclass(frozen=True, slots=True)
class Submit:
    """Run (or queue) a task that is durably queued."""

    task: Any  # a TaskRecord
    history: History


@dataclass(frozen=True, slots=True)
class StopTask:
    """Cancel a queued or running task; its completion comes back as a message."""

    task_id: str
    request_id: str | None


@dataclass(frozen=True, slots=True)
class RunTurn:
    """Stream a foreground turn on the loop; chunks and the end come back as messages."""

    agent: str
    history: History
    ctx: AgentContext


@dataclass(frozen=True, slots=True)
class Answer:
    """Send ``value`` to whoever waits on ``to``."""

    to: ReplyTo
    value: Any


@dataclass(frozen=True, slots=True)
class Refuse:
    """Fail whoever waits on ``to`` with ``error``."""

    to: ReplyTo
    error: BaseException


@dataclass(frozen=True, slots=True)
class Publish:
    """Deliver ``event`` to these subscribers."""

    event: Event
    subscribers: tuple[Subscriber, ...]


@dataclass(frozen=True, slots=True)
class CloseStreams:
    """End these subscribers' streams (the session passivates)."""

    subscribers: tuple[Subscriber, ...]


@dataclass(frozen=True, slots=True)
class Later:
    """Send ``message`` to this session again after ``delay_s`` (a timer)."""

    delay_s: float
    message: Any


@dataclass(frozen=True, slots=True)
class Recorded:
    """This task's one completion (or this turn's end) is stored, or had been already:
    nobody needs to hold it as reported-but-unrecorded any more (``Runtime.unrecorded``,
    ``Runtime.turns_unrecorded``)."""

    task_id: str


@dataclass(frozen=True, slots=True)
class Log:
    """Write one structured log line (``level`` is a structlog method name)."""

    level: str
    event: str
    fields: dict[str, Any] = field(default_factory=dict)


Effect = (
    Persist
    | LoadEvents
    | Reserve
    | Release
    | Submit
    | StopTask
    | RunTurn
    | Answer
    | Refuse
    | Publish
    | CloseStreams
    | Later
    | Recorded
    | Log
)
