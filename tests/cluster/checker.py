"""The checker: pure functions from histories to problems, one line each.

Each function returns the list of problems it found (empty: the property held), so
the test can report every broken property at once, and ``test_checker.py`` can show on
small hand-built histories that each one does catch what it is for.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

from tests.cluster.history import (
    TERMINAL,
    FinalRead,
    ResultEntry,
    SessionHistory,
    SseConnection,
    StoredEvent,
    StoredSession,
)

COMPLETED = "task.completed"


def ranges(numbers: Iterable[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    out: list[str] = []
    for n in sorted(set(numbers)):
        if out and n == int(out[-1].split("-")[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


def check_event_seqs(sid: str, seqs: Sequence[int]) -> list[str]:
    """A session's stored event seqs run 1, 2, 3... with no hole and no duplicate."""
    problems = [
        f"{sid}: seq {seq} stored {count} times"
        for seq, count in sorted(Counter(seqs).items())
        if count > 1
    ]
    if seqs:
        missing = set(range(1, max(seqs) + 1)) - set(seqs)
        if missing:
            problems.append(f"{sid}: hole in the stored seqs: {ranges(missing)} missing")
        if min(seqs) < 1:
            problems.append(f"{sid}: stored seq {min(seqs)} below 1")
    return problems


def check_generations(sid: str, rows: Sequence[tuple[int, int | None]]) -> list[str]:
    """No seq written under two generations, and generations never go back along seq:
    a node that lost its lease wrote nothing after the next owner did."""
    by_seq: dict[int, set[int]] = defaultdict(set)
    for seq, gen in rows:
        if gen is not None:
            by_seq[seq].add(gen)
    problems = [
        f"{sid}: seq {seq} written under generations {sorted(gens)}"
        for seq, gens in sorted(by_seq.items())
        if len(gens) > 1
    ]
    previous: tuple[int, int] | None = None  # (seq, gen)
    for seq in sorted(by_seq):
        gen = min(by_seq[seq])
        if previous is not None and gen < previous[1]:
            problems.append(
                f"{sid}: generation goes back from {previous[1]} (seq {previous[0]}) "
                f"to {gen} (seq {seq})"
            )
        previous = (seq, max(by_seq[seq]))
    return problems


def check_tasks(
    sid: str,
    acks: Mapping[str, Sequence[str]],
    final: FinalRead,
    events: Sequence[StoredEvent],
    stored_tasks: Mapping[str, str] | None = None,
) -> list[str]:
    """Every task acknowledged with a 2xx exists, ended in exactly one terminal status,
    and is in the session's results exactly once, under the seq of its one
    ``task.completed`` event; one idempotency key always meant one task."""
    problems: list[str] = []
    for key, tids in sorted(acks.items()):
        if len(set(tids)) > 1:
            problems.append(f"{sid}: idempotency key {key} answered with tasks {sorted(set(tids))}")
    results: dict[str, list[ResultEntry]] = defaultdict(list)
    for entry in final.results:
        results[entry.task_id].append(entry)
    completions: dict[str, list[StoredEvent]] = defaultdict(list)
    for event in events:
        if event.type == COMPLETED and event.task_id is not None:
            completions[event.task_id].append(event)
    for tid, ends in sorted(completions.items()):  # acknowledged or not: one end each
        if len(ends) > 1:
            what = ", ".join(f"seq {e.seq} {e.data.get('status')}" for e in ends)
            problems.append(f"{sid}: task {tid} ended {len(ends)} times: {what}")
    seqs = [entry.seq for entry in final.results]
    if seqs != sorted(set(seqs)):
        problems.append(f"{sid}: result seqs not unique and rising: {seqs}")
    for tid, key in sorted({t: k for k, ts in acks.items() for t in ts}.items()):
        problems += _check_acked(
            sid,
            tid,
            key,
            final=final,
            results=results[tid],
            ends=completions[tid],
            stored_tasks=stored_tasks,
        )
    return problems


