"""What the clients saw and what the store holds: plain records, nothing running.

The load (``clients.py``) fills :class:`SessionHistory`; the store probes
(``stores.py``) fill :class:`StoredSession`; the checker (``checker.py``) compares them.
Keeping them plain lets the checker's own tests build small histories by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TERMINAL = frozenset({"completed", "failed", "cancelled", "timed_out", "interrupted"})


@dataclass
class Request:
    """One HTTP request as a client saw it (``status`` 0: no answer at all)."""

    sid: str | None
    op: str
    sent: float  # time.monotonic() when it was sent
    done: float  # ... when its answer (or failure) came
    status: int
    node: str | None = None  # X-Greenroom-Node of the answer

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class SseFrame:
    """One event read from a stream: its ``id:`` (None for ``stream.*`` frames without
    one), its ``event:`` type and its decoded ``data:``."""

    seq: int | None
    type: str
    data: dict[str, Any]


@dataclass
class SseConnection:
    """One connection of a session's SSE reader, from (re)connect to disconnect."""

    resume: int  # the Last-Event-ID it sent
    opened: float
    status: int = 0  # 0: no answer
    node: str | None = None
    frames: list[SseFrame] = field(default_factory=list)
    end: str = ""  # why it ended: eof, error, timeout, reset, shutdown, stopped, status

    @property
    def last_seq(self) -> int:
        seqs = [f.seq for f in self.frames if f.seq is not None]
        return max(seqs, default=self.resume)


@dataclass(frozen=True)
class ResultEntry:
    """One entry of ``GET .../results``."""

    seq: int
    task_id: str
    status: str


@dataclass
class SessionHistory:
    """Everything the clients did and saw for one session."""

    sid: str
    # idempotency key -> the task id of every 2xx answer to a start with that key
    acks: dict[str, list[str]] = field(default_factory=dict)
    unacked: set[str] = field(default_factory=set)  # keys that never got a 2xx
    unexpected: list[str] = field(default_factory=list)  # answers no failure explains
    sse: list[SseConnection] = field(default_factory=list)
    results_seen: int = 0  # the highest result seq read during the load
    acked_up_to: int = 0  # the highest ``up_to`` acknowledged

    @property
    def acked_tasks(self) -> dict[str, str]:
        """task id -> the idempotency key it was acknowledged under."""
        return {tid: key for key, tids in self.acks.items() for tid in tids}


@dataclass(frozen=True)
class StoredEvent:
    """A row of the store's events: ``gen`` is the session generation (fencing token)
    it was written under (None for a store without generations: SQLite)."""

    seq: int
    gen: int | None
    type: str
    data: dict[str, Any]

    @property
    def task_id(self) -> str | None:
        """The task a ``task.*`` event is about."""
        tid = self.data.get("task_id")
        if tid is None and isinstance(self.data.get("task"), dict):
            tid = self.data["task"].get("id")
        return tid if isinstance(tid, str) else None


@dataclass
class StoredSession:
    """A session as the store holds it after the run."""

    sid: str
    owner: str | None = None
    events: list[StoredEvent] = field(default_factory=list)
    tasks: dict[str, str] = field(default_factory=dict)  # task id -> status
    last_seq: int = 0


@dataclass
class FinalRead:
    """A session read back over HTTP once everything settled."""

    statuses: dict[str, str] = field(default_factory=dict)  # GET .../tasks
    results: list[ResultEntry] = field(default_factory=list)  # every page of .../results
    last_seq: int = 0  # GET /v1/sessions/{sid}
