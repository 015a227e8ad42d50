"""Handles of the embedded API: :class:`Session` and :class:`Task`.

Each call sends the session actor a message carrying a reply future (the direct route);
long waits park a waiter in the actor and time out on the loop side, telling the actor
to drop the waiter so parked waiters never pile up.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from greenroom.actors import bridge
from greenroom.actors import messages as m
from greenroom.actors.events import EventStream
from greenroom.errors import AgentError, TaskTimeoutError
from greenroom.models import (
    EVENT_MESSAGE_COMPLETED,
    EVENT_MESSAGE_DELTA,
    Completion,
    Event,
    EventsPage,
    Message,
    ResultsPage,
    SessionInfo,
    TaskInfo,
    new_id,
)

if TYPE_CHECKING:
    from greenroom.orchestrator import Orchestrator


_TIMED_OUT: Any = object()
_waiters = itertools.count(1)


def new_waiter_id() -> str:
    """An id for a parked waiter: unique in this process, which is all it needs."""
    return f"w{next(_waiters)}"


def _time_out(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(_TIMED_OUT)


class Session:
    """A conversation with an agent, and the background tasks started from it."""

    def __init__(
        self, orchestrator: Orchestrator, session_id: str, *, created: SessionInfo | None = None
    ) -> None:
        self._orch = orchestrator
        self.id = session_id
        self.created = created
        """The session's info as it was created (None for a handle on an existing one)."""

    def __repr__(self) -> str:
        return f"Session({self.id!r})"

    async def _ask(self, build: Callable[[bridge.Reply], Any]) -> Any:
        # The direct route: the message goes straight into the live session's mailbox.
        runtime = self._orch.runtime
        reply = bridge.new_reply()
        runtime.route(self.id, build(reply))
        return await reply.future

    async def _ask_waiting(
        self, build: Callable[[bridge.Reply, str], Any], wait_s: float | None
    ) -> tuple[bool, Any]:
        """Ask with a parked waiter; (True, answer) or (False, None) when time ran out.

        The timeout is a plain loop timer that settles the same future with a marker
        (cheaper than ``wait_for`` + ``shield``); a late answer finds it done and is
        dropped, and the actor is told to forget the waiter.
        """
        runtime = self._orch.runtime
        reply, waiter_id = bridge.new_reply(), new_waiter_id()
        runtime.route(self.id, build(reply, waiter_id))
        future = reply.future
        timer = None
        if wait_s is not None:
            timer = runtime.loop.call_later(wait_s, _time_out, future)
        timed_out = False
        try:
            answer = await future
            timed_out = answer is _TIMED_OUT
        finally:
            if timer is not None:
                timer.cancel()
            if timed_out or not future.done() or future.cancelled():
                future.cancel()
                if self._orch._runtime is runtime:
                    runtime.route(self.id, m.DropWaiter(waiter_id))
        if timed_out:
            return False, None
        return True, answer

    async def info(self, *, request_id: str | None = None) -> SessionInfo:
        """The session: id, agent, created_at, metadata, task counts.

        Raises:
            SessionNotFoundError: no such session.
        """
        result: SessionInfo = await self._ask(lambda r: m.GetInfo(r, request_id))
        return result

    async def start_turn(
        self, content: str, *, request_id: str | None = None, stream: EventStream | None = None
    ) -> str:
        """Start a foreground turn and return its id; events arrive on the session's stream.

        Raises:
            TurnInProgressError: a turn is already running.
            ValueError, TypeError: bad ``content``.
        """
        sub = None
        if stream is not None:
            sub = m.Subscriber(new_id("sub"), asyncio.get_running_loop(), stream)
        turn_id: str = await self._ask(lambda r: m.StartTurn(content, r, sub, request_id))
        return turn_id

    async def send(self, content: str, *, request_id: str | None = None) -> AsyncIterator[str]:
        """Run a foreground turn, yielding the answer's chunks as they stream.

        Raises:
            TurnInProgressError: a turn is already running.
            AgentError: the agent failed.
        """
        stream = EventStream(maxsize=100_000)
        await self.start_turn(content, request_id=request_id, stream=stream)
        while True:
            event = await stream.get()
            if event.type == EVENT_MESSAGE_DELTA:
                yield event.data["content"]
            elif event.type == EVENT_MESSAGE_COMPLETED:
                if event.data.get("status") != "completed":
                    error = event.data.get("error") or {}
                    raise AgentError(f"{error.get('type')}: {error.get('message')}")
                return
            else:
                raise AgentError(f"the turn's event stream ended: {event.data}")

    async def messages(self, *, request_id: str | None = None) -> list[Message]:
        """The transcript, oldest first."""
        result: list[Message] = await self._ask(lambda r: m.GetMessages(r, request_id))
        return result

    async def start_task(
        self,
        prompt: str,
        kind: str = "background",
        agent: str | None = None,
        timeout_s: float | None = None,
        *,
        max_attempts: int = 1,
        idempotency_key: str | None = None,
        request_id: str | None = None,
    ) -> Task:
        """Start a background task (``kind="background"``: a fresh context with the prompt)
        or a side question (``kind="side"``: a copy of the session's history).

        Raises:
            QueueFullError: ``max_queued_tasks`` reached; nothing was started.
            AgentNotFoundError: no such agent.
            ValueError, TypeError: bad prompt, kind or timeout.
            ShuttingDownError: the orchestrator is stopping.
        """
        info: TaskInfo = await self._ask(
            lambda r: m.StartTask(
                prompt, kind, agent, timeout_s, r, idempotency_key, request_id, max_attempts
            )
        )
        return Task(self, info)

    async def get_task(
        self, task_id: str, *, wait_s: float = 0, request_id: str | None = None
    ) -> TaskInfo:
        """One task; with ``wait_s`` > 0, waits until it ends or the time passes.

        Raises:
            TaskNotFoundError: no such task in this session.
        """
        if wait_s and wait_s > 0:
            done, info = await self._ask_waiting(
                lambda r, w: m.GetTask(task_id, r, True, w, request_id), wait_s
            )
            if done:
                ended: TaskInfo = info
                return ended
        result: TaskInfo = await self._ask(lambda r: m.GetTask(task_id, r, request_id=request_id))
        return result

    async def task(self, task_id: str) -> Task:
        """A handle on one of this session's tasks, with its current state.

        Raises:
            TaskNotFoundError: no such task in this session.
        """
        return Task(self, await self.get_task(task_id))

    async def tasks(self, *, request_id: str | None = None) -> list[TaskInfo]:
        """Every task of the session, running and queued ones included."""
        result: list[TaskInfo] = await self._ask(lambda r: m.ListTasks(r, request_id))
        return result

    async def cancel_task(self, task_id: str, *, request_id: str | None = None) -> TaskInfo:
        """Cancel a task and return it once it has ended (idempotent).

        Raises:
            TaskNotFoundError: no such task in this session.
        """
        result: TaskInfo = await self._ask(lambda r: m.CancelTask(task_id, r, request_id))
        return result

    async def results(
        self, after: int = 0, wait: float = 0, *, limit: int = 100, request_id: str | None = None
    ) -> ResultsPage:
        """One page of completions with ``seq > after``, oldest first. Never deletes.

        The page is a sequence of :class:`Completion` that also says whether more
        follow: read on from ``page.next_after`` while ``page.has_more``, or walk them
        all with :meth:`iter_results`::

            page = await session.results(after=0)
            while page.has_more:
                page = await session.results(after=page.next_after)

        With ``wait`` > 0 and nothing to return yet, waits up to ``wait`` seconds for
        the next completion.

        Raises:
            ValueError: ``after`` is negative or ``limit`` not in 1..1000.
        """
        _check_page(after, limit)
        if wait and wait > 0:
            done, found = await self._ask_waiting(
                lambda r, w: m.GetResults(after, limit, r, True, w, request_id), wait
            )
            if done:
                page: ResultsPage = found
                return page
        page = await self._ask(lambda r: m.GetResults(after, limit, r, request_id=request_id))
        return page

    async def iter_results(
        self, after: int = 0, *, limit: int = 100, request_id: str | None = None
    ) -> AsyncIterator[Completion]:
        """Every completion with ``seq > after``, oldest first, page by page.

        Ends at the last result recorded when the walk reaches it (it does not wait for
        more). Never deletes.

        Raises:
            ValueError: ``after`` is negative or ``limit`` not in 1..1000.
        """
        while True:
            page = await self.results(after, limit=limit, request_id=request_id)
            for completion in page:
                yield completion
            if not page.has_more:
                return
            after = page.next_after

    async def ack(self, up_to: int, *, request_id: str | None = None) -> int:
        """Acknowledge every result up to ``up_to``; retention may then free them.

        Returns the session's acknowledgement mark.

        Raises:
            ValueError: ``up_to`` is negative or beyond the session's last seq.
        """
        if not isinstance(up_to, int) or isinstance(up_to, bool):
            raise TypeError(f"up_to: expected an integer, got {type(up_to).__name__}")
        result: int = await self._ask(lambda r: m.Ack(up_to, r, request_id))
        return result

    async def events(
        self, after: int = 0, *, limit: int = 1000, request_id: str | None = None
    ) -> EventsPage:
        """One page of the session's stored events with ``seq > after``, oldest first.

        A ``stream.gap`` event first names exactly the seqs retention pruned. Read on
        from ``page.next_after`` while ``page.has_more``.

        Raises:
            ValueError: ``after`` is negative or ``limit`` not in 1..1000.
            ResumeBeyondLastSeqError: ``after`` is past the session's last seq.
        """
        _check_page(after, limit)
        page: EventsPage = await self._ask(lambda r: m.GetEvents(after, limit, r, request_id))
        return page

    async def subscribe(
        self, after: int | None = None, *, maxsize: int = 1000, request_id: str | None = None
    ) -> Subscription:
        """Receive every event with ``seq > after`` in order, then live ones.

        However far behind ``after`` is, nothing is skipped: the subscription reads the
        stored events page by page, then goes live where the pages end.

        Raises:
            ResumeBeyondLastSeqError: ``after`` is past the session's last seq.
        """
        if after is not None:
            _check_page(after, 1)
        stream = EventStream(maxsize)
        sub = m.Subscriber(new_id("sub"), asyncio.get_running_loop(), stream)
        feed = Subscription(self, sub, after, request_id)
        await feed._go_live_or_page()
        return feed