def _check_acked(
    sid: str,
    tid: str,
    key: str,
    *,
    final: FinalRead,
    results: Sequence[ResultEntry],
    ends: Sequence[StoredEvent],
    stored_tasks: Mapping[str, str] | None,
) -> list[str]:
    listed = final.statuses.get(tid)
    stored = None if stored_tasks is None else stored_tasks.get(tid)
    if listed is None and stored is None and not results and not ends:
        return [f"{sid}: lost ack: task {tid} (key {key}) was acknowledged, the store has no trace"]
    problems: list[str] = []
    if listed not in TERMINAL:
        problems.append(f"{sid}: acknowledged task {tid} is listed as {listed}")
    if stored_tasks is not None and stored not in TERMINAL:
        problems.append(f"{sid}: acknowledged task {tid} is stored as {stored}")
    if len(results) != 1:
        seqs = [r.seq for r in results]
        problems.append(
            f"{sid}: acknowledged task {tid} is in the results {len(results)} times {seqs}"
        )
    if len(ends) != 1:
        problems.append(f"{sid}: acknowledged task {tid} has {len(ends)} task.completed events")
    if len(results) == 1 and len(ends) == 1:
        result, end = results[0], ends[0]
        statuses = {result.status, end.data.get("status"), listed}
        if stored_tasks is not None:
            statuses.add(stored)
        if len(statuses) > 1:
            problems.append(
                f"{sid}: task {tid} has several terminal statuses {sorted(map(str, statuses))}"
            )
        if result.seq != end.seq:
            problems.append(
                f"{sid}: task {tid}'s result has seq {result.seq}, its end event {end.seq}"
            )
    return problems


def check_sse(
    sid: str,
    connections: Sequence[SseConnection],
    stored: Mapping[int, StoredEvent],
    last_seq: int | None = None,
) -> list[str]:
    """Every event a stream delivered is the stored event with its seq (type and data);
    each connection, resumed with ``Last-Event-ID``, delivered the seqs after it with no
    hole; and, given ``last_seq``, the reader got as far as the store."""
    problems: list[str] = []
    for number, conn in enumerate(connections, 1):
        expected = conn.resume + 1
        for frame in conn.frames:
            if frame.seq is None:
                problems.append(f"{sid}: stream {number} got {frame.type} {frame.data}")
                continue
            if frame.seq != expected:
                problems.append(
                    f"{sid}: stream {number} (Last-Event-ID {conn.resume}) expected seq "
                    f"{expected}, got {frame.seq}"
                    + (
                        f": hole {ranges(range(expected, frame.seq))}"
                        if frame.seq > expected
                        else ""
                    )
                )
            expected = frame.seq + 1
            event = stored.get(frame.seq)
            if event is None:
                problems.append(f"{sid}: stream {number} got seq {frame.seq}, not in the store")
            elif frame.type != event.type or frame.data != {**event.data, "seq": event.seq}:
                problems.append(
                    f"{sid}: stream {number} seq {frame.seq} differs from the store: got "
                    f"{frame.type} {frame.data}, stored {event.type} {event.data}"
                )
    if last_seq is not None and connections:
        reached = max(conn.last_seq for conn in connections)
        if reached < last_seq:
            problems.append(f"{sid}: the stream reader stopped at seq {reached} of {last_seq}")
    return problems


def check_session(history: SessionHistory, final: FinalRead, stored: StoredSession) -> list[str]:
    """Every check of one session."""
    events = stored.events
    by_seq = {event.seq: event for event in events}
    problems = list(history.unexpected)
    problems += check_event_seqs(history.sid, [e.seq for e in events])
    problems += check_generations(history.sid, [(e.seq, e.gen) for e in events])
    problems += check_tasks(history.sid, history.acks, final, events, stored.tasks)
    problems += check_sse(history.sid, history.sse, by_seq, max(by_seq, default=0) or None)
    if by_seq and max(by_seq) != stored.last_seq:
        problems.append(
            f"{history.sid}: the last stored event is seq {max(by_seq)}, the session's "
            f"last_seq {stored.last_seq}"
        )
    if final.last_seq != stored.last_seq:
        problems.append(
            f"{history.sid}: the API says last seq {final.last_seq}, the store {stored.last_seq}"
        )
    return problems
