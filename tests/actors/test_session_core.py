"""SessionCore alone: messages and a fake clock in, effects out. No thread, loop or store.

Each test drives the state machine step by step and checks the effects it asks for,
in order — above all that nothing is answered or published before its write is
resolved (persist, then notify).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from greenroom.actors import effects as fx
from greenroom.actors import messages as m
from greenroom.actors.session_core import STORE_RETRY_S, SessionCore
from greenroom.errors import (
    AckBeyondLastSeqError,
    AgentNotFoundError,
    QueueFullError,
    ShuttingDownError,
    StoreError,
    TaskNotFoundError,
    TurnInProgressError,
)
from greenroom.models import (
    ChatMessage,
    Event,
    SessionRecord,
    SessionSnapshot,
    TaskRecord,
    TaskStatus,
)
from greenroom.settings import LimitsSettings

T0 = 1_000.0  # the fake clock


class Answered:
    """A reply the test reads back (the core treats replies as opaque)."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.errors: list[BaseException] = []

    def send(self, value: Any) -> None:
        self.values.append(value)

    def fail(self, error: BaseException) -> None:
        self.errors.append(error)


def core(**limits: Any) -> SessionCore:
    snapshot = SessionSnapshot(SessionRecord("ses_1", "echo", T0, {}), [], [], 0, 0, [])
    return SessionCore(snapshot, LimitsSettings(**limits), {"echo", "other"})


def deliver(effects: list[fx.Effect]) -> list[fx.Effect]:
    """Carry out the answers and refusals, as the shell would; return the effects."""
    for effect in effects:
        if isinstance(effect, fx.Answer):
            effect.to.send(effect.value)
        elif isinstance(effect, fx.Refuse):
            effect.to.fail(effect.error)
    return effects


def kinds(effects: list[fx.Effect]) -> list[str]:
    return [type(e).__name__ for e in effects]


def only(effects: list[fx.Effect], kind: type) -> Any:
    found = [e for e in effects if isinstance(e, kind)]
    assert len(found) == 1, effects
    return found[0]


def start_task(c: SessionCore, prompt: str = "p", **kw: Any) -> tuple[TaskRecord, Answered]:
    """Drive a start_task through reserve and a successful write; returns the task."""
    reply = Answered()
    msg = m.StartTask(prompt, kw.pop("kind", "background"), None, None, reply, **kw)  # type: ignore[arg-type]
    assert kinds(c.handle(msg, T0)) == ["Reserve"]
    persist = only(c.resolve(None, T0), fx.Persist)
    done = deliver(c.resolve(None, T0 + 1))
    submit = only(done, fx.Submit)
    assert reply.values and reply.values[-1].id == submit.task.id
    assert persist.write.tasks[0].id == submit.task.id
    return c.tasks[submit.task.id], reply


def complete(c: SessionCore, task: TaskRecord, content: str | None = "answer") -> list[fx.Effect]:
    ended = replace(task, status=TaskStatus.COMPLETED, content=content, finished_at=T0 + 5)
    only(c.handle(m.TaskCompleted(ended), T0 + 5), fx.Persist)
    return c.resolve(None, T0 + 5)


# --- tasks ----------------------------------------------------------------------------


def test_a_task_is_answered_and_published_only_after_its_queued_write_succeeds() -> None:
    c = core()
    reply = Answered()
    msg = m.StartTask("summarise", "background", None, None, reply)  # type: ignore[arg-type]
    assert kinds(c.handle(msg, T0)) == ["Reserve"]
    persist = c.resolve(None, T0)
    assert kinds(persist) == ["Persist"]  # nothing answered, published or submitted yet
    write = persist[0].write  # type: ignore[union-attr]
    assert [e.type for e in write.events] == ["task.queued"] and write.events[0].seq == 1
    assert write.tasks[0].created_at == T0  # the clock it was given, not the wall clock
    assert reply.values == [] and c.last_seq == 0 and c.tasks == {}
    with pytest.raises(RuntimeError, match="pending"):
        c.handle(m.ListTasks(Answered()), T0)  # type: ignore[arg-type]
    effects = deliver(c.resolve(None, T0))
    assert kinds(effects) == ["Answer", "Log", "Submit"]
    assert c.last_seq == 1 and reply.values[0].status == "queued"


def test_a_full_queue_refuses_the_task_and_changes_nothing() -> None:
    c = core()
    reply = Answered()
    msg = m.StartTask("p", "background", None, None, reply)  # type: ignore[arg-type]
    c.handle(msg, T0)
    effects = c.resolve(QueueFullError("full"), T0)
    assert kinds(effects) == ["Refuse"] and isinstance(effects[0].error, QueueFullError)  # type: ignore[union-attr]
    assert c.tasks == {} and c.last_seq == 0 and c.pending is None


