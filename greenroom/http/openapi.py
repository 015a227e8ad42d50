"""The OpenAPI 3.1 document of the v1 API, served at ``/openapi.json``.

A test validates it with openapi-spec-validator and fuzzes the running server from it
with schemathesis, so it cannot drift from the implementation unnoticed.
"""

from __future__ import annotations

from typing import Any

from greenroom.settings import LimitsSettings, Settings

JSON = dict[str, Any]

_NUM = {"type": "number"}
_NULLABLE_NUM = {"type": ["number", "null"]}
_NULLABLE_STR = {"type": ["string", "null"]}
_ERROR_INFO = {
    "type": ["object", "null"],
    "required": ["type", "message"],
    "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
}
_STATUS = {
    "type": "string",
    "enum": ["queued", "running", "completed", "failed", "cancelled", "timed_out", "interrupted"],
}

SCHEMAS: JSON = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Session": {
        "type": "object",
        "required": ["id", "agent", "created_at", "task_counts"],
        "properties": {
            "id": {"type": "string"},
            "agent": {"type": "string"},
            "created_at": _NUM,
            "metadata": {"type": "object"},
            "task_counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "last_seq": {"type": "integer"},
            "acked_up_to": {"type": "integer"},
            "turn_running": {"type": "boolean"},
            "messages": {"type": "integer"},
        },
    },
    "Task": {
        "type": "object",
        "required": ["id", "session_id", "kind", "agent", "status", "created_at"],
        "properties": {
            "id": {"type": "string"},
            "session_id": {"type": "string"},
            "kind": {"type": "string", "enum": ["background", "side"]},
            "agent": {"type": "string"},
            "status": _STATUS,
            "created_at": _NUM,
            "started_at": _NULLABLE_NUM,
            "timeout_s": _NULLABLE_NUM,
            "attempt": {"type": "integer", "minimum": 0},
            "max_attempts": {"type": "integer", "minimum": 1},
            "content": {"type": ["string", "null"]},
            "error": _ERROR_INFO,
            "finished_at": _NULLABLE_NUM,
            "seq": {"type": ["integer", "null"]},
        },
    },
    "Result": {
        "type": "object",
        "required": ["seq", "task_id", "status", "content", "error", "finished_at"],
        "properties": {
            "seq": {"type": "integer"},
            "task_id": {"type": "string"},
            "session_id": {"type": "string"},
            "status": _STATUS,
            "content": {"type": ["string", "null"]},
            "error": _ERROR_INFO,
            "created_at": _NUM,
            "started_at": _NULLABLE_NUM,
            "finished_at": _NUM,
        },
    },
    "Message": {
        "type": "object",
        "required": ["role", "content", "created_at"],
        "properties": {
            "role": {"type": "string"},
            "content": {"type": "string"},
            "created_at": _NUM,
            "turn_id": {"type": ["string", "null"]},
            "seq": {"type": ["integer", "null"]},
        },
    },
}


def _ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: JSON, description: str) -> JSON:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> JSON:
    names = {
        400: "bad request",
        401: "unauthorized",
        404: "not found",
        409: "conflict",
        413: "body too large",
        414: "request target over 8192 bytes",
        422: "Idempotency-Key reused with a different body",
        429: "over a bound; see Retry-After",
        431: "request headers over 16384 bytes",
        503: "shutting down or store unavailable",
        500: "unexpected error (logged with the request id)",
    }
    return {str(s): _json(_ref("Error"), names[s]) for s in statuses}


def _body(properties: JSON, required: list[str], *, optional: bool = False) -> JSON:
    return {
        "required": not optional,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": properties,
                    "required": required,
                    "additionalProperties": False,
                }
            }
        },
    }


_SID = {"name": "sid", "in": "path", "required": True, "schema": {"type": "string"}}
_TID = {"name": "tid", "in": "path", "required": True, "schema": {"type": "string"}}


def _wait(max_wait_s: float) -> JSON:
    return {
        "name": "wait",
        "in": "query",
        "required": False,
        "description": f"long-poll up to this many seconds (at most server.max_wait_s, "
        f"here {max_wait_s}; more is a 400)",
        "schema": {"type": "number", "minimum": 0, "maximum": max_wait_s},
    }


