"""The global bound on running and queued tasks, and the map of live task actors.

Used on the event loop only (every actor runs there), so it takes no lock. Beyond
``max_running`` tasks wait in a FIFO queue; beyond ``max_queued`` waiting ones,
:meth:`Scheduler.reserve` raises ``QueueFullError`` and nothing already accepted is
touched.
"""

from __future__ import annotations

import asyncio
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
        not_started: called when ``start`` raised, so the task still gets its completion.
    """

    def __init__(
        self,
        max_running: int,
        max_queued: int,
        start: Callable[[TaskSpec], Any],
        not_started: Callable[[TaskSpec, BaseException], None],
    ) -> None:
        self.max_running = max_running
        self.max_queued = max_queued
        self._start = start
        self._not_started = not_started
        self._reserved = 0
        self._queue: OrderedDict[str, TaskSpec] = OrderedDict()
        self._live: dict[str, Any] = {}  # task id -> actor ref
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    def reserve(self, *, force: bool = False) -> None:
        """Take a place for one more task (``force``: past the queue bound, for a task
        that was accepted before a restart).

        Raises:
            QueueFullError: running and queued tasks are at their bounds.
            ShuttingDownError: the scheduler is closed.
        """
        if self._closed:
            raise ShuttingDownError("greenroom is shutting down; no new tasks")
        waiting = len(self._queue) + self._reserved
        if not force and len(self._live) >= self.max_running and waiting >= self.max_queued:
            raise QueueFullError(
                f"{self.max_queued} tasks already queued behind {self.max_running} running "
                "(limits.max_queued_tasks); retry later",
                retry_after_s=1.0,
            )
        self._reserved += 1
        self._idle.clear()

    def release(self) -> None:
        """Give back a reservation whose task was never submitted."""
        self._reserved -= 1
        self._set_idle_if_empty()

    def submit(self, spec: TaskSpec) -> None:
        """Run a reserved task now, or queue it."""
        self._reserved -= 1
        if self._closed:
            self._not_started(spec, ShuttingDownError("greenroom is shutting down"))
            self._set_idle_if_empty()
        elif len(self._live) >= self.max_running:
            self._queue[spec.task.id] = spec
        else:
            self._launch(spec)

    def finished(self, task_id: str) -> None:
        """A task actor ended: free its slot and start the next queued task."""
        self._live.pop(task_id, None)
        if self._queue and not self._closed and len(self._live) < self.max_running:
            _, nxt = self._queue.popitem(last=False)
            self._launch(nxt)
        self._set_idle_if_empty()

    def dequeue(self, task_id: str) -> bool:
        """Remove a task that has not started yet; False if it is not queued."""
        removed = self._queue.pop(task_id, None) is not None
        self._set_idle_if_empty()
        return removed

    def holds(self, task_id: str) -> bool:
        """Whether the task runs or waits here (a task the store says is unfinished but
        this scheduler does not hold was orphaned, by a crash or by another node)."""
        return task_id in self._live or task_id in self._queue

    def actor_for(self, task_id: str) -> Any:
        """The live task actor's ref, or None."""
        return self._live.get(task_id)

    def close(self) -> tuple[list[TaskSpec], list[Any]]:
        """Stop intake. Returns the queued specs (now removed) and live actor refs."""
        self._closed = True
        queued = list(self._queue.values())
        self._queue.clear()
        self._set_idle_if_empty()
        return queued, list(self._live.values())

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no task runs, is queued or reserved; False when time ran out."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def counts(self) -> dict[str, int]:
        """Running, queued and reserved tasks."""
        return {"running": len(self._live), "queued": len(self._queue), "reserved": self._reserved}

    def _launch(self, spec: TaskSpec) -> None:
        try:
            self._live[spec.task.id] = self._start(spec)
        except Exception as exc:  # no actor: the task still gets exactly one completion
            self._live.pop(spec.task.id, None)
            self._not_started(spec, exc)

    def _set_idle_if_empty(self) -> None:
        if not self._live and not self._queue and self._reserved <= 0:
            self._idle.set()