def test_a_failed_queued_write_releases_the_place_and_refuses() -> None:
    c = core()
    reply = Answered()
    c.handle(m.StartTask("p", "background", None, None, reply), T0)  # type: ignore[arg-type]
    c.resolve(None, T0)
    effects = c.resolve(StoreError("disk full"), T0)
    assert kinds(effects) == ["Release", "Refuse"]
    assert c.tasks == {} and c.last_seq == 0 and not c.result_seqs


@pytest.mark.parametrize(
    ("prompt", "kind", "agent", "timeout_s", "error"),
    [
        ("", "background", None, None, ValueError),
        (7, "background", None, None, TypeError),
        ("p", "sideways", None, None, ValueError),
        ("p", "background", "nobody", None, AgentNotFoundError),
        ("p", "background", None, -1.0, ValueError),
    ],
)
def test_bad_task_input_is_refused_before_anything_is_reserved(
    prompt: Any, kind: str, agent: Any, timeout_s: Any, error: type
) -> None:
    c = core()
    reply = Answered()
    effects = c.handle(m.StartTask(prompt, kind, agent, timeout_s, reply), T0)  # type: ignore[arg-type]
    assert kinds(effects) == ["Refuse"] and isinstance(effects[0].error, error)  # type: ignore[union-attr]
    assert c.pending is None


def test_an_idempotency_key_replays_the_first_task() -> None:
    c = core()
    task, _ = start_task(c, idempotency_key="k1")
    again = Answered()
    msg = m.StartTask("p", "background", None, None, again, idempotency_key="k1")  # type: ignore[arg-type]
    assert kinds(deliver(c.handle(msg, T0))) == ["Log", "Answer"]
    assert again.values[0].id == task.id and len(c.tasks) == 1


def submitted_history(kind: str) -> list[str]:
    c = core()
    c.transcript.append(ChatMessage("user", "earlier", T0))
    c.handle(m.StartTask("q", kind, None, None, Answered()), T0)  # type: ignore[arg-type]
    c.resolve(None, T0)
    return [h["content"] for h in only(c.resolve(None, T0), fx.Submit).history]


def test_a_side_question_carries_the_transcript_and_a_background_job_does_not() -> None:
    assert submitted_history("side") == ["earlier", "q"]
    assert submitted_history("background") == ["q"]


def test_a_completion_is_visible_only_after_its_write_and_wakes_the_waiters() -> None:
    c = core()
    task, _ = start_task(c)
    poller, task_waiter = Answered(), Answered()
    c.handle(m.GetResults(0, 100, poller, wait=True, waiter_id="w1"), T0)  # type: ignore[arg-type]
    c.handle(m.GetTask(task.id, task_waiter, wait=True, waiter_id="w2"), T0)  # type: ignore[arg-type]
    assert poller.values == [] and set(c.waiters) == {"w1", "w2"}
    ended = replace(task, status=TaskStatus.COMPLETED, content="answer", finished_at=T0 + 5)
    assert kinds(c.handle(m.TaskCompleted(ended), T0 + 5)) == ["Persist"]
    assert poller.values == [] and list(c._results_after(0, 10)) == []  # not visible yet
    effects = deliver(c.resolve(None, T0 + 5))
    assert "Publish" not in kinds(effects)  # nobody subscribed
    assert [r.content for r in poller.values[0]] == ["answer"]
    assert task_waiter.values[0].status == "completed" and c.waiters == {}


def test_a_completion_that_cannot_be_stored_is_retried_and_never_shown() -> None:
    c = core()
    task, _ = start_task(c)
    ended = replace(task, status=TaskStatus.FAILED, finished_at=T0 + 5)
    msg = m.TaskCompleted(ended)
    c.handle(msg, T0 + 5)
    effects = c.resolve(StoreError("locked"), T0 + 5)
    retry = only(effects, fx.Later)
    assert retry.message is msg and retry.delay_s == STORE_RETRY_S
    assert c.tasks[task.id].status is TaskStatus.RUNNING or not c.tasks[task.id].status.terminal
    assert list(c._results_after(0, 10)) == [] and c.last_seq == 1
    c.handle(msg, T0 + 6)  # the retry
    c.resolve(None, T0 + 6)
    assert [r.status for r in c._results_after(0, 10)] == [TaskStatus.FAILED]


