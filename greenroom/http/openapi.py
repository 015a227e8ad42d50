"""The OpenAPI 3.1 document of the v1 API, served at ``/openapi.json``.

A test validates it with openapi-spec-validator and fuzzes the running server from it
with schemathesis, so it cannot drift from the implementation unnoticed.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]

_NUM = {"type": "number"}
_NULLABLE_NUM = {"type": ["number", "null"]}
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
        429: "over a bound; see Retry-After",
        503: "shutting down or store unavailable",
    }
    return {str(s): _json(_ref("Error"), names[s]) for s in statuses}


def _body(properties: JSON, required: list[str]) -> JSON:
    return {
        "required": True,
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
_WAIT = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": "long-poll up to this many seconds (capped by server.max_wait_s)",
    "schema": {"type": "number", "minimum": 0},
}
_COMMON = (401, 404, 503)


def _op(
    summary: str,
    ok: JSON,
    *,
    status: str = "200",
    errors: tuple[int, ...] = _COMMON,
    params: list[JSON] | None = None,
    body: JSON | None = None,
) -> JSON:
    op: JSON = {"summary": summary, "responses": {status: ok, **_errors(*errors)}}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    return op


def list_of(key: str, item: str) -> JSON:
    """An object wrapping a list: ``{key: [item, ...]}``."""
    return {
        "type": "object",
        "required": [key],
        "properties": {key: {"type": "array", "items": _ref(item)}},
    }


def openapi_document() -> JSON:
    """The whole OpenAPI 3.1 document."""
    paths: JSON = {
        "/healthz": {"get": _op("liveness", _json({"type": "object"}, "alive"), errors=())},
        "/readyz": {
            "get": _op(
                "readiness: store reachable, not shutting down",
                _json({"type": "object"}, "ready"),
                errors=(503,),
            )
        },
        "/v1/sessions": {
            "post": _op(
                "create a session",
                _json(_ref("Session"), "created"),
                status="201",
                errors=(400, 401, 404, 413, 503),
                body=_body({"agent": {"type": "string"}, "metadata": {"type": "object"}}, []),
            )
        },
        "/v1/sessions/{sid}": {
            "get": _op("the session", _json(_ref("Session"), "the session"), params=[_SID])
        },
        "/v1/sessions/{sid}/messages": {
            "post": _op(
                "run a foreground turn",
                _json(
                    {
                        "type": "object",
                        "required": ["turn_id"],
                        "properties": {
                            "turn_id": {"type": "string"},
                            "session_id": {"type": "string"},
                        },
                    },
                    "accepted",
                ),
                status="202",
                params=[_SID],
                errors=(400, 401, 404, 409, 413, 503),
                body=_body({"content": {"type": "string"}}, ["content"]),
            ),
            "get": _op(
                "the transcript", _json(list_of("messages", "Message"), "transcript"), params=[_SID]
            ),
        },
        "/v1/sessions/{sid}/events": {
            "get": _op(
                "Server-Sent Events; Last-Event-ID resumes",
                {
                    "description": "an event stream",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                params=[
                    _SID,
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    },
                ],
                errors=(400, 401, 404, 503),
            )
        },
        "/v1/sessions/{sid}/tasks": {
            "post": _op(
                "start a background task or side question",
                _json(_ref("Task"), "accepted"),
                status="202",
                params=[
                    _SID,
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                    },
                ],
                errors=(400, 401, 404, 413, 429, 503),
                body=_body(
                    {
                        "prompt": {"type": "string"},
                        "kind": {"type": "string", "enum": ["background", "side"]},
                        "agent": {"type": "string"},
                        "timeout_s": {"type": "number", "exclusiveMinimum": 0},
                    },
                    ["prompt"],
                ),
            ),
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
                params=[_SID, _TID, _WAIT],
                errors=(400, 401, 404, 503),
            )
        },
        "/v1/sessions/{sid}/tasks/{tid}/cancel": {
            "post": _op(
                "cancel (idempotent); returns the ended task",
                _json(_ref("Task"), "the task"),
                params=[_SID, _TID],
            )
        },
        "/v1/sessions/{sid}/results": {
            "get": _op(
                "completions after ?after=, oldest first; never deletes",
                _json(
                    {
                        "type": "object",
                        "required": ["results", "next_after"],
                        "properties": {
                            "results": {"type": "array", "items": _ref("Result")},
                            "next_after": {"type": "integer"},
                        },
                    },
                    "results",
                ),
                params=[
                    _SID,
                    _WAIT,
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
                errors=(400, 401, 404, 503),
            )
        },
        "/v1/sessions/{sid}/results/ack": {
            "post": _op(
                "acknowledge results up to a seq",
                _json(
                    {
                        "type": "object",
                        "required": ["acked_up_to"],
                        "properties": {"acked_up_to": {"type": "integer"}},
                    },
                    "acknowledged",
                ),
                params=[_SID],
                errors=(400, 401, 404, 413, 503),
                body=_body({"up_to": {"type": "integer", "minimum": 0}}, ["up_to"]),
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "greenroom",
            "version": "1",
            "description": "Agent sessions with background tasks whose results are never lost.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
