"""The global bound on running and queued tasks, and the map of live task actors.

Called from actor threads only (never from the event loop), so it may take a lock.
Beyond ``max_running`` tasks wait in a FIFO queue; beyond ``max_queued`` waiting ones,
:meth:`Scheduler.reserve` raises ``QueueFullError`` and nothing already accepted is touched.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from greenroom.errors import QueueFullError, ShuttingDownError
from greenroom.models import TaskRecord
from greenroom.typing import History


@dataclass(slots=True)
class TaskSpec:
    """What a task actor needs to run: the record and the history it starts from."""

    task: TaskRecord
    history: History


class Scheduler:
    """Admission control for tasks.

    Args:
        max_running: tasks running at once.
        max_queued: tasks waiting beyond those.
        start: starts a task actor for a spec; returns its actor ref.
    """

    def __init__(self, max_running: int, max_queued: int, start: Callable[[TaskSpec], Any]) -> None:
        self.max_running = max_running
        self.max_queued = max_queued
        self._start = start
        self._lock = threading.Lock()
        self._reserved = 0
        self._queue: OrderedDict[str, TaskSpec] = OrderedDict()
        self._live: dict[str, Any] = {}  # task id -> actor ref (or None while starting)
        self._closed = False
        self._idle = threading.Event()
        self._idle.set()

    def reserve(self) -> None:
        """Take a place for one more task.

        Raises:
            QueueFullError: running and queued tasks are at their bounds.
            ShuttingDownError: the scheduler is closed.
        """
        with self._lock:
            if self._closed:
                raise ShuttingDownError("greenroom is shutting down; no new tasks")
            waiting = len(self._queue) + self._reserved
            if len(self._live) >= self.max_running and waiting >= self.max_queued:
                raise QueueFullError(
                    f"{self.max_queued} tasks already queued behind {self.max_running} running "
                    "(limits.max_queued_tasks); retry later",
                    retry_after_s=1.0,
                )
            self._reserved += 1
            self._idle.clear()

    def release(self) -> None:
        """Give back a reservation whose task was never submitted."""
        with self._lock:
            self._reserved -= 1
            self._set_idle_if_empty()

    def submit(self, spec: TaskSpec) -> None:
        """Run a reserved task now, or queue it."""
        with self._lock:
            self._reserved -= 1
            if len(self._live) >= self.max_running:
                self._queue[spec.task.id] = spec
                return
            self._live[spec.task.id] = None
        self._launch(spec)

    def finished(self, task_id: str) -> None:
        """A task actor ended: free its slot and start the next queued task."""
        with self._lock:
            self._live.pop(task_id, None)
            nxt = None
            if self._queue and not self._closed and len(self._live) < self.max_running:
                _, nxt = self._queue.popitem(last=False)
                self._live[nxt.task.id] = None
            self._set_idle_if_empty()
        if nxt is not None:
            self._launch(nxt)

    def dequeue(self, task_id: str) -> bool:
        """Remove a task that has not started yet; False if it is not queued."""
        with self._lock:
            removed = self._queue.pop(task_id, None) is not None
            self._set_idle_if_empty()
            return removed

    def actor_for(self, task_id: str) -> Any:
        """The live task actor's ref, or None."""
        with self._lock:
            return self._live.get(task_id)

    def close(self) -> tuple[list[TaskSpec], list[Any]]:
        """Stop intake. Returns the queued specs (now removed) and live actor refs."""
        with self._lock:
            self._closed = True
            queued = list(self._queue.values())
            self._queue.clear()
            live = [ref for ref in self._live.values() if ref is not None]
            self._set_idle_if_empty()
            return queued, live

    def wait_idle(self, timeout_s: float) -> bool:
        """Block (off the loop) until no task runs, is queued or reserved."""
        return self._idle.wait(timeout_s)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"running": len(self._live), "queued": len(self._queue)}

    def _launch(self, spec: TaskSpec) -> None:
        try:
            ref = self._start(spec)
        except Exception:
            self.finished(spec.task.id)
            raise
        with self._lock:
            if spec.task.id in self._live:
                self._live[spec.task.id] = ref

    def _set_idle_if_empty(self) -> None:
        if not self._live and not self._queue and self._reserved <= 0:
            self._idle.set()