def _check_page(after: int, limit: int) -> None:
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise ValueError(f"after: must be an integer >= 0, got {after!r}")
    if not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise ValueError(f"limit: must be between 1 and 1000, got {limit!r}")


class Subscription:
    """A feed of session events: first the stored ones it missed, then live ones.

    ``close()`` (or ``async with``) unsubscribes.
    """

    def __init__(
        self,
        session: Session,
        subscriber: m.Subscriber,
        after: int | None,
        request_id: str | None = None,
    ) -> None:
        self.session = session
        self.subscriber = subscriber
        self._after = after
        self._request_id = request_id
        self._backlog: collections.deque[Event] = collections.deque()
        self._live = False
        self._step: asyncio.Future[None] | None = None

    async def get(self) -> Event:
        """The next event (``stream.reset`` / ``stream.closed`` end the feed)."""
        while not self._live:
            if self._backlog:
                return self._backlog.popleft()
            # One catch-up step at a time, shielded: a get() cancelled mid-step (an SSE
            # heartbeat) leaves the step to finish, so nothing is read or subscribed twice.
            if self._step is None or self._step.done():
                self._step = asyncio.ensure_future(self._go_live_or_page())
            step = self._step
            await asyncio.shield(step)
            step.result()
        if self._backlog:
            return self._backlog.popleft()
        return await self.subscriber.stream.get()

    async def _go_live_or_page(self) -> None:
        after, sub, rid = self._after, self.subscriber, self._request_id
        last = await self.session._ask(lambda r: m.Subscribe(sub, after, r, rid))
        if last is not None:
            self._live = True  # the session replays from memory and sends live events
            return
        assert after is not None
        page = await self.session.events(after, request_id=rid)
        self._backlog.extend(page.events)
        self._after = page.next_after

    def close(self) -> None:
        """Unsubscribe (idempotent)."""
        runtime = self.session._orch._runtime
        if runtime is not None:
            runtime.route(self.session.id, m.Unsubscribe(self.subscriber.id))

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class Task:
    """A background task. ``info`` is its state as last seen (``refresh`` renews it)."""

    def __init__(self, session: Session, info: TaskInfo) -> None:
        self.session = session
        self.id: str = info.id
        self.info = info

    def __repr__(self) -> str:
        return f"Task({self.id!r}, status={self.info.status.value!r})"

    async def refresh(self) -> TaskInfo:
        """The task's current state."""
        self.info = await self.session.get_task(self.id)
        return self.info

    async def wait(self, timeout: float | None = None) -> Completion:
        """Wait for the task's completion.

        Raises:
            TaskTimeoutError: ``timeout`` seconds passed; the task keeps running.
            TaskNotFoundError: no such task.
        """
        wait_s = timeout if timeout is not None else 365 * 24 * 3600.0
        self.info = await self.session.get_task(self.id, wait_s=wait_s)
        if not self.info.ended:
            raise TaskTimeoutError(
                f"task {self.id} still {self.info.status.value} after {timeout} s"
            )
        return self.info.completion()

    async def cancel(self) -> TaskInfo:
        """Cancel the task (idempotent); returns its final state."""
        self.info = await self.session.cancel_task(self.id)
        return self.info
