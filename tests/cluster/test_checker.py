"""The checker can fail: each check, on a small hand-built history, finds the one fault
put in it (a hole, a duplicate, a seq under two generations, a lost ack...) and stays
quiet on the same history without the fault. No server needed."""

from __future__ import annotations

from typing import Any

from tests.cluster.checker import (
    check_event_seqs,
    check_generations,
    check_session,
    check_sse,
    check_tasks,
    ranges,
)
from tests.cluster.history import (
    FinalRead,
    ResultEntry,
    SessionHistory,
    SseConnection,
    SseFrame,
    StoredEvent,
    StoredSession,
)

SID = "ses_1"


def queued(seq: int, tid: str, gen: int | None = 1) -> StoredEvent:
    return StoredEvent(seq, gen, "task.queued", {"task": {"id": tid, "status": "queued"}})


def completed(seq: int, tid: str, status: str = "completed", gen: int | None = 1) -> StoredEvent:
    return StoredEvent(seq, gen, "task.completed", {"task_id": tid, "status": status, "seq": seq})


def frame(event: StoredEvent, **changes: Any) -> SseFrame:
    """The frame a stream sends for a stored event (with ``changes`` to its data)."""
    return SseFrame(event.seq, event.type, {**event.data, "seq": event.seq, **changes})


def two_tasks() -> tuple[dict[str, list[str]], FinalRead, list[StoredEvent], dict[str, str]]:
    """A clean history: tasks a and b acknowledged, each ended once, each in the results."""
    events = [queued(1, "a"), queued(2, "b"), completed(3, "a"), completed(4, "b", "failed")]
    acks = {"k-a": ["a", "a"], "k-b": ["b"]}  # k-a was retried: the same task both times
    final = FinalRead(
        statuses={"a": "completed", "b": "failed"},
        results=[ResultEntry(3, "a", "completed"), ResultEntry(4, "b", "failed")],
        last_seq=4,
    )
    return acks, final, events, {"a": "completed", "b": "failed"}


def test_ranges_compresses_runs() -> None:
    assert ranges([7, 1, 3, 2, 9, 8]) == "1-3, 7-9"
    assert ranges([]) == ""


def test_contiguous_seqs_pass_and_a_hole_or_a_duplicate_fails() -> None:
    assert check_event_seqs(SID, [1, 2, 3, 4]) == []
    assert check_event_seqs(SID, []) == []
    assert check_event_seqs(SID, [1, 2, 5, 6]) == [f"{SID}: hole in the stored seqs: 3-4 missing"]
    assert check_event_seqs(SID, [2, 3]) == [f"{SID}: hole in the stored seqs: 1 missing"]
    assert check_event_seqs(SID, [1, 2, 2, 3]) == [f"{SID}: seq 2 stored 2 times"]


def test_a_seq_under_two_generations_or_a_generation_going_back_fails() -> None:
    assert check_generations(SID, [(1, 1), (2, 1), (3, 2), (4, 2)]) == []
    assert check_generations(SID, [(1, None), (2, None)]) == []  # SQLite: no generations
    assert check_generations(SID, [(1, 1), (2, 1), (2, 2), (3, 2)]) == [
        f"{SID}: seq 2 written under generations [1, 2]"
    ]
    # A paused node that lost its lease wrote seq 4 after the new owner wrote seq 3.
    assert check_generations(SID, [(1, 1), (2, 1), (3, 2), (4, 1)]) == [
        f"{SID}: generation goes back from 2 (seq 3) to 1 (seq 4)"
    ]


def test_a_clean_task_history_passes() -> None:
    acks, final, events, stored = two_tasks()
    assert check_tasks(SID, acks, final, events, stored) == []


def test_a_lost_ack_fails() -> None:
    acks, final, events, stored = two_tasks()
    acks["k-c"] = ["c"]  # a 202 for task c, which the store never heard of
    assert check_tasks(SID, acks, final, events, stored) == [
        f"{SID}: lost ack: task c (key k-c) was acknowledged, the store has no trace"
    ]


