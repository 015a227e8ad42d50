"""The task actor: one background task, exactly one completion, whatever happens.

It runs the agent on the shared loop, enforces the timeout with a loop timer, honours
cancel, and sends one ``TaskCompleted`` to its parent session through the directory:
on success, agent exception, timeout, cancel, crash of the actor itself (``on_failure``)
and shutdown (``Interrupt`` or ``on_stop``). Late agent output after it ended is dropped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from dataclasses import replace
from typing import Any

import structlog

from greenroom.actors import bridge
from greenroom.actors.messages import (
    AgentOutcome,
    Cancel,
    Interrupt,
    TaskCompleted,
    TaskStarted,
    Timeout,
)
from greenroom.actors.runtime import Runtime
from greenroom.actors.scheduler import TaskSpec
from greenroom.models import ErrorInfo, TaskStatus, now
from greenroom.typing import AgentContext

log = structlog.get_logger("greenroom")


class TaskActor(bridge.LoopSafeActor):
    """Runs one task. Started by the scheduler; stops itself once it has reported."""

    def __init__(self, runtime: Runtime, spec: TaskSpec) -> None:
        super().__init__()
        self.runtime = runtime
        self.task = replace(spec.task)
        self.history = spec.history
        self.done = False
        self.future: concurrent.futures.Future[str] | None = None
        self.log = log.bind(
            actor="task",
            task_id=self.task.id,
            session_id=self.task.session_id,
            request_id=self.task.request_id,
        )

    def on_start(self) -> None:
        # pykka calls neither on_failure nor on_stop when on_start raises: guard it here.
        try:
            self._begin()
        except Exception as exc:
            self.log.error("actor_crashed", error_type=type(exc).__name__, error=str(exc))
            self._finish(TaskStatus.FAILED, error=ErrorInfo("ActorCrashed", str(exc)))

    def _begin(self) -> None:
        self.task.started_at = now()
        self.task.status = TaskStatus.RUNNING
        self.runtime.route(self.task.session_id, TaskStarted(self.task.id, self.task.started_at))
        self.log.info("task_started", agent=self.task.agent, kind=self.task.kind)
        try:
            agent = self.runtime.agent(self.task.agent)
        except Exception as exc:
            self._finish(TaskStatus.FAILED, error=ErrorInfo.from_exception(exc))
            return
        ctx = AgentContext(
            session_id=self.task.session_id, task_id=self.task.id, request_id=self.task.request_id
        )
        timeout_s = self.task.timeout_s or self.runtime.settings.limits.task_timeout_s
        self.future = asyncio.run_coroutine_threadsafe(
            _run_agent(self.actor_ref, agent.complete(self.history, ctx), timeout_s),
            self.runtime.loop,
        )
        self.future.add_done_callback(self._on_future_done)
        self.history = []  # the agent holds its copy; free ours

    def _on_future_done(self, future: concurrent.futures.Future[str]) -> None:
        # Runs on the loop's thread when the agent coroutine ends.
        if future.cancelled():
            bridge.tell(self.actor_ref, AgentOutcome(None, None, cancelled=True))
        elif (exc := future.exception()) is not None:
            bridge.tell(self.actor_ref, AgentOutcome(None, exc))
        else:
            bridge.tell(self.actor_ref, AgentOutcome(future.result(), None))

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
            self._finish(
                TaskStatus.INTERRUPTED,
                error=ErrorInfo("Interrupted", f"interrupted: {message.reason}"),
            )
        self.log.debug(
            "actor_message",
            msg=type(message).__name__,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        return None

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
        if self.future is not None and not self.future.done():
            self.future.cancel()  # late output is discarded by the `done` guard
        self.task.status = status
        self.task.content = content
        self.task.error = error
        self.task.finished_at = now()
        # Route before freeing the slot: shutdown waits for the scheduler to be idle and
        # then passivates sessions, which must come after this completion in the
        # directory's inbox.
        self.runtime.route(
            self.task.session_id, TaskCompleted(replace(self.task), self.task.request_id)
        )
        self.runtime.scheduler.finished(self.task.id)
        self.log.info(
            "task_finished",
            status=status.value,
            error_type=error.type if error else None,
            duration_ms=round((self.task.finished_at - (self.task.started_at or 0)) * 1000, 3),
        )
        bridge.stop(self.actor_ref)

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        # A crash in a handler: pykka stops the actor; the parent must still hear of it.
        self.log.error(
            "actor_crashed",
            error_type=getattr(exception_type, "__name__", "?"),
            error=str(exception_value),
        )
        self._finish(TaskStatus.FAILED, error=ErrorInfo("ActorCrashed", str(exception_value)))

    def on_stop(self) -> None:
        # Stopped from outside (shutdown) before it ended: still exactly one completion.
        self._finish(TaskStatus.INTERRUPTED, error=ErrorInfo("Interrupted", "task actor stopped"))


async def _run_agent(ref: Any, work: Any, timeout_s: float) -> str:
    """Run the agent call on the loop; a loop timer tells the actor when time is up."""
    loop = asyncio.get_running_loop()
    timer = loop.call_later(timeout_s, bridge.tell, ref, Timeout())
    try:
        result: str = await work
        return result
    finally:
        timer.cancel()
