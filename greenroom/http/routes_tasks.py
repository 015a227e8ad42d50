"""Background tasks: start, list, read (with long-poll), cancel."""

from __future__ import annotations

from aiohttp import web

from greenroom.http import render
from greenroom.http.errors import BadRequestError
from greenroom.http.keys import SETTINGS
from greenroom.http.middleware import request_id
from greenroom.http.routes_sessions import session_of
from greenroom.http.validate import json_body, query_number

routes = web.RouteTableDef()


@routes.post("/v1/sessions/{sid}/tasks")
async def start_task(request: web.Request) -> web.Response:
    """``POST .../tasks`` → 202 with the task.

    An ``Idempotency-Key`` used again with the same body returns the same task; with a
    different body it is a 422 (``idempotency_key_reused``).
    """
    body = await json_body(
        request,
        required={"prompt": str},
        optional={"kind": str, "agent": str, "timeout_s": float, "max_attempts": int},
    )
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 200:
        raise BadRequestError("Idempotency-Key: must be 1 to 200 characters", "bad_header")
    kind = body.get("kind")
    task = await session_of(request).start_task(
        body["prompt"],
        kind if kind is not None else "background",
        body.get("agent"),
        body.get("timeout_s"),
        max_attempts=1 if body.get("max_attempts") is None else body["max_attempts"],
        idempotency_key=key,
        request_id=request_id(request),
    )
    return web.json_response(render.task(task.info), status=202)


@routes.get("/v1/sessions/{sid}/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    """``GET .../tasks`` → ``{"tasks": [...]}``, running and queued ones included."""
    tasks = await session_of(request).tasks(request_id=request_id(request))
    return web.json_response({"tasks": [render.task(t) for t in tasks]})


@routes.get("/v1/sessions/{sid}/tasks/{tid}")
async def get_task(request: web.Request) -> web.Response:
    """``GET .../tasks/{tid}?wait=S``: the task, once it ends or S seconds pass.

    S is at most ``server.max_wait_s``; more is a 400.
    """
    cap = request.app[SETTINGS].server.max_wait_s
    wait_s = query_number(request, "wait", 0.0, maximum=cap, cap=False)
    task = await session_of(request).get_task(
        request.match_info["tid"], wait_s=wait_s, request_id=request_id(request)
    )
    return web.json_response(render.task(task))


@routes.post("/v1/sessions/{sid}/tasks/{tid}/cancel")
async def cancel_task(request: web.Request) -> web.Response:
    """``POST .../tasks/{tid}/cancel`` → 200 with the ended task; idempotent."""
    task = await session_of(request).cancel_task(
        request.match_info["tid"], request_id=request_id(request)
    )
    return web.json_response(render.task(task))
