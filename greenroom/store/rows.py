"""Task rows as both SQL stores keep them: one column list, one conversion each way."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from greenroom.models import ErrorInfo, TaskRecord, TaskStatus

TASK_COLUMNS = (
    "id, session_id, kind, agent, prompt, status, created_at, timeout_s, "
    "started_at, finished_at, content, error, seq, idempotency_key, request_id, "
    "attempt, max_attempts"
)


def task_row(t: TaskRecord) -> tuple[Any, ...]:
    error = json.dumps(t.error.to_json()) if t.error else None
    return (
        t.id,
        t.session_id,
        t.kind,
        t.agent,
        t.prompt,
        t.status.value,
        t.created_at,
        t.timeout_s,
        t.started_at,
        t.finished_at,
        t.content,
        error,
        t.seq,
        t.idempotency_key,
        t.request_id,
        t.attempt,
        t.max_attempts,
    )


def task_from_row(r: Sequence[Any]) -> TaskRecord:
    return TaskRecord(
        id=r[0],
        session_id=r[1],
        kind=r[2],
        agent=r[3],
        prompt=r[4],
        status=TaskStatus(r[5]),
        created_at=r[6],
        timeout_s=r[7],
        started_at=r[8],
        finished_at=r[9],
        content=r[10],
        error=ErrorInfo.from_json(json.loads(r[11])) if r[11] else None,
        seq=r[12],
        idempotency_key=r[13],
        request_id=r[14],
        attempt=r[15],
        max_attempts=r[16],
    )