_COMMON = (401, 404, 503, 500)
_STATUS_OBJECT = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string"}},
}
_STATS_OBJECT = {
    "type": "object",
    "required": ["live_sessions", "actors", "tasks", "threads"],
    "properties": {
        "live_sessions": {"type": "integer"},
        "passivating": {"type": "integer"},
        "stale_lifecycle_messages": {"type": "integer"},
        "actors": {"type": "object", "additionalProperties": {"type": "integer"}},
        "tasks": {"type": "object", "additionalProperties": {"type": "integer"}},
        "threads": {"type": "integer"},
        "store_read_connections": {"type": "integer"},
    },
}
_SESSION_RECORD = {
    "type": "object",
    "required": ["id", "agent", "created_at", "metadata"],
    "properties": {
        "id": {"type": "string"},
        "agent": {"type": "string"},
        "created_at": {"type": "number"},
        "metadata": {"type": "object"},
    },
}
_TICKET = {
    "type": "object",
    "required": ["ticket", "expires_at", "ttl_s"],
    "properties": {
        "ticket": {"type": "string"},
        "expires_at": {"type": "integer", "description": "Unix seconds"},
        "ttl_s": {"type": "integer"},
    },
}
_BEARER: list[JSON] = [{"bearer": []}]
# Not blank as Python's str.strip() sees it, which also strips \x1c-\x1f and \x85.
_NOT_BLANK = "[^\\s\\u001c-\\u001f\\u0085]"


def _op(
    summary: str,
    ok: JSON,
    *,
    status: str = "200",
    errors: tuple[int, ...] = _COMMON,
    params: list[JSON] | None = None,
    body: JSON | None = None,
) -> JSON:
    # Every route answers 414 and 431 (oversize requests), before any handler runs.
    op: JSON = {"summary": summary, "responses": {status: ok, **_errors(*errors, 414, 431)}}
    if 401 in errors:
        op["security"] = _BEARER
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    return op


def _query(name: str, schema: JSON, description: str) -> JSON:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _header(name: str, schema: JSON, description: str) -> JSON:
    return {**_query(name, schema, description), "in": "header"}


def _text(limits: LimitsSettings) -> JSON:
    """A prompt or message: not blank, at most ``max_prompt_chars``."""
    return {"type": "string", "pattern": _NOT_BLANK, "maxLength": limits.max_prompt_chars}


def list_of(key: str, item: str) -> JSON:
    """An object wrapping a list: ``{key: [item, ...]}``."""
    return {
        "type": "object",
        "required": [key],
        "properties": {key: {"type": "array", "items": _ref(item)}},
    }


def openapi_document(settings: Settings | None = None) -> JSON:
    """The whole OpenAPI 3.1 document.

    Args:
        settings: the server's settings; bounds such as ``max_prompt_chars`` appear in
            the schemas (default: the built-in settings).
    """
    settings = settings or Settings()
    limits = settings.limits
    wait = _wait(settings.server.max_wait_s)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "greenroom",
            "version": "1",
            "description": (
                "Agent sessions with background tasks whose results are never lost. "
                "Every error is JSON ({error: {code, message}}): a request target over "
                "8192 bytes is a 414, headers over 16384 bytes a 431. Only a request "
                "line or header field over 65536 bytes is refused by the HTTP parser "
                "itself, with a plain-text 400, before greenroom sees it."
            ),
        },
        "paths": {**_health_paths(), **_session_paths(limits), **_task_paths(limits, wait)},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _health_paths() -> JSON:
    return {
        "/healthz": {"get": _op("liveness", _json(_STATUS_OBJECT, "alive"), errors=())},
        "/readyz": {
            "get": _op(
                "readiness: store reachable, not shutting down",
                _json(_STATUS_OBJECT, "ready"),
                errors=(503,),
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics (text format; OpenMetrics on Accept); 404 when "
                "server.metrics is off",
                {
                    "description": "the metrics",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                errors=(401, 404),
            )
        },
        "/v1/stats": {
            "get": _op(
                "live sessions, live actors by kind, tasks, threads, read connections",
                _json(_STATS_OBJECT, "the counts"),
                errors=(503,),
            )
        },
    }


def _session_paths(limits: LimitsSettings) -> JSON:
    session_body = {"agent": _NULLABLE_STR, "metadata": {"type": ["object", "null"]}}
    accepted = {
        "type": "object",
        "required": ["turn_id", "session_id"],
        "properties": {"turn_id": {"type": "string"}, "session_id": {"type": "string"}},
    }
    return {
        "/v1/sessions": {
            "post": _op(
                "create a session",
                _json(_ref("Session"), "created"),
                status="201",
                errors=(400, 401, 404, 413, 503, 500),
                body=_body(session_body, [], optional=True),
            ),
            "get": _op(
                "the sessions, newest first, paged",
                _json(
                    {
                        "type": "object",
                        "required": ["sessions", "next_after", "has_more"],
                        "properties": {
                            "sessions": {"type": "array", "items": _SESSION_RECORD},
                            "next_after": _NULLABLE_STR,
                            "has_more": {"type": "boolean"},
                        },
                    },
                    "one page of sessions",
                ),
                errors=(400, 401, 503, 500),
                params=[
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 1000},
                        "sessions per page (50 by default)",
                    ),
                    _query(
                        "after",
                        {"type": "string", "maxLength": 200},
                        "next_after of the previous page",
                    ),
                ],
            ),
        },
        "/v1/sessions/{sid}": {
            "get": _op("the session", _json(_ref("Session"), "the session"), params=[_SID])
        },
        "/v1/sessions/{sid}/messages": {
            "post": _op(
                "run a foreground turn; its events stream on /events",
                _json(accepted, "accepted"),
                status="202",
                params=[_SID],
                errors=(400, 401, 404, 409, 413, 503, 500),
                body=_body({"content": _text(limits)}, ["content"]),
            ),
            "get": _op(
                "the transcript", _json(list_of("messages", "Message"), "transcript"), params=[_SID]
            ),
        },
        "/v1/sessions/{sid}/events": {"get": _events_operation()},
        "/v1/sessions/{sid}/events/ticket": {
            "post": _op(
                "a ticket that opens this session's event stream for 60 s (?ticket=), "
                "for browsers: EventSource cannot send the Authorization header",
                _json(_TICKET, "the ticket"),
                params=[_SID],
            )
        },
    }