def test_a_second_completion_for_a_task_is_ignored() -> None:
    c = core()
    task, _ = start_task(c)
    complete(c, task)
    again = replace(task, status=TaskStatus.FAILED, finished_at=T0 + 9)
    assert kinds(c.handle(m.TaskCompleted(again), T0 + 9)) == ["Log", "Recorded"]
    assert [r.status for r in c._results_after(0, 10)] == [TaskStatus.COMPLETED]


def test_an_empty_answer_is_an_empty_string_not_null() -> None:
    c = core()
    task, _ = start_task(c)
    complete(c, task, content="")
    (result,) = c._results_after(0, 10)
    assert result.content == "" and result.status is TaskStatus.COMPLETED


def test_cancel_parks_the_caller_until_the_completion_is_recorded() -> None:
    c = core()
    task, _ = start_task(c)
    caller = Answered()
    effects = c.handle(m.CancelTask(task.id, caller), T0)  # type: ignore[arg-type]
    assert only(effects, fx.StopTask).task_id == task.id and caller.values == []
    ended = replace(task, status=TaskStatus.CANCELLED, finished_at=T0 + 1)
    c.handle(m.TaskCompleted(ended), T0 + 1)
    deliver(c.resolve(None, T0 + 1))
    assert caller.values[0].status == "cancelled"
    later = Answered()
    assert kinds(c.handle(m.CancelTask(task.id, later), T0)) == ["Answer"]  # type: ignore[arg-type]


def test_unknown_task_ids_are_refused_as_not_found() -> None:
    c = core()
    effects = c.handle(m.GetTask("tsk_nope", Answered()), T0)  # type: ignore[arg-type]
    assert isinstance(only(effects, fx.Refuse).error, TaskNotFoundError)


# --- turns ----------------------------------------------------------------------------


def test_a_turn_runs_only_after_the_user_message_is_stored_and_conflicts_while_running() -> None:
    c = core()
    reply = Answered()
    assert kinds(c.handle(m.StartTurn("hello", reply), T0)) == ["Persist"]  # type: ignore[arg-type]
    assert c.turn_id is None
    effects = c.resolve(None, T0)
    assert kinds(effects) == ["Answer", "Log", "RunTurn"]
    run = only(effects, fx.RunTurn)
    assert run.history == [{"role": "user", "content": "hello"}]
    second = c.handle(m.StartTurn("again", Answered()), T0)  # type: ignore[arg-type]
    assert isinstance(only(second, fx.Refuse).error, TurnInProgressError)
    turn_id = c.turn_id
    assert turn_id is not None
    assert c.idle is False
    c.handle(m.TurnDone(turn_id, "hi there", None, 1.0), T0 + 1)
    c.resolve(None, T0 + 1)
    assert [x.content for x in c.transcript] == ["hello", "hi there"] and c.turn_id is None


def test_a_turn_end_that_cannot_be_stored_is_retried() -> None:
    c = core()
    c.handle(m.StartTurn("hello", Answered()), T0)  # type: ignore[arg-type]
    c.resolve(None, T0)
    assert c.turn_id is not None
    done = m.TurnDone(c.turn_id, "hi", None, 1.0)
    c.handle(done, T0)
    assert only(c.resolve(StoreError("locked"), T0), fx.Later).message is done
    assert c.turn_id is not None  # still running until the end is stored


# --- events ---------------------------------------------------------------------------


def subscriber(sid: str = "sub_1", turn_id: str | None = None) -> m.Subscriber:
    return m.Subscriber(sid, None, None, turn_id)  # type: ignore[arg-type]


def test_subscribers_get_the_recent_events_from_memory_then_live_ones() -> None:
    c = core()
    task, _ = start_task(c)
    reply = Answered()
    effects = c.handle(m.Subscribe(subscriber(), 0, reply), T0)  # type: ignore[arg-type]
    assert [e.event.seq for e in effects if isinstance(e, fx.Publish)] == [1]
    assert only(effects, fx.Answer).value == 1
    published = complete(c, task)
    assert only(published, fx.Publish).event.type == "task.completed"


def test_a_subscriber_behind_the_memory_ring_pages_the_store_and_hears_of_the_gap() -> None:
    c = core(replay_events=1)
    for _ in range(3):
        start_task(c)
    reply = Answered()
    effects = deliver(c.handle(m.Subscribe(subscriber(), 0, reply), T0))  # type: ignore[arg-type]
    assert reply.values == [None] and c.subscribers == {}  # behind: page first, no live yet
    page_reply = Answered()
    load = only(c.handle(m.GetEvents(0, 2, page_reply), T0), fx.LoadEvents)  # type: ignore[arg-type]
    assert (load.after, load.limit) == (0, 2)
    stored = [Event("task.queued", {}, 2, T0), Event("task.queued", {}, 3, T0)]
    deliver(c.resolve((2, stored), T0))  # seq 1 was pruned
    page = page_reply.values[0]
    gap = page.events[0]
    assert gap.type == "stream.gap" and (gap.data["missing_from"], gap.data["missing_to"]) == (1, 1)
    assert [e.seq for e in page.events[1:]] == [2, 3]
    assert (page.next_after, page.has_more) == (3, False)
    assert effects == [fx.Answer(reply, None)]


