"""The JSON of the HTTP API: the one place where the API's records become JSON.

The embedded API and the actors trade frozen records (``TaskInfo``, ``SessionInfo``,
``Message``, ``Completion`` and the pages); these functions give each its JSON shape, as
the OpenAPI document describes it.
"""

from __future__ import annotations

from typing import Any

from greenroom.models import (
    Completion,
    ErrorInfo,
    Message,
    ResultsPage,
    SessionInfo,
    SessionRecord,
    SessionsPage,
    TaskInfo,
)

JSON = dict[str, Any]


def error(info: ErrorInfo | None) -> JSON | None:
    """An error object ``{type, message}``, or None."""
    return None if info is None else {"type": info.type, "message": info.message}


def task(info: TaskInfo) -> JSON:
    """A task object; ``content``, ``error``, ``finished_at``, ``seq`` once it ended."""
    data: JSON = {
        "id": info.id,
        "session_id": info.session_id,
        "kind": info.kind,
        "agent": info.agent,
        "status": info.status.value,
        "created_at": info.created_at,
        "started_at": info.started_at,
        "timeout_s": info.timeout_s,
        "attempt": info.attempt,
        "max_attempts": info.max_attempts,
    }
    if info.ended:
        data.update(
            content=info.content,
            error=error(info.error),
            finished_at=info.finished_at,
            seq=info.seq,
        )
    return data


def session(info: SessionInfo) -> JSON:
    """A session object with its task counts."""
    return {
        "id": info.id,
        "agent": info.agent,
        "created_at": info.created_at,
        "metadata": info.metadata,
        "task_counts": info.task_counts,
        "last_seq": info.last_seq,
        "acked_up_to": info.acked_up_to,
        "turn_running": info.turn_running,
        "messages": info.messages,
    }


def session_record(record: SessionRecord) -> JSON:
    """A session in a listing."""
    return {
        "id": record.id,
        "agent": record.agent,
        "created_at": record.created_at,
        "metadata": record.metadata,
    }


def message(msg: Message) -> JSON:
    """A transcript message."""
    return {
        "role": msg.role,
        "content": msg.content,
        "created_at": msg.created_at,
        "turn_id": msg.turn_id,
        "seq": msg.seq,
    }


def completion(done: Completion) -> JSON:
    """A result object."""
    return {
        "seq": done.seq,
        "task_id": done.task_id,
        "session_id": done.session_id,
        "status": done.status.value,
        "content": done.content,
        "error": error(done.error),
        "created_at": done.created_at,
        "started_at": done.started_at,
        "finished_at": done.finished_at,
    }


def results(page: ResultsPage) -> JSON:
    """``{"results", "next_after", "has_more"}``."""
    return {
        "results": [completion(c) for c in page.results],
        "next_after": page.next_after,
        "has_more": page.has_more,
    }


def sessions(page: SessionsPage) -> JSON:
    """``{"sessions", "next_after", "has_more"}``."""
    return {
        "sessions": [session_record(r) for r in page.sessions],
        "next_after": page.next_after,
        "has_more": page.has_more,
    }
