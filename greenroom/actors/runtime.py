"""What every actor of one orchestrator shares: settings, store, agents, loop, lifecycle.

Every actor runs on the orchestrator's asyncio loop (``dispatch.py``); so do the
directory's routing table and the scheduler, which therefore need no lock. Store I/O
never runs on the loop unless the store says it is in-memory (``Store.inline``): writes
go to the store's own writer, reads to the loop's executor, and their outcomes come
back to the loop as callbacks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from greenroom.actors.messages import TaskCompleted, TurnDelta, TurnDone
from greenroom.actors.scheduler import Scheduler, TaskSpec
from greenroom.errors import AgentNotFoundError
from greenroom.logs import get_logger
from greenroom.metrics import NO_METRICS, Metrics
from greenroom.models import Write
from greenroom.settings import Settings
from greenroom.typing import Agent, AgentContext, History, Store

if TYPE_CHECKING:
    from greenroom.actors.directory import DirectoryActor
    from greenroom.actors.dispatch import LoopActor
    from greenroom.cluster import Node

log = get_logger()


class State(enum.StrEnum):
    """The one lifecycle of an orchestrator (and of its runtime)."""

    NEW = "new"  # built, not started
    STARTING = "starting"  # opening the store, recovering
    RUNNING = "running"  # taking work
    CLOSING = "closing"  # intake closed, draining
    CLOSED = "closed"  # stopped; final


class Runtime:
    """The shared parts of a running orchestrator. Built on the loop by ``Orchestrator.start``.

    Args:
        settings: the configuration.
        store: an open store.
        loop: the running loop every actor runs on.
        agents: the agents by name (the orchestrator's live mapping).
        metrics: the orchestrator's metrics (default: none).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        loop: asyncio.AbstractEventLoop,
        agents: Mapping[str, Agent],
        metrics: Metrics = NO_METRICS,
    ) -> None:
        from greenroom.actors.directory import DirectoryActor

        self.settings = settings
        self.metrics = metrics
        self.store = store
        self.loop = loop
        self.agents = agents
        self.state = State.STARTING
        self.active_turns: set[asyncio.Task[None]] = set()
        self.node: Node | None = None  # set when several nodes share a PostgreSQL store
        # Completions reported by this process's task actors (or cancellations of queued
        # tasks) that their session has not stored yet. A session re-activated meanwhile
        # (after a write of unknown outcome, a lapsed lease) sees the task still running
        # in the store: it takes the completion from here, rather than recovering a task
        # that has in fact ended.
        self.unrecorded: dict[str, TaskCompleted] = {}
        # Foreground turns running here, or ended but not stored yet: a session
        # re-activated meanwhile carries on with the turn instead of forgetting it.
        self.turns_unrecorded: set[str] = set()
        self._actors: dict[LoopActor, str] = {}  # every live actor -> its kind
        self._all_stopped = asyncio.Event()
        self._all_stopped.set()
        # Store outcomes from other threads, delivered on the loop in one go (see persist).
        self._outcomes: collections.deque[tuple[Callable[[Any], None], Any]] = collections.deque()
        self._outcomes_scheduled = False
        limits = settings.limits
        self.scheduler = Scheduler(
            limits.max_running_tasks,
            limits.max_queued_tasks,
            self._start_task,
            self._task_not_started,
        )
        self.directory: DirectoryActor = DirectoryActor.spawn(self)

    # --- lifecycle ------------------------------------------------------------------

    @property
    def taking_work(self) -> bool:
        """Whether new turns and tasks are accepted."""
        return self.state is State.RUNNING

    def started(self, actor: LoopActor, kind: str) -> None:
        """Record a live actor (called from its constructor, on the loop)."""
        self._actors[actor] = kind
        self._all_stopped.clear()

    def reaped(self, actor: LoopActor) -> None:
        """Forget an actor that stopped (on the loop)."""
        self._actors.pop(actor, None)
        if not self._actors:
            self._all_stopped.set()

    def live_actors(self) -> dict[str, int]:
        """How many actors of each kind are alive: ``{"session": 3, "task": 1, ...}``."""
        return dict(Counter(self._actors.values()))

    async def wait_stopped(self, timeout_s: float) -> int:
        """Wait until every actor stopped; returns how many had not when time ran out."""
        try:
            await asyncio.wait_for(self._all_stopped.wait(), timeout_s)
        except TimeoutError:
            return len(self._actors)
        return 0

    # --- agents ---------------------------------------------------------------------

    def agent(self, name: str) -> Agent:
        """The agent registered under ``name``.

        Raises:
            AgentNotFoundError: no such agent.
        """
        try:
            return self.agents[name]
        except KeyError:
            known = ", ".join(sorted(self.agents)) or "none"
            raise AgentNotFoundError(f"unknown agent {name!r} (known: {known})") from None

    # --- messages -------------------------------------------------------------------

    def route(self, session_id: str, message: Any) -> None:
        """Deliver ``message`` to a session, activating it if asleep (from any thread)."""
        if getattr(self.loop, "_thread_id", None) == threading.get_ident():
            self.directory.route(session_id, message)
        else:
            self.loop.call_soon_threadsafe(self.directory.route, session_id, message)

    def report(self, completion: TaskCompleted) -> None:
        """Send a task's completion to its session, holding it until the session has
        stored it (see ``unrecorded``)."""
        self.unrecorded[completion.task.id] = completion
        self.route(completion.task.session_id, completion)

    def call_later(self, delay_s: float, session_id: str, message: Any) -> None:
        """Route ``message`` to a session after ``delay_s`` (on the loop)."""
        self.loop.call_later(delay_s, self.route, session_id, message)

    # --- store I/O, off the loop ----------------------------------------------------

    def persist(self, write: Write, done: Callable[[BaseException | None], None]) -> None:
        """Write durably; ``done(error)`` runs on the loop once the write ended."""
        done = self.metrics.store_write(write, done)
        loop = self.loop

        def finished(error: BaseException | None) -> None:
            if getattr(loop, "_thread_id", None) == threading.get_ident():
                done(error)  # an in-memory store answers at once, on the loop
            else:
                self._outcome_from_thread(done, error)

        try:
            self.store.write(write, finished)
        except Exception as exc:  # a store that refuses before queueing (closed, say)
            done(exc)

    def _outcome_from_thread(self, done: Callable[[Any], None], outcome: Any) -> None:
        # A store's writer reports a whole batch of commits at once: queue the outcomes
        # and wake the loop once for all of them, not once per write.
        self._outcomes.append((done, outcome))
        if not self._outcomes_scheduled:
            self._outcomes_scheduled = True
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                self.loop.call_soon_threadsafe(self._deliver_outcomes)

    def _deliver_outcomes(self) -> None:
        # Reset first: an outcome queued from now on schedules another delivery.
        self._outcomes_scheduled = False
        outcomes = self._outcomes
        while outcomes:
            done, outcome = outcomes.popleft()
            try:
                done(outcome)
            except Exception as exc:  # one broken receiver must not strand the others
                log.error("outcome_delivery_failed", actor="runtime", error=str(exc), exc_info=exc)

    def read(self, fn: Callable[[], Any], done: Callable[[Any], None]) -> None:
        """Run the store read ``fn`` off the loop (inline for an in-memory store);
        ``done(value or exception)`` runs on the loop."""
        if self.store.inline:
            try:
                value = fn()
            except Exception as exc:
                value = exc
            done(value)
            return

        def finished(future: asyncio.Future[Any]) -> None:
            exc = future.exception()
            done(exc if exc is not None else future.result())

        self.loop.run_in_executor(None, fn).add_done_callback(finished)

    async def read_now(self, fn: Callable[[], Any]) -> Any:
        """Await the store read ``fn`` (run off the loop, as :meth:`read` does).

        Raises:
            Whatever ``fn`` raised (a StoreError, most often).
        """
        done: asyncio.Future[Any] = self.loop.create_future()

        def settle(outcome: Any) -> None:
            if not done.done():  # the waiter may have gone (a client disconnected)
                done.set_result(outcome)

        self.read(fn, settle)
        outcome = await done
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    # --- turns ----------------------------------------------------------------------

    def run_turn(self, agent_name: str, history: History, ctx: AgentContext) -> None:
        """Stream a foreground turn on the loop, reporting chunks to the session actor."""
        if ctx.turn_id:
            self.turns_unrecorded.add(ctx.turn_id)
        task = self.loop.create_task(self._turn(agent_name, history, ctx))
        self.active_turns.add(task)
        task.add_done_callback(self.active_turns.discard)

    async def _turn(self, agent_name: str, history: History, ctx: AgentContext) -> None:
        started = time.perf_counter()
        parts: list[str] = []
        turn_id = ctx.turn_id or ""
        sid = ctx.session_id
        try:
            agent = self.agent(agent_name)
            async for chunk in agent.stream(history, ctx):
                if chunk:
                    parts.append(chunk)
                    self.route(sid, TurnDelta(turn_id, chunk))
        except asyncio.CancelledError:
            error = ("Interrupted", "the turn was interrupted by shutdown")
            self.route(sid, TurnDone(turn_id, None, error, _ms(started)))
            raise
        except Exception as exc:
            error = (type(exc).__name__, str(exc) or type(exc).__name__)
            self.route(sid, TurnDone(turn_id, None, error, _ms(started)))
        else:
            self.route(sid, TurnDone(turn_id, "".join(parts), None, _ms(started)))

    def _task_not_started(self, spec: TaskSpec, exc: BaseException) -> None:
        """A task actor could not even start: still exactly one completion."""
        from greenroom.models import ErrorInfo, TaskStatus, now

        failed = spec.task.evolve(
            status=TaskStatus.FAILED, finished_at=now(), error=ErrorInfo.from_exception(exc)
        )
        log.error("task_start_failed", actor="runtime", task_id=failed.id, error=str(exc))
        self.report(TaskCompleted(failed, failed.request_id))

    def _start_task(self, spec: TaskSpec) -> Any:
        from greenroom.actors.task import TaskActor

        return TaskActor.start(self, spec)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
