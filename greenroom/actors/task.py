"""The task actor: one background task, exactly one completion, whatever happens.

It runs the agent as an asyncio task on the loop, enforces the timeout with a loop
timer, honours cancel, and sends one ``TaskCompleted`` to its parent session: on
success, agent exception, timeout, cancel, crash of the actor itself (``on_failure``)
and shutdown (``Interrupt`` or ``on_stop``). Late agent output after it ended is dropped.

Failure policy: a crash in a handler stops the actor (pykka's rule); ``on_failure``
still sends the one completion, as ``failed`` with ``ActorCrashed``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from greenroom.actors.dispatch import LoopActor
from greenroom.actors.messages import (
    AgentOutcome,
    Cancel,
    Interrupt,
    TaskCompleted,
    TaskStarted,
    Timeout,
)
from greenroom.actors.scheduler import TaskSpec
from greenroom.logs import get_logger
from greenroom.models import ErrorInfo, TaskStatus, now
from greenroom.typing import AgentContext

if TYPE_CHECKING:
    from greenroom.actors.runtime import Runtime

log = get_logger()


class TaskActor(LoopActor):
    """Runs one task. Started by the scheduler; stops itself once it has reported."""

    def __init__(self, runtime: Runtime, spec: TaskSpec) -> None:
        super().__init__(runtime.loop)
        runtime.started(self, "task")
        self.runtime = runtime
        self.task = spec.task.evolve()  # our own copy: this actor mutates it
        self.history = spec.history
        self.done = False
        self.reported = False
        self.job: asyncio.Future[str] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.log = _TaskLog(self.task)

    def on_start(self) -> None:
        # pykka calls neither on_failure nor on_stop when on_start raises: guard it here.
        try:
            self._begin()
        except Exception as exc:
            self.log.error("actor_crashed", error_type=type(exc).__name__, error=str(exc))
            self._finish(TaskStatus.FAILED, error=ErrorInfo("ActorCrashed", str(exc)))

    def _begin(self) -> None:
        rt = self.runtime
        task = self.task
        task.started_at, task.status, task.attempt = now(), TaskStatus.RUNNING, task.attempt + 1
        rt.route(task.session_id, TaskStarted(task.id, task.started_at, task.attempt))
        self.log.info(
            "task_started",
            agent=task.agent,
            kind=task.kind,
            attempt=task.attempt,
            max_attempts=task.max_attempts,
        )
        try:
            agent = rt.agent(self.task.agent)
        except Exception as exc:
            self._finish(TaskStatus.FAILED, error=ErrorInfo.from_exception(exc))
            return
        ctx = AgentContext(
            session_id=self.task.session_id, task_id=self.task.id, request_id=self.task.request_id
        )
        timeout_s = self.task.timeout_s or rt.settings.limits.task_timeout_s
        self.job = asyncio.ensure_future(agent.complete(self.history, ctx), loop=rt.loop)
        self.job.add_done_callback(self._on_job_done)
        self.timer = rt.loop.call_later(timeout_s, self._tell, Timeout())
        self.history = []  # the agent holds its copy; free ours

    def _tell(self, message: Any) -> None:
        if self.actor_ref.is_alive():
            self.actor_ref.tell(message)

    def _on_job_done(self, job: asyncio.Future[str]) -> None:
        if job.cancelled():
            self._tell(AgentOutcome(None, None, cancelled=True))
        elif (exc := job.exception()) is not None:
            self._tell(AgentOutcome(None, exc))
        else:
            self._tell(AgentOutcome(job.result(), None))

    def on_receive(self, message: Any) -> Any:
        started = time.perf_counter()
        if isinstance(message, AgentOutcome):
            self._on_outcome(message)
        elif isinstance(message, Timeout):
            self.log.info("task_timeout", timeout_s=self.task.timeout_s)
            limit = self.task.timeout_s or self.runtime.settings.limits.task_timeout_s
            self._finish(
                TaskStatus.TIMED_OUT,
                error=ErrorInfo("TimeoutError", f"the task ran past its {limit} s timeout"),
            )
        elif isinstance(message, Cancel):
            self.log.info("task_cancel_requested", request_id=message.request_id)
            self._finish(TaskStatus.CANCELLED, error=ErrorInfo("Cancelled", "cancelled by request"))
        elif isinstance(message, Interrupt):
            self._interrupted(message.reason)
        else:
            return super().on_receive(message)
        self.log.debug(
            "actor_message",
            msg=type(message).__name__,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        return None

    def _interrupted(self, reason: str) -> None:
        task = self.task
        if self.done or task.attempt >= task.max_attempts:
            error = ErrorInfo("Interrupted", f"interrupted: {reason}")
            self._finish(TaskStatus.INTERRUPTED, error=error)
            return
        # Attempts left: no completion now. The store still says `running`, so the next
        # start runs it again (its attempt counted); nothing is lost, nothing doubled.
        self.done = self.reported = True
        self._cancel_work()
        self.log.info("task_kept_for_restart", attempt=task.attempt, reason=reason)
        self.runtime.scheduler.finished(task.id)
        self.stop()

    def _cancel_work(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.job is not None and not self.job.done():
            self.job.cancel()  # late output is discarded by the `done` guard

    def _on_outcome(self, outcome: AgentOutcome) -> None:
        if self.done:
            if not outcome.cancelled:  # the agent answered after the task had ended
                self.log.info("late_agent_output_dropped")
            return
        if outcome.error is not None:
            self._finish(TaskStatus.FAILED, error=ErrorInfo.from_exception(outcome.error))
        elif outcome.cancelled:
            self._finish(TaskStatus.CANCELLED, error=ErrorInfo("Cancelled", "agent was cancelled"))
        else:
            self._finish(TaskStatus.COMPLETED, content=outcome.content or "")

    def _finish(
        self, status: TaskStatus, *, content: str | None = None, error: ErrorInfo | None = None
    ) -> None:
        """Report the one completion, free the slot, stop. Runs at most once."""
        if self.done:
            return
        self.done = True
        self._cancel_work()
        task = self.task
        task.status, task.content, task.error = status, content, error
        task.finished_at = now()
        self._report()
        self.log.info(
            "task_finished",
            status=status.value,
            error_type=error.type if error else None,
            duration_ms=round((task.finished_at - (task.started_at or 0)) * 1000, 3),
        )
        self.stop()

    def _report(self) -> None:
        # Route before freeing the slot: shutdown waits for the scheduler to be idle and
        # then passivates sessions, which must come after this completion.
        # `reported` is set only once the completion is on its way, so a failure here
        # leaves on_failure able to send it.
        task = self.task
        self.runtime.report(TaskCompleted(task.evolve(), task.request_id))
        self.reported = True
        self.runtime.scheduler.finished(task.id)

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        # A crash in a handler: pykka stops the actor; the parent must still hear of it.
        self.log.error(
            "actor_crashed",
            error_type=getattr(exception_type, "__name__", "?"),
            error=str(exception_value),
        )
        self._ensure_reported(ErrorInfo("ActorCrashed", str(exception_value)))

    def on_stop(self) -> None:
        # Stopped from outside (shutdown) before it ended: still exactly one completion.
        if not self.done:
            self._finish(
                TaskStatus.INTERRUPTED, error=ErrorInfo("Interrupted", "task actor stopped")
            )

    def _ensure_reported(self, error: ErrorInfo) -> None:
        if self.reported:
            return
        self._cancel_work()
        self.done = True
        self.task.status, self.task.error = TaskStatus.FAILED, error
        self.task.content, self.task.finished_at = None, now()
        self._report()

    def on_reaped(self) -> None:
        self.runtime.reaped(self)


class _TaskLog:
    """The task's correlation ids on each line, bound only when a line is written
    (``log.bind`` per task actor was a measurable share of a short task's cost)."""

    __slots__ = ("task",)

    def __init__(self, task: Any) -> None:
        self.task = task

    def _ids(self, fields: dict[str, Any]) -> dict[str, Any]:
        task = self.task
        fields.setdefault("request_id", task.request_id)
        return dict(fields, actor="task", task_id=task.id, session_id=task.session_id)

    def debug(self, event: str, **fields: Any) -> None:
        log.debug(event, **self._ids(fields))

    def info(self, event: str, **fields: Any) -> None:
        log.info(event, **self._ids(fields))

    def error(self, event: str, **fields: Any) -> None:
        log.error(event, **self._ids(fields))
