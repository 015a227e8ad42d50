"""doctor reports real trouble only: long-by-design waits are not slow, and a result read
through GET .../tasks/{tid} counts as read."""

from __future__ import annotations

from typing import Any

from greenroom.doctor import diagnose

TS = "2026-01-01T00:00:00Z"


def line(event: str, **fields: Any) -> dict[str, Any]:
    return {"event": event, "ts": TS, "level": "info", **fields}


def kinds(findings: list[Any]) -> list[str]:
    return [f.kind for f in findings]


def test_streams_long_polls_and_task_runs_are_not_slow_handlers() -> None:
    report = diagnose(
        [
            line(
                "task_finished",
                task_id="tsk_1",
                session_id="s",
                status="completed",
                duration_ms=90_000,
            ),
            line("turn_completed", turn_id="t", session_id="s", duration_ms=40_000),
            line(
                "request_finished",
                actor="http",
                path="/v1/sessions/s/events",
                duration_ms=600_000,
                stream=True,
            ),
            line(
                "request_finished",
                actor="http",
                path="/v1/sessions/s/results",
                duration_ms=30_000,
                wait_s="30",
            ),
            line("actor_message", actor="session", msg="GetInfo", duration_ms=2_500),
        ],
        slow_ms=1000,
    )
    slow = [f.message for f in report.warnings if f.kind == "slow_handler"]
    assert slow == ["session GetInfo: 1 over 1000 ms, max 2500.0 ms"]


def test_a_result_read_through_the_task_route_counts_as_read() -> None:
    lines = [
        line("task_queued", task_id="tsk_1", session_id="s"),
        line("task_started", task_id="tsk_1", session_id="s"),
        line("task_finished", task_id="tsk_1", session_id="s", status="completed"),
        line("completion_recorded", task_id="tsk_1", session_id="s", seq=3),
        line("task_read", task_id="tsk_1", session_id="s", status="completed"),
    ]
    assert kinds(diagnose(lines).warnings) == ["result_never_acknowledged"]
    unread = [*lines[:-1], line("task_read", task_id="tsk_1", session_id="s", status="running")]
    assert kinds(diagnose(unread).warnings) == ["result_never_read"]


def test_tasks_a_shutdown_kept_for_the_next_start_are_not_lost_work() -> None:
    lines = [
        line("task_queued", task_id="tsk_q", session_id="s"),
        line("task_kept_queued", task_id="tsk_q", session_id="s"),
        line("task_queued", task_id="tsk_r", session_id="s"),
        line("task_started", task_id="tsk_r", session_id="s"),
        line("task_kept_for_restart", task_id="tsk_r", session_id="s"),
        line("task_queued", task_id="tsk_lost", session_id="s"),
    ]
    problems = diagnose(lines).problems
    assert [(f.kind, f.ids["task_id"]) for f in problems] == [("task_never_ended", "tsk_lost")]