def test_deltas_go_only_to_the_turns_subscribers() -> None:
    c = core()
    c.handle(m.StartTurn("hello", Answered(), subscriber("mine")), T0)  # type: ignore[arg-type]
    c.resolve(None, T0)
    c.handle(m.Subscribe(subscriber("all"), None, Answered()), T0)  # type: ignore[arg-type]
    assert c.turn_id is not None
    effects = c.handle(m.TurnDelta(c.turn_id, "hi"), T0)
    assert {s.id for s in only(effects, fx.Publish).subscribers} == {"mine", "all"}
    c.handle(m.TurnDone(c.turn_id, "hi", None, 1.0), T0)
    c.resolve(None, T0)
    assert set(c.subscribers) == {"all"}  # the turn's own subscriber is done


# --- acks, idleness, passivation ------------------------------------------------------


def test_ack_is_checked_stored_and_never_goes_down() -> None:
    c = core()
    task, _ = start_task(c)
    complete(c, task)
    bad = c.handle(m.Ack(9, Answered()), T0)  # type: ignore[arg-type]
    assert isinstance(only(bad, fx.Refuse).error, AckBeyondLastSeqError)
    negative = c.handle(m.Ack(-1, Answered()), T0)  # type: ignore[arg-type]
    assert isinstance(only(negative, fx.Refuse).error, ValueError)
    reply = Answered()
    assert kinds(c.handle(m.Ack(2, reply), T0)) == ["Persist"]  # type: ignore[arg-type]
    assert c.acked_up_to == 0
    c.resolve(None, T0)
    assert c.acked_up_to == 2
    assert kinds(c.handle(m.Ack(1, Answered()), T0)) == ["Log", "Answer"]  # type: ignore[arg-type]
    assert c.acked_up_to == 2


def test_a_session_is_idle_only_with_nothing_running_waiting_or_listening() -> None:
    c = core()
    assert c.idle
    task, _ = start_task(c)
    assert not c.idle  # a task runs
    complete(c, task)
    assert c.idle
    c.handle(m.GetResults(5, 10, Answered(), wait=True, waiter_id="w"), T0)  # type: ignore[arg-type]
    assert not c.idle  # a waiter is parked
    c.handle(m.DropWaiter("w"), T0)
    assert c.idle
    c.handle(m.Ack(1, Answered()), T0)  # type: ignore[arg-type]
    assert not c.idle  # a write is pending


def test_passivation_lets_go_of_waiters_and_streams() -> None:
    c = core()
    waiter = Answered()
    c.handle(m.GetResults(0, 10, waiter, wait=True, waiter_id="w"), T0)  # type: ignore[arg-type]
    c.handle(m.Subscribe(subscriber(), None, Answered()), T0)  # type: ignore[arg-type]
    effects = c.passivate(ShuttingDownError("bye"))
    assert kinds(effects) == ["Refuse", "CloseStreams"]
    assert c.waiters == {} and c.subscribers == {} and c.idle


def test_an_unknown_message_is_an_error_not_a_silent_drop() -> None:
    with pytest.raises(RuntimeError, match="unknown message"):
        core().handle(object(), T0)


def test_dropped_waiters_leave_no_trace_and_a_completion_wakes_only_its_own() -> None:
    c = core()
    first, _ = start_task(c)
    second, _ = start_task(c)
    mine, other, gone = Answered(), Answered(), Answered()
    c.handle(m.GetTask(first.id, mine, wait=True, waiter_id="w1"), T0)  # type: ignore[arg-type]
    c.handle(m.GetTask(second.id, other, wait=True, waiter_id="w2"), T0)  # type: ignore[arg-type]
    c.handle(m.GetTask(first.id, gone, wait=True, waiter_id="w3"), T0)  # type: ignore[arg-type]
    c.handle(m.DropWaiter("w3"), T0)
    deliver(complete(c, first))
    assert [v.id for v in mine.values] == [first.id]
    assert other.values == [] and gone.values == []
    assert set(c.waiters) == {"w2"}
    deliver(complete(c, second))
    assert [v.id for v in other.values] == [second.id] and c.waiters == {} and c.idle