def _events_operation() -> JSON:
    seq = {"type": "string", "pattern": "^[0-9]{1,18}$"}
    stream = {
        "description": "an event stream: `id:` seq, `event:` type, `data:` JSON",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
    return _op(
        "Server-Sent Events; Last-Event-ID resumes",
        stream,
        params=[
            _SID,
            _header("Last-Event-ID", seq, "replay the stored events after this seq"),
            _query("after", seq, "like Last-Event-ID, for clients that cannot set headers"),
            _query(
                "ticket",
                {"type": "string"},
                "instead of the bearer token: a ticket from POST .../events/ticket",
            ),
        ],
        errors=(400, 401, 404, 503, 500),
    )


def _task_paths(limits: LimitsSettings, wait: JSON) -> JSON:
    ack = {
        "type": "object",
        "required": ["acked_up_to"],
        "properties": {"acked_up_to": {"type": "integer"}},
    }
    return {
        "/v1/sessions/{sid}/tasks": {
            "post": _start_task_operation(limits),
            "get": _op(
                "every task, running ones included",
                _json(list_of("tasks", "Task"), "tasks"),
                params=[_SID],
            ),
        },
        "/v1/sessions/{sid}/tasks/{tid}": {
            "get": _op(
                "one task; ?wait= long-polls until it ends",
                _json(_ref("Task"), "the task"),
                params=[_SID, _TID, wait],
                errors=(400, 401, 404, 503, 500),
            )
        },
        "/v1/sessions/{sid}/tasks/{tid}/cancel": {
            "post": _op(
                "cancel (idempotent); returns the ended task",
                _json(_ref("Task"), "the task"),
                params=[_SID, _TID],
            )
        },
        "/v1/sessions/{sid}/results": {"get": _results_operation(wait)},
        "/v1/sessions/{sid}/results/ack": {
            "post": _op(
                "acknowledge results up to a seq; 409 past the session's last seq",
                _json(ack, "acknowledged"),
                params=[_SID],
                errors=(400, 401, 404, 409, 413, 503, 500),
                body=_body({"up_to": {"type": "integer", "minimum": 0}}, ["up_to"]),
            )
        },
    }


def _start_task_operation(limits: LimitsSettings) -> JSON:
    key = {"type": "string", "minLength": 1, "maxLength": 200}
    timeout_s = {
        "type": ["number", "null"],
        "exclusiveMinimum": 0,
        "maximum": limits.task_timeout_s,
    }
    return _op(
        "start a background task or side question",
        _json(_ref("Task"), "accepted (or the task an earlier Idempotency-Key started)"),
        status="202",
        params=[
            _SID,
            _header(
                "Idempotency-Key",
                key,
                "a retry with the same key and body returns the same task; "
                "the same key with a different body is a 422",
            ),
        ],
        errors=(400, 401, 404, 413, 422, 429, 503, 500),
        body=_body(
            {
                "prompt": _text(limits),
                "kind": {"enum": ["background", "side", None]},
                "agent": _NULLABLE_STR,
                "timeout_s": timeout_s,
                "max_attempts": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "maximum": limits.max_task_attempts,
                },
            },
            ["prompt"],
        ),
    )


def _results_operation(wait: JSON) -> JSON:
    page = {
        "type": "object",
        "required": ["results", "next_after", "has_more"],
        "properties": {
            "results": {"type": "array", "items": _ref("Result")},
            "next_after": {"type": "integer"},
            "has_more": {"type": "boolean"},
        },
    }
    return _op(
        "completions after ?after=, oldest first; never deletes",
        _json(page, "results"),
        params=[
            _SID,
            wait,
            _query("after", {"type": "integer", "minimum": 0}, "results with a greater seq"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size"),
        ],
        errors=(400, 401, 404, 503, 500),
    )
