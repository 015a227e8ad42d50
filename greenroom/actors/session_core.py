"""The session state machine: one conversation, its tasks and its results log.

Plain Python, no threads: the pykka shell (``session.py``) feeds it one message at a
time. Every handler persists first and only then changes memory and tells anyone
(invariant 3): if the store write fails, nothing is visible and the caller gets the
error.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import structlog

from greenroom.actors import bridge
from greenroom.actors.bridge import Reply
from greenroom.actors.messages import (
    Ack,
    Cancel,
    CancelTask,
    GetInfo,
    GetMessages,
    GetResults,
    GetTask,
    ListTasks,
    StartTask,
    StartTurn,
    Subscribe,
    Subscriber,
    TaskCompleted,
    TaskStarted,
    TurnDelta,
    TurnDone,
)
from greenroom.actors.runtime import Runtime
from greenroom.actors.scheduler import TaskSpec
from greenroom.errors import (
    CapacityError,
    ShuttingDownError,
    StoreError,
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
    ErrorInfo,
    Event,
    SessionSnapshot,
    TaskRecord,
    TaskStatus,
    new_id,
    now,
)
from greenroom.typing import AgentContext

log = structlog.get_logger("greenroom")


@dataclass(slots=True)
class _Waiter:
    reply: Reply
    task_id: str | None = None  # a task waiter; else a results waiter
    after: int = 0
    limit: int = 100
    request_id: str | None = None


class SessionCore:
    """State and rules of one session. ``self_ref`` is the shell's actor ref."""

    def __init__(self, runtime: Runtime, snapshot: SessionSnapshot, self_ref: Any) -> None:
        self.rt = runtime
        self.ref = self_ref
        self.record = snapshot.session
        self.id = snapshot.session.id
        self.transcript = list(snapshot.messages)
        self.tasks: dict[str, TaskRecord] = {t.id: t for t in snapshot.tasks}
        self.result_seqs: list[int] = sorted(t.seq for t in snapshot.tasks if t.seq is not None)
        self.by_seq = {t.seq: t.id for t in snapshot.tasks if t.seq is not None}
        self.idem = {t.idempotency_key: t.id for t in snapshot.tasks if t.idempotency_key}
        self.last_seq = snapshot.last_seq
        self.acked_up_to = snapshot.acked_up_to
        self.ring: deque[Event] = deque(
            snapshot.recent_events, maxlen=runtime.settings.limits.replay_events
        )
        self.turn_id: str | None = None
        self.waiters: dict[str, _Waiter] = {}
        self.subscribers: dict[str, Subscriber] = {}
        self.log = log.bind(actor="session", session_id=self.id)

    # --- state queries ----------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Nothing running, waiting or listening: safe to passivate."""
        busy = any(not t.status.terminal for t in self.tasks.values())
        return not (busy or self.turn_id or self.waiters or self.subscribers)

    def info(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for task in self.tasks.values():
            counts[task.status.value] = counts.get(task.status.value, 0) + 1
        return {
            **self.record.to_json(),
            "task_counts": counts,
            "last_seq": self.last_seq,
            "acked_up_to": self.acked_up_to,
            "turn_running": self.turn_id is not None,
            "messages": len(self.transcript),
        }

    # --- turns ------------------------------------------------------------------------

    def start_turn(self, msg: StartTurn) -> None:
        self._check_open()
        if self.turn_id is not None:
            raise TurnInProgressError(f"session {self.id} is already running turn {self.turn_id}")
        _check_text("content", msg.content, self.rt.settings.limits.max_prompt_chars)
        agent = self.rt.agent(self.record.agent)
        turn_id = new_id("turn")
        user = ChatMessage("user", msg.content, now(), turn_id)
        self.rt.store.commit(self.id, messages=[user])
        self.transcript.append(user)
        self.turn_id = turn_id
        if msg.subscriber is not None:
            self.subscribers[msg.subscriber.id] = replace(msg.subscriber, turn_id=turn_id)
        msg.reply.send(turn_id)
        self.log.info(
            "turn_started",
            turn_id=turn_id,
            request_id=msg.request_id,
            **self._text("content", msg.content),
        )
        ctx = AgentContext(session_id=self.id, turn_id=turn_id, request_id=msg.request_id)
        history = [m.to_chat() for m in self.transcript]
        self.rt.spawn(self.rt.run_turn(self.ref, agent, history, ctx))

    def turn_delta(self, msg: TurnDelta) -> None:
        if msg.turn_id == self.turn_id:
            self._publish(
                Event(EVENT_MESSAGE_DELTA, {"turn_id": msg.turn_id, "content": msg.chunk})
            )

    def turn_done(self, msg: TurnDone) -> None:
        if msg.turn_id != self.turn_id:
            return
        seq = self.last_seq + 1
        data: dict[str, Any] = {"turn_id": msg.turn_id}
        messages: list[ChatMessage] = []
        if msg.content is not None:
            answer = ChatMessage("assistant", msg.content, now(), msg.turn_id, seq)
            messages.append(answer)
            data.update(status="completed", message=answer.to_json())
        else:
            etype, emessage = msg.error or ("AgentError", "the turn failed")
            data.update(status="failed", error={"type": etype, "message": emessage})
        event = Event(EVENT_MESSAGE_COMPLETED, data, seq)
        self.rt.store.commit(self.id, messages=messages, events=[event])
        self.last_seq = seq
        self.transcript.extend(messages)
        self.turn_id = None
        if msg.content is not None:
            self.log.info(
                "turn_completed",
                turn_id=msg.turn_id,
                chars=len(msg.content),
                **self._text("answer", msg.content),
                duration_ms=msg.duration_ms,
                seq=seq,
            )
        else:
            self.log.warning(
                "turn_failed",
                turn_id=msg.turn_id,
                error_type=data["error"]["type"],
                error=data["error"]["message"],
                duration_ms=msg.duration_ms,
            )
        self._publish(event)
        for sub_id in [s.id for s in self.subscribers.values() if s.turn_id == msg.turn_id]:
            del self.subscribers[sub_id]

    def messages(self, msg: GetMessages) -> None:
        msg.reply.send([m.to_json() for m in self.transcript])

    # --- tasks ------------------------------------------------------------------------

    def start_task(self, msg: StartTask) -> None:
        self._check_open()
        if msg.idempotency_key and msg.idempotency_key in self.idem:
            task = self.tasks[self.idem[msg.idempotency_key]]
            self.log.info("task_idempotent_replay", task_id=task.id, request_id=msg.request_id)
            msg.reply.send(task.to_json())
            return
        spec = self._new_task(msg)
        self.rt.scheduler.reserve()
        event = Event(EVENT_TASK_QUEUED, {"task": spec.task.to_json()}, self.last_seq + 1)
        try:
            self.rt.store.commit(self.id, tasks=[spec.task], events=[event])
        except BaseException:
            self.rt.scheduler.release()
            raise
        self.last_seq = event.seq or self.last_seq
        self._remember(spec.task)
        msg.reply.send(spec.task.to_json())
        self.log.info(
            "task_queued",
            task_id=spec.task.id,
            request_id=msg.request_id,
            kind=spec.task.kind,
            agent=spec.task.agent,
            seq=event.seq,
            **self._text("prompt", spec.task.prompt),
        )
        self._publish(event)
        self.rt.scheduler.submit(TaskSpec(replace(spec.task), spec.history))

    def _new_task(self, msg: StartTask) -> TaskSpec:
        limits = self.rt.settings.limits
        if msg.kind not in TASK_KINDS:
            raise ValueError(f"kind: must be one of {', '.join(TASK_KINDS)}, got {msg.kind!r}")
        _check_text("prompt", msg.prompt, limits.max_prompt_chars)
        if msg.timeout_s is not None and not 0 < msg.timeout_s <= limits.task_timeout_s:
            raise ValueError(
                f"timeout_s: must be > 0 and <= {limits.task_timeout_s}, got {msg.timeout_s}"
            )
        agent = msg.agent or self.record.agent
        self.rt.agent(agent)  # raises AgentNotFoundError
        if len(self.tasks) >= limits.max_tasks_per_session:
            raise CapacityError(
                f"session {self.id} keeps {len(self.tasks)} tasks "
                "(limits.max_tasks_per_session); acknowledge results to free them"
            )
        task = TaskRecord(
            id=new_id("tsk"),
            session_id=self.id,
            kind=msg.kind,
            agent=agent,
            prompt=msg.prompt,
            status=TaskStatus.QUEUED,
            created_at=now(),
            timeout_s=msg.timeout_s,
            idempotency_key=msg.idempotency_key,
            request_id=msg.request_id,
        )
        user = {"role": "user", "content": msg.prompt}
        history = [m.to_chat() for m in self.transcript] if msg.kind == "side" else []
        return TaskSpec(task, [*history, user])

    def _remember(self, task: TaskRecord) -> None:
        self.tasks[task.id] = task
        if task.idempotency_key:
            self.idem[task.idempotency_key] = task.id

    def task_started(self, msg: TaskStarted) -> None:
        task = self.tasks.get(msg.task_id)
        if task is None or task.status is not TaskStatus.QUEUED:
            return
        started = replace(task, status=TaskStatus.RUNNING, started_at=msg.started_at)
        event = Event(EVENT_TASK_STARTED, {"task": started.to_json()}, self.last_seq + 1)
        self.rt.store.commit(self.id, tasks=[started], events=[event])
        self.last_seq += 1
        self.tasks[task.id] = started
        self._publish(event)

    def task_completed(self, msg: TaskCompleted) -> None:
        done = msg.task
        task = self.tasks.get(done.id)
        if task is None:
            self.log.warning("completion_for_unknown_task", task_id=done.id)
            return
        if task.status.terminal:
            self.log.info("duplicate_completion_ignored", task_id=done.id, status=done.status.value)
            return
        seq = self.last_seq + 1
        final = replace(
            task,
            status=done.status,
            content=done.content,
            error=done.error,
            finished_at=done.finished_at or now(),
            seq=seq,
            started_at=done.started_at or task.started_at,
        )
        event = Event(EVENT_TASK_COMPLETED, final.completion().to_json(), seq)
        try:
            self.rt.store.commit(self.id, tasks=[final], events=[event])
        except StoreError as exc:
            # The completion must not be lost: keep retrying until the store takes it.
            self.log.error("completion_store_failed", task_id=done.id, error=str(exc))
            self.rt.call_later(1.0, self.id, msg)
            return
        self.last_seq = seq
        self.tasks[task.id] = final
        self.result_seqs.append(seq)
        self.by_seq[seq] = task.id
        self.log.info(
            "completion_recorded",
            task_id=task.id,
            status=final.status.value,
            seq=seq,
            **self._text("content", final.content or ""),
            request_id=msg.request_id,
        )
        self._publish(event)
        self._wake(task.id)

    def get_task(self, msg: GetTask) -> None:
        task = self._task(msg.task_id)
        if msg.wait and not task.status.terminal and msg.waiter_id:
            self.waiters[msg.waiter_id] = _Waiter(
                msg.reply, task_id=task.id, request_id=msg.request_id
            )
            return
        self.log.info(
            "task_read", task_id=task.id, status=task.status.value, request_id=msg.request_id
        )
        msg.reply.send(task.to_json())

    def list_tasks(self, msg: ListTasks) -> None:
        msg.reply.send([t.to_json() for t in self.tasks.values()])

    def cancel_task(self, msg: CancelTask) -> None:
        task = self._task(msg.task_id)
        if task.status.terminal:
            msg.reply.send(task.to_json())
            return
        retry = isinstance(msg.reply, _Sink)
        if not retry:
            self.log.info("task_cancel_requested", task_id=task.id, request_id=msg.request_id)
            # Answer once the completion is recorded, so the caller sees the final status.
            self.waiters[new_id("w")] = _Waiter(
                msg.reply, task_id=task.id, request_id=msg.request_id
            )
        if self.rt.scheduler.dequeue(task.id):
            cancelled = replace(
                task,
                status=TaskStatus.CANCELLED,
                finished_at=now(),
                error=ErrorInfo("Cancelled", "cancelled before it started"),
            )
            self.task_completed(TaskCompleted(cancelled, msg.request_id))
            return
        ref = self.rt.scheduler.actor_for(task.id)
        if ref is not None:
            bridge.tell(ref, Cancel(msg.request_id))
        else:
            # Its actor is being started right now: try again in a moment.
            self.rt.call_later(0.01, self.id, CancelTask(task.id, _Sink(), msg.request_id))

    # --- results ----------------------------------------------------------------------

    def get_results(self, msg: GetResults) -> None:
        found = self._results_after(msg.after, msg.limit)
        if not found and msg.wait and msg.waiter_id:
            self.waiters[msg.waiter_id] = _Waiter(
                msg.reply, after=msg.after, limit=msg.limit, request_id=msg.request_id
            )
            return
        self._send_results(msg.reply, found, msg.after, msg.request_id)

    def _results_after(self, after: int, limit: int) -> list[Any]:
        start = bisect.bisect_right(self.result_seqs, after)
        seqs = self.result_seqs[start : start + limit]
        return [self.tasks[self.by_seq[s]].completion() for s in seqs]

    def _send_results(
        self, reply: Reply, found: list[Any], after: int, request_id: str | None
    ) -> None:
        self.log.info(
            "results_read",
            after=after,
            count=len(found),
            seqs=[c.seq for c in found],
            request_id=request_id,
        )
        reply.send(found)

    def drop_waiter(self, waiter_id: str) -> None:
        self.waiters.pop(waiter_id, None)

    def ack(self, msg: Ack) -> None:
        if msg.up_to < 0 or msg.up_to > self.last_seq:
            raise ValueError(
                f"up_to: must be between 0 and the session's last seq "
                f"{self.last_seq}, got {msg.up_to}"
            )
        if msg.up_to > self.acked_up_to:
            self.rt.store.commit(self.id, acked_up_to=msg.up_to)
            self.acked_up_to = msg.up_to
        self.log.info("results_acked", up_to=msg.up_to, request_id=msg.request_id)
        msg.reply.send(self.acked_up_to)

    def _wake(self, task_id: str) -> None:
        for waiter_id, waiter in list(self.waiters.items()):
            if waiter.task_id == task_id:
                del self.waiters[waiter_id]
                self.log.info(
                    "task_read",
                    task_id=task_id,
                    request_id=waiter.request_id,
                    status=self.tasks[task_id].status.value,
                )
                waiter.reply.send(self.tasks[task_id].to_json())
            elif waiter.task_id is None:
                found = self._results_after(waiter.after, waiter.limit)
                if found:
                    del self.waiters[waiter_id]
                    self._send_results(waiter.reply, found, waiter.after, waiter.request_id)

    # --- events -----------------------------------------------------------------------

    def subscribe(self, msg: Subscribe) -> None:
        sub = msg.subscriber
        replay: list[Event] = []
        if msg.after is not None and msg.after < self.last_seq:
            replay = self._replay_after(msg.after)
        for event in replay:
            bridge.post_to_queue(sub.loop, sub.stream.deliver, event)
        self.subscribers[sub.id] = sub
        msg.reply.send(self.last_seq)

    def _replay_after(self, after: int) -> list[Event]:
        if self.ring and self.ring[0].seq is not None and self.ring[0].seq <= after + 1:
            return [e for e in self.ring if e.seq is not None and e.seq > after]
        limit = self.rt.settings.limits.replay_events
        first = self.rt.store.first_seq(self.id)
        events = self.rt.store.events_after(self.id, after, limit)
        if first is None or first > after + 1:
            gap = Event(
                "stream.gap",
                {
                    "after": after,
                    "first_available": first,
                    "message": "events before first_available were pruned",
                },
            )
            return [gap, *events]
        return events

    def unsubscribe(self, subscriber_id: str) -> None:
        self.subscribers.pop(subscriber_id, None)

    def _publish(self, event: Event) -> None:
        if event.seq is not None:
            self.ring.append(event)
        turn_id = event.data.get("turn_id")
        for sub in list(self.subscribers.values()):
            if sub.turn_id is not None and sub.turn_id != turn_id:
                continue
            if not bridge.post_to_queue(sub.loop, sub.stream.deliver, event):
                self.subscribers.pop(sub.id, None)

    def close_subscribers(self) -> None:
        for sub in self.subscribers.values():
            bridge.post_to_queue(sub.loop, sub.stream.close)
        self.subscribers.clear()

    # --- helpers ----------------------------------------------------------------------

    def _text(self, key: str, text: str) -> dict[str, Any]:
        """Prompt/answer text for a log line: the text itself only with log_content."""
        return content_fields(text, self.rt.settings.logging.log_content, key)

    def _task(self, task_id: str) -> TaskRecord:
        task = self.tasks.get(task_id)
        if task is None:
            raise TaskNotFoundError(f"session {self.id} has no task {task_id!r}")
        return task

    def _check_open(self) -> None:
        if self.rt.closing:
            raise ShuttingDownError("greenroom is shutting down; no new work is accepted")

    def info_message(self, msg: GetInfo) -> None:
        msg.reply.send(self.info())


class _Sink:
    """A reply nobody awaits (internal retries)."""

    def send(self, value: Any) -> None:
        pass

    def fail(self, error: BaseException) -> None:
        pass


def _check_text(name: str, value: Any, max_chars: int) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name}: must not be empty")
    if len(value) > max_chars:
        raise ValueError(
            f"{name}: {len(value)} characters exceeds limits.max_prompt_chars ({max_chars})"
        )


__all__ = ["SessionCore"]
