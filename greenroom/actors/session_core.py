"""The session state machine: one conversation, its tasks and its results log.

Pure logic: no threads, no loop, no store. :meth:`SessionCore.handle` takes a message
and the time and returns effects (``effects.py``) for the shell to carry out. A change
that must be durable is not applied at once: the core returns a :class:`Persist` and
keeps a continuation; :meth:`SessionCore.resolve` applies the change once the write
succeeded (and only then answers, publishes, wakes waiters), or handles the failure.
The shell handles no other message of the session in between (invariant 3).
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Collection, Container
from dataclasses import dataclass, replace
from typing import Any

from greenroom.actors import effects as fx
from greenroom.actors import messages as m
from greenroom.actors.bridge import ReplyTo
from greenroom.errors import (
    AckBeyondLastSeqError,
    AgentNotFoundError,
    CapacityError,
    GreenroomError,
    IdempotencyKeyReusedError,
    ResumeBeyondLastSeqError,
    TaskNotFoundError,
    TurnInProgressError,
)
from greenroom.logs import content_fields
from greenroom.models import (
    EVENT_MESSAGE_COMPLETED,
    EVENT_MESSAGE_DELTA,
    EVENT_TASK_COMPLETED,
    EVENT_TASK_QUEUED,
    EVENT_TASK_STARTED,
    TASK_KINDS,
    ChatMessage,
    Completion,
    ErrorInfo,
    Event,
    EventsPage,
    ResultsPage,
    SessionInfo,
    SessionSnapshot,
    TaskRecord,
    TaskStatus,
    Write,
    new_id,
)
from greenroom.settings import LimitsSettings
from greenroom.typing import AgentContext

Effects = list[fx.Effect]
Continuation = Callable[[Any, float], Effects]

STORE_RETRY_S = 1.0
"""How long a completion (or a turn's end) that could not be stored waits to retry."""


@dataclass(slots=True)
class _Waiter:
    reply: ReplyTo
    task_id: str | None = None  # a task waiter; else a results waiter
    after: int = 0
    limit: int = 100
    request_id: str | None = None


class SessionCore:
    """State and rules of one session.

    Args:
        snapshot: the session as stored.
        limits: the configured bounds.
        agents: the names of the agents that exist (read when a turn or task starts).
        log_content: whether log lines may carry prompt and answer text.
    """

    def __init__(
        self,
        snapshot: SessionSnapshot,
        limits: LimitsSettings,
        agents: Collection[str],
        *,
        log_content: bool = False,
    ) -> None:
        self.limits = limits
        self.agents = agents
        self.log_content = log_content
        self.record = snapshot.session
        self.id = snapshot.session.id
        self.transcript = list(snapshot.messages)
        self.tasks: dict[str, TaskRecord] = {t.id: t for t in snapshot.tasks}
        self.result_seqs: list[int] = sorted(t.seq for t in snapshot.tasks if t.seq is not None)
        self.by_seq = {t.seq: t.id for t in snapshot.tasks if t.seq is not None}
        self.idem = {t.idempotency_key: t.id for t in snapshot.tasks if t.idempotency_key}
        self.last_seq = snapshot.last_seq
        self.acked_up_to = snapshot.acked_up_to
        self.ring: deque[Event] = deque(snapshot.recent_events, maxlen=limits.replay_events)
        self.turn_id: str | None = None
        self.waiters: dict[str, _Waiter] = {}  # every parked waiter by id
        # Indexes over `waiters`: a completion wakes its task's waiters without a scan
        # (a scan made completing n tasks with n waiters O(n^2)), and the results ones.
        self._task_waiters: dict[str, set[str]] = {}
        self._result_waiters: set[str] = set()
        self.completions: dict[int, Completion] = {}  # by seq: built once, read many times
        self.subscribers: dict[str, m.Subscriber] = {}
        self.pending: Continuation | None = None  # waiting for an effect's outcome

    # --- entry points -----------------------------------------------------------------

    def handle(self, msg: Any, now: float) -> Effects:
        """One message in, effects out. Errors meant for the caller become a Refuse.

        Raises:
            RuntimeError: a message arrived while an effect's outcome is awaited (the
                shell must not do that), or the message type is unknown.
        """
        if self.pending is not None:
            raise RuntimeError(f"session {self.id}: message while an effect is pending")
        handler = _HANDLERS.get(type(msg))
        if handler is None:
            raise RuntimeError(f"unknown message {type(msg).__name__}")
        try:
            return handler(self, msg, now)
        except (GreenroomError, LookupError, ValueError, TypeError) as exc:
            reply = getattr(msg, "reply", None)
            if reply is None:
                raise
            return [fx.Refuse(reply, exc)]

    def resolve(self, outcome: Any, now: float) -> Effects:
        """The outcome of the pending effect: None, a loaded value, or the exception.

        Raises:
            RuntimeError: no effect is pending.
        """
        step = self.pending
        if step is None:
            raise RuntimeError(f"session {self.id}: no effect is pending")
        self.pending = None
        return step(outcome, now)

    def _await(self, effect: fx.Effect, then: Continuation) -> Effects:
        self.pending = then
        return [effect]

    def _persist(self, write: Write, then: Continuation) -> Effects:
        return self._await(fx.Persist(write), then)

    # --- state queries ----------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Nothing running, waiting or listening: safe to passivate."""
        if self.pending is not None or self.turn_id or self.waiters or self.subscribers:
            return False
        return all(t.status.terminal for t in self.tasks.values())

    def info(self) -> SessionInfo:
        """The session as the API shows it."""
        counts: dict[str, int] = {}
        for task in self.tasks.values():
            counts[task.status.value] = counts.get(task.status.value, 0) + 1
        record = self.record
        return SessionInfo(
            id=record.id,
            agent=record.agent,
            created_at=record.created_at,
            metadata=dict(record.metadata),
            task_counts=counts,
            last_seq=self.last_seq,
            acked_up_to=self.acked_up_to,
            turn_running=self.turn_id is not None,
            messages=len(self.transcript),
        )

    def passivate(self, error: BaseException) -> Effects:
        """Let go of everyone listening: waiters get ``error``, streams are closed."""
        out: Effects = [fx.Refuse(w.reply, error) for w in self.waiters.values()]
        self.waiters.clear()
        self._task_waiters.clear()
        self._result_waiters.clear()
        if self.subscribers:
            out.append(fx.CloseStreams(tuple(self.subscribers.values())))
            self.subscribers.clear()
        return out

    # --- turns ------------------------------------------------------------------------

    def resume_turn(self, running: Container[str]) -> None:
        """After a re-activation: if the transcript ends with a user message whose turn is
        still ``running`` in this process, that turn is this session's turn again (its
        end will be recorded; no other turn starts meanwhile)."""
        last = self.transcript[-1] if self.transcript else None
        if last is not None and last.role == "user" and last.turn_id in running:
            self.turn_id = last.turn_id

    def _start_turn(self, msg: m.StartTurn, now: float) -> Effects:
        if self.turn_id is not None:
            raise TurnInProgressError(f"session {self.id} is already running turn {self.turn_id}")
        _check_text("content", msg.content, self.limits.max_prompt_chars)
        self._check_agent(self.record.agent)
        turn_id = new_id("turn")
        user = ChatMessage("user", msg.content, now, turn_id)

        def stored(error: Any, now: float) -> Effects:
            if error is not None:
                return [fx.Refuse(msg.reply, error)]
            self.transcript.append(user)
            self.turn_id = turn_id
            if msg.subscriber is not None:
                self.subscribers[msg.subscriber.id] = replace(msg.subscriber, turn_id=turn_id)
            ctx = AgentContext(session_id=self.id, turn_id=turn_id, request_id=msg.request_id)
            history = [c.to_chat() for c in self.transcript]
            fields = self._text("content", msg.content)
            return [
                fx.Answer(msg.reply, turn_id),
                fx.Log("info", "turn_started", dict(turn_id=turn_id, **fields)),
                fx.RunTurn(self.record.agent, history, ctx),
            ]

        return self._persist(Write(self.id, messages=(user,)), stored)

    def _turn_delta(self, msg: m.TurnDelta, now: float) -> Effects:
        if msg.turn_id != self.turn_id:
            return []
        return self._publish(
            Event(EVENT_MESSAGE_DELTA, {"turn_id": msg.turn_id, "content": msg.chunk}, ts=now)
        )

    def _turn_done(self, msg: m.TurnDone, now: float) -> Effects:
        if msg.turn_id != self.turn_id:
            return []
        seq = self.last_seq + 1
        data: dict[str, Any] = {"turn_id": msg.turn_id}
        answer = None
        if msg.content is not None:
            answer = ChatMessage("assistant", msg.content, now, msg.turn_id, seq)
            data.update(status="completed", message=answer.to_json())
        else:
            etype, emessage = msg.error or ("AgentError", "the turn failed")
            data.update(status="failed", error={"type": etype, "message": emessage})
        event = Event(EVENT_MESSAGE_COMPLETED, data, seq, now)
        write = Write(self.id, messages=(answer,) if answer else (), events=(event,))

        def stored(error: Any, now: float) -> Effects:
            if error is not None:
                log = fx.Log(
                    "error", "turn_store_failed", {"turn_id": msg.turn_id, "error": str(error)}
                )
                return [log, fx.Later(STORE_RETRY_S, msg)]
            self.last_seq = seq
            if answer is not None:
                self.transcript.append(answer)
            self.turn_id = None
            out = [self._turn_log(msg, data, seq), fx.Recorded(msg.turn_id), *self._publish(event)]
            for sub_id in [s.id for s in self.subscribers.values() if s.turn_id == msg.turn_id]:
                del self.subscribers[sub_id]
            return out

        return self._persist(write, stored)

    def _turn_log(self, msg: m.TurnDone, data: dict[str, Any], seq: int) -> fx.Log:
        if msg.content is not None:
            fields = dict(turn_id=msg.turn_id, chars=len(msg.content), seq=seq)
            fields.update(self._text("answer", msg.content), duration_ms=msg.duration_ms)
            return fx.Log("info", "turn_completed", fields)
        error = data["error"]
        fields = dict(turn_id=msg.turn_id, error_type=error["type"], error=error["message"])
        return fx.Log("warning", "turn_failed", dict(fields, duration_ms=msg.duration_ms))

    def _messages(self, msg: m.GetMessages, now: float) -> Effects:
        return [fx.Answer(msg.reply, list(self.transcript))]

    # --- tasks ------------------------------------------------------------------------

    def _start_task(self, msg: m.StartTask, now: float) -> Effects:
        task, history = self._new_task(msg, now)
        if msg.idempotency_key and msg.idempotency_key in self.idem:
            first = self.tasks[self.idem[msg.idempotency_key]]
            if _request_of(first) != _request_of(task):
                raise IdempotencyKeyReusedError(
                    f"Idempotency-Key {msg.idempotency_key!r} already started task "
                    f"{first.id} with a different request; use a new key"
                )
            log = fx.Log("info", "task_idempotent_replay", {"task_id": first.id})
            return [log, fx.Answer(msg.reply, first.info())]
        if len(self.tasks) >= self.limits.max_tasks_per_session:
            raise CapacityError(
                f"session {self.id} keeps {len(self.tasks)} tasks "
                "(limits.max_tasks_per_session); acknowledge results to free them"
            )

        def reserved(error: Any, now: float) -> Effects:
            if error is not None:
                return [fx.Refuse(msg.reply, error)]
            event = Event(EVENT_TASK_QUEUED, {"task": task.to_json()}, self.last_seq + 1, now)
            write = Write(self.id, tasks=(task,), events=(event,))
            return self._persist(
                write, lambda error, now: self._task_queued(msg, task, history, event, error)
            )

        return self._await(fx.Reserve(task.id), reserved)

    def _task_queued(
        self, msg: m.StartTask, task: TaskRecord, history: Any, event: Event, error: Any
    ) -> Effects:
        if error is not None:
            return [fx.Release(task.id), fx.Refuse(msg.reply, error)]
        self.last_seq = event.seq or self.last_seq
        self.tasks[task.id] = task
        if task.idempotency_key:
            self.idem[task.idempotency_key] = task.id
        fields = dict(task_id=task.id, kind=task.kind, agent=task.agent, seq=event.seq)
        fields.update(self._text("prompt", task.prompt))
        return [
            fx.Answer(msg.reply, task.info()),
            fx.Log("info", "task_queued", fields),
            *self._publish(event),
            fx.Submit(task, history),
        ]

    def _new_task(self, msg: m.StartTask, now: float) -> tuple[TaskRecord, Any]:
        limits = self.limits
        if msg.kind not in TASK_KINDS:
            raise ValueError(f"kind: must be one of {', '.join(TASK_KINDS)}, got {msg.kind!r}")
        _check_text("prompt", msg.prompt, limits.max_prompt_chars)
        if msg.timeout_s is not None and not 0 < msg.timeout_s <= limits.task_timeout_s:
            raise ValueError(
                f"timeout_s: must be > 0 and <= {limits.task_timeout_s}, got {msg.timeout_s}"
            )
        attempts = msg.max_attempts
        if not isinstance(attempts, int) or not 1 <= attempts <= limits.max_task_attempts:
            raise ValueError(
                f"max_attempts: must be an integer from 1 to {limits.max_task_attempts} "
                f"(limits.max_task_attempts), got {attempts!r}"
            )
        agent = msg.agent or self.record.agent
        self._check_agent(agent)
        task = TaskRecord(
            id=new_id("tsk"),
            session_id=self.id,
            kind=msg.kind,
            agent=agent,
            prompt=msg.prompt,
            status=TaskStatus.QUEUED,
            created_at=now,
            timeout_s=msg.timeout_s or limits.task_timeout_s,  # the effective timeout
            idempotency_key=msg.idempotency_key,
            request_id=msg.request_id,
            max_attempts=attempts,
        )
        user = {"role": "user", "content": msg.prompt}
        history = [c.to_chat() for c in self.transcript] if msg.kind == "side" else []
        return task, [*history, user]

    def _task_started(self, msg: m.TaskStarted, now: float) -> Effects:
        task = self.tasks.get(msg.task_id)
        if task is None or task.status is not TaskStatus.QUEUED:
            return []
        started = task.evolve(
            status=TaskStatus.RUNNING, started_at=msg.started_at, attempt=msg.attempt
        )
        event = Event(EVENT_TASK_STARTED, {"task": started.to_json()}, self.last_seq + 1, now)

        def stored(error: Any, now: float) -> Effects:
            if error is not None:  # the completion that follows records the task anyway
                return [fx.Log("warning", "task_start_store_failed", {"task_id": task.id})]
            if self.tasks[task.id].status is not TaskStatus.QUEUED:
                return []
            self.last_seq = event.seq or self.last_seq
            self.tasks[task.id] = started
            return self._publish(event)

        return self._persist(Write(self.id, tasks=(started,), events=(event,)), stored)

    def _task_completed(self, msg: m.TaskCompleted, now: float) -> Effects:
        done = msg.task
        task = self.tasks.get(done.id)
        if task is None:
            return [
                fx.Log("warning", "completion_for_unknown_task", {"task_id": done.id}),
                fx.Recorded(done.id),
            ]
        if task.status.terminal:
            fields = {"task_id": done.id, "status": done.status.value}
            return [fx.Log("info", "duplicate_completion_ignored", fields), fx.Recorded(done.id)]
        seq = self.last_seq + 1
        final = task.evolve(
            status=done.status,
            content=done.content,
            error=done.error,
            finished_at=done.finished_at or now,
            seq=seq,
            started_at=done.started_at or task.started_at,
        )
        completion = final.completion()
        event = Event(EVENT_TASK_COMPLETED, completion.to_json(), seq, now)

        def stored(error: Any, now: float) -> Effects:
            if error is not None:
                # The completion must not be lost: retry until the store takes it.
                fields = {"task_id": done.id, "error": str(error)}
                return [
                    fx.Log("error", "completion_store_failed", fields),
                    fx.Later(STORE_RETRY_S, msg),
                ]
            self.last_seq = seq
            self.tasks[task.id] = final
            self.result_seqs.append(seq)
            self.by_seq[seq] = task.id
            self.completions[seq] = completion
            recorded: dict[str, Any] = dict(task_id=task.id, status=final.status.value, seq=seq)
            recorded.update(self._text("content", final.content or ""))
            recorded["request_id"] = msg.request_id
            return [
                fx.Log("info", "completion_recorded", recorded),
                fx.Recorded(task.id),
                *self._publish(event),
                *self._wake(task.id),
            ]

        return self._persist(Write(self.id, tasks=(final,), events=(event,)), stored)

    def _recover(self, msg: m.Recover, now: float) -> Effects:
        """A task the last process left queued or running: queue it again, or record it
        ``interrupted`` when it was running and has no attempt left."""
        task = self.tasks.get(msg.task_id)
        if task is None or task.status.terminal:
            return []
        # A running task has used at least one attempt (rows from before attempts were
        # counted say 0).
        used = max(task.attempt, 1) if task.status is TaskStatus.RUNNING else task.attempt
        if task.status is TaskStatus.RUNNING and used >= task.max_attempts:
            interrupted = task.evolve(
                status=TaskStatus.INTERRUPTED,
                finished_at=now,
                error=ErrorInfo("Interrupted", "interrupted by restart"),
            )
            return self._task_completed(m.TaskCompleted(interrupted, task.request_id), now)
        history = self._history_for(task)

        def reserved(error: Any, now: float) -> Effects:
            if error is not None:  # shutting down already: the next start recovers it
                return [fx.Log("warning", "task_requeue_refused", {"task_id": task.id})]
            fields = {"task_id": task.id, "was": task.status.value, "attempt": task.attempt}
            log = fx.Log("warning", "task_requeued", dict(fields, request_id=task.request_id))
            if task.status is TaskStatus.QUEUED:
                return [log, fx.Submit(task, history)]
            queued = task.evolve(status=TaskStatus.QUEUED, started_at=None, attempt=used)
            data = {"task": queued.to_json(), "requeued": True}
            event = Event(EVENT_TASK_QUEUED, data, self.last_seq + 1, now)

            def stored(error: Any, now: float) -> Effects:
                if error is not None:
                    return [fx.Release(task.id), fx.Later(STORE_RETRY_S, msg)]
                self.last_seq = event.seq or self.last_seq
                self.tasks[task.id] = queued
                return [log, *self._publish(event), fx.Submit(queued, history)]

            return self._persist(Write(self.id, tasks=(queued,), events=(event,)), stored)

        return self._await(fx.Reserve(task.id, force=True), reserved)

    def _history_for(self, task: TaskRecord) -> Any:
        """What the agent starts from: the transcript up to the task for a side
        question, only the prompt for a background job."""
        user = {"role": "user", "content": task.prompt}
        if task.kind != "side":
            return [user]
        earlier = [c.to_chat() for c in self.transcript if c.created_at <= task.created_at]
        return [*earlier, user]

    def _get_task(self, msg: m.GetTask, now: float) -> Effects:
        task = self._task(msg.task_id)
        if msg.wait and not task.status.terminal and msg.waiter_id:
            self._park(msg.waiter_id, _Waiter(msg.reply, task.id, request_id=msg.request_id))
            return []
        return self._task_answer(msg.reply, task, msg.request_id)

    def _task_answer(self, reply: ReplyTo, task: TaskRecord, request_id: str | None) -> Effects:
        fields = {"task_id": task.id, "status": task.status.value, "request_id": request_id}
        return [fx.Log("info", "task_read", fields), fx.Answer(reply, task.info())]

    def _list_tasks(self, msg: m.ListTasks, now: float) -> Effects:
        return [fx.Answer(msg.reply, [t.info() for t in self.tasks.values()])]

    def _cancel_task(self, msg: m.CancelTask, now: float) -> Effects:
        task = self._task(msg.task_id)
        if task.status.terminal:
            return [fx.Answer(msg.reply, task.info())]
        # Answer once the completion is recorded, so the caller sees the final status.
        self._park(new_id("w"), _Waiter(msg.reply, task.id, request_id=msg.request_id))
        return [
            fx.Log("info", "task_cancel_requested", {"task_id": task.id}),
            fx.StopTask(task.id, msg.request_id),
        ]

    # --- results ----------------------------------------------------------------------

    def _get_results(self, msg: m.GetResults, now: float) -> Effects:
        page = self._results_after(msg.after, msg.limit)
        if not page.results and msg.wait and msg.waiter_id:
            waiter = _Waiter(msg.reply, after=msg.after, limit=msg.limit, request_id=msg.request_id)
            self._park(msg.waiter_id, waiter)
            return []
        return self._results_answer(msg.reply, page, msg.after, msg.request_id)

    def _results_after(self, after: int, limit: int) -> ResultsPage:
        start = bisect.bisect_right(self.result_seqs, after)
        seqs = self.result_seqs[start : start + limit]
        found = tuple(self._completion(s) for s in seqs)
        more = start + limit < len(self.result_seqs)
        return ResultsPage(found, seqs[-1] if seqs else after, more)

    def _results_answer(
        self, reply: ReplyTo, page: ResultsPage, after: int, request_id: str | None
    ) -> Effects:
        fields = dict(after=after, count=len(page), seqs=[c.seq for c in page.results])
        fields.update(has_more=page.has_more, request_id=request_id)
        return [fx.Log("info", "results_read", fields), fx.Answer(reply, page)]

    def _completion(self, seq: int) -> Completion:
        done = self.completions.get(seq)
        if done is None:
            done = self.completions[seq] = self.tasks[self.by_seq[seq]].completion()
        return done

    def _drop_waiter(self, msg: m.DropWaiter, now: float) -> Effects:
        self._unpark(msg.waiter_id)
        return []

    def _park(self, waiter_id: str, waiter: _Waiter) -> None:
        self.waiters[waiter_id] = waiter
        if waiter.task_id is None:
            self._result_waiters.add(waiter_id)
        else:
            self._task_waiters.setdefault(waiter.task_id, set()).add(waiter_id)

    def _unpark(self, waiter_id: str) -> _Waiter | None:
        waiter = self.waiters.pop(waiter_id, None)
        if waiter is None:
            return None
        if waiter.task_id is None:
            self._result_waiters.discard(waiter_id)
        else:
            ids = self._task_waiters.get(waiter.task_id)
            if ids is not None:
                ids.discard(waiter_id)
                if not ids:
                    del self._task_waiters[waiter.task_id]
        return waiter

    def _ack(self, msg: m.Ack, now: float) -> Effects:
        if msg.up_to < 0:
            raise ValueError(f"up_to: must be >= 0, got {msg.up_to}")
        if msg.up_to > self.last_seq:
            raise AckBeyondLastSeqError(
                f"up_to: {msg.up_to} is past the session's last seq {self.last_seq}"
            )
        log = fx.Log("info", "results_acked", {"up_to": msg.up_to})
        if msg.up_to <= self.acked_up_to:
            return [log, fx.Answer(msg.reply, self.acked_up_to)]

        def stored(error: Any, now: float) -> Effects:
            if error is not None:
                return [fx.Refuse(msg.reply, error)]
            self.acked_up_to = max(self.acked_up_to, msg.up_to)
            return [log, fx.Answer(msg.reply, self.acked_up_to)]

        return self._persist(Write(self.id, acked_up_to=msg.up_to), stored)

    def _wake(self, task_id: str) -> Effects:
        out: Effects = []
        for waiter_id in sorted(self._task_waiters.pop(task_id, ())):
            waiter = self.waiters.pop(waiter_id)
            out += self._task_answer(waiter.reply, self.tasks[task_id], waiter.request_id)
        for waiter_id in list(self._result_waiters):
            waiter = self.waiters[waiter_id]
            page = self._results_after(waiter.after, waiter.limit)
            if page.results:
                self._unpark(waiter_id)
                out += self._results_answer(waiter.reply, page, waiter.after, waiter.request_id)
        return out

    # --- events -----------------------------------------------------------------------

    def _subscribe(self, msg: m.Subscribe, now: float) -> Effects:
        """Go live after replaying from memory; or answer None when the subscriber is
        further behind than the memory ring reaches (it pages with GetEvents first)."""
        after = msg.after
        self._check_resume(after)
        if after is None or after >= self.last_seq:
            return self._subscribed(msg, [])
        if not self._ring_covers(after):
            return [fx.Answer(msg.reply, None)]
        return self._subscribed(msg, [e for e in self.ring if e.seq is not None and e.seq > after])

    def _get_events(self, msg: m.GetEvents, now: float) -> Effects:
        after, limit = msg.after, msg.limit
        self._check_resume(after)
        if after >= self.last_seq or self._ring_covers(after):
            events = [e for e in self.ring if e.seq is not None and e.seq > after][:limit]
            return [fx.Answer(msg.reply, self._events_page(after, None, events, now))]

        def loaded(outcome: Any, now: float) -> Effects:
            if isinstance(outcome, BaseException):
                return [fx.Refuse(msg.reply, outcome)]
            first, events = outcome
            return [fx.Answer(msg.reply, self._events_page(after, first, events, now))]

        return self._await(fx.LoadEvents(after, limit), loaded)

    def _events_page(
        self, after: int, first: int | None, events: list[Event], now: float
    ) -> EventsPage:
        out = list(events)
        next_after = events[-1].seq or after if events else after
        if first is not None or not events:
            gap_to = (first - 1) if first is not None else self.last_seq
            if gap_to > after and not (events and events[0].seq == after + 1):
                out.insert(0, _gap(after, gap_to, first, now))
                next_after = max(next_after, gap_to)
        return EventsPage(tuple(out), next_after, next_after < self.last_seq)

    def _ring_covers(self, after: int) -> bool:
        ring = self.ring
        return bool(ring) and ring[0].seq is not None and ring[0].seq <= after + 1

    def _check_resume(self, after: int | None) -> None:
        if after is not None and after > self.last_seq:
            raise ResumeBeyondLastSeqError(
                f"after: {after} is past the session's last seq {self.last_seq}"
            )

    def _subscribed(self, msg: m.Subscribe, replay: list[Event]) -> Effects:
        sub = msg.subscriber
        self.subscribers[sub.id] = sub
        out: Effects = [fx.Publish(event, (sub,)) for event in replay]
        out.append(fx.Answer(msg.reply, self.last_seq))
        return out

    def _unsubscribe(self, msg: m.Unsubscribe, now: float) -> Effects:
        self.subscribers.pop(msg.subscriber_id, None)
        return []

    def _publish(self, event: Event) -> Effects:
        if event.seq is not None:
            self.ring.append(event)
        turn_id = event.data.get("turn_id")
        subs = tuple(
            s for s in self.subscribers.values() if s.turn_id is None or s.turn_id == turn_id
        )
        return [fx.Publish(event, subs)] if subs else []

    def _info(self, msg: m.GetInfo, now: float) -> Effects:
        return [fx.Answer(msg.reply, self.info())]

    # --- helpers ----------------------------------------------------------------------

    def _text(self, key: str, text: str) -> dict[str, Any]:
        """Prompt/answer text for a log line: the text itself only with log_content."""
        return content_fields(text, self.log_content, key)

    def _task(self, task_id: str) -> TaskRecord:
        task = self.tasks.get(task_id)
        if task is None:
            raise TaskNotFoundError(f"session {self.id} has no task {task_id!r}")
        return task

    def _check_agent(self, name: str) -> None:
        if name not in self.agents:
            known = ", ".join(sorted(self.agents)) or "none"
            raise AgentNotFoundError(f"unknown agent {name!r} (known: {known})")


_HANDLERS: dict[type, Callable[[SessionCore, Any, float], Effects]] = {
    m.GetInfo: SessionCore._info,
    m.StartTurn: SessionCore._start_turn,
    m.TurnDelta: SessionCore._turn_delta,
    m.TurnDone: SessionCore._turn_done,
    m.GetMessages: SessionCore._messages,
    m.StartTask: SessionCore._start_task,
    m.TaskStarted: SessionCore._task_started,
    m.TaskCompleted: SessionCore._task_completed,
    m.Recover: SessionCore._recover,
    m.Activate: lambda core, msg, now: [],
    m.GetTask: SessionCore._get_task,
    m.ListTasks: SessionCore._list_tasks,
    m.CancelTask: SessionCore._cancel_task,
    m.GetResults: SessionCore._get_results,
    m.DropWaiter: SessionCore._drop_waiter,
    m.Ack: SessionCore._ack,
    m.Subscribe: SessionCore._subscribe,
    m.GetEvents: SessionCore._get_events,
    m.Unsubscribe: SessionCore._unsubscribe,
}


def _gap(after: int, last_pruned: int, first: int | None, now: float) -> Event:
    """Names exactly the seqs that retention pruned, and nothing else."""
    return Event(
        "stream.gap",
        {
            "after": after,
            "missing_from": after + 1,
            "missing_to": last_pruned,
            "first_available": first,
            "message": f"events {after + 1} to {last_pruned} were pruned",
        },
        ts=now,
    )


def _request_of(task: TaskRecord) -> tuple[Any, ...]:
    """What a retried request must repeat for its Idempotency-Key to mean the same task."""
    return (task.prompt, task.kind, task.agent, task.timeout_s, task.max_attempts)


def _check_text(name: str, value: Any, max_chars: int) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name}: must not be empty")
    if len(value) > max_chars:
        raise ValueError(
            f"{name}: {len(value)} characters exceeds limits.max_prompt_chars ({max_chars})"
        )


__all__ = ["STORE_RETRY_S", "SessionCore"]