def test_an_acknowledged_task_left_running_or_missing_from_results_fails() -> None:
    acks, final, events, stored = two_tasks()
    final.statuses["b"] = "running"
    stored["b"] = "running"
    final.results.pop()
    problems = check_tasks(SID, acks, final, events, stored)
    assert f"{SID}: acknowledged task b is listed as running" in problems
    assert f"{SID}: acknowledged task b is stored as running" in problems
    assert f"{SID}: acknowledged task b is in the results 0 times []" in problems


def test_a_task_ending_twice_or_a_duplicated_result_fails() -> None:
    acks, final, events, stored = two_tasks()
    events.append(completed(5, "a", "interrupted"))  # a second end after a takeover
    final.results.append(ResultEntry(5, "a", "interrupted"))
    problems = check_tasks(SID, acks, final, events, stored)
    assert f"{SID}: task a ended 2 times: seq 3 completed, seq 5 interrupted" in problems
    assert f"{SID}: acknowledged task a is in the results 2 times [3, 5]" in problems
    assert f"{SID}: acknowledged task a has 2 task.completed events" in problems


def test_one_key_answered_with_two_tasks_fails() -> None:
    acks, final, events, stored = two_tasks()
    acks["k-a"] = ["a", "b"]
    assert f"{SID}: idempotency key k-a answered with tasks ['a', 'b']" in check_tasks(
        SID, acks, final, events, stored
    )


def test_a_result_disagreeing_with_its_end_event_fails() -> None:
    acks, final, events, stored = two_tasks()
    final.results[0] = ResultEntry(3, "a", "failed")
    assert check_tasks(SID, acks, final, events, stored) == [
        f"{SID}: task a has several terminal statuses ['completed', 'failed']"
    ]


def test_streams_matching_the_store_pass_and_a_hole_or_a_changed_event_fails() -> None:
    events = [queued(1, "a"), queued(2, "b"), completed(3, "a"), completed(4, "b")]
    stored = {e.seq: e for e in events}
    first = SseConnection(resume=0, opened=0.0, frames=[frame(e) for e in events[:2]])
    resumed = SseConnection(resume=2, opened=1.0, frames=[frame(e) for e in events[2:]])
    assert check_sse(SID, [first, resumed], stored, last_seq=4) == []

    holed = SseConnection(resume=2, opened=1.0, frames=[frame(events[3])])
    assert check_sse(SID, [first, holed], stored, last_seq=4) == [
        f"{SID}: stream 2 (Last-Event-ID 2) expected seq 3, got 4: hole 3"
    ]
    changed = SseConnection(resume=2, opened=1.0, frames=[frame(events[2], status="failed")])
    problems = check_sse(SID, [first, changed], stored)
    assert len(problems) == 1 and "stream 2 seq 3 differs from the store" in problems[0]
    assert check_sse(SID, [first], stored, last_seq=4) == [
        f"{SID}: the stream reader stopped at seq 2 of 4"
    ]
    replayed = SseConnection(resume=2, opened=1.0, frames=[frame(events[1]), frame(events[2])])
    assert check_sse(SID, [first, replayed], stored) == [
        f"{SID}: stream 2 (Last-Event-ID 2) expected seq 3, got 2"
    ]


def test_check_session_combines_every_check() -> None:
    acks, final, events, stored_tasks = two_tasks()
    history = SessionHistory(SID, acks=acks)
    history.sse.append(SseConnection(resume=0, opened=0.0, frames=[frame(e) for e in events]))
    stored = StoredSession(SID, "n1", events, stored_tasks, last_seq=4)
    assert check_session(history, final, stored) == []

    history.unexpected.append(f"{SID}: POST .../tasks answered 404")
    stored.events = [*events[:2], events[3]]  # seq 3 lost from the store
    problems = check_session(history, final, stored)
    assert problems[0] == f"{SID}: POST .../tasks answered 404"
    assert f"{SID}: hole in the stored seqs: 3 missing" in problems
    assert f"{SID}: stream 1 got seq 3, not in the store" in problems
    assert f"{SID}: acknowledged task a has 0 task.completed events" in problems
