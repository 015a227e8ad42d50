"""Results: read (never deletes, long-polls) and acknowledge."""

from __future__ import annotations

from aiohttp import web

from greenroom.http import render
from greenroom.http.errors import BadRequestError
from greenroom.http.keys import SETTINGS
from greenroom.http.middleware import request_id
from greenroom.http.routes_sessions import session_of
from greenroom.http.validate import json_body, query_number

routes = web.RouteTableDef()
_MAX_SEQ = 2**53


@routes.get("/v1/sessions/{sid}/results")
async def get_results(request: web.Request) -> web.Response:
    """``GET .../results?after=&wait=&limit=`` → ``{"results", "next_after", "has_more"}``.

    Never deletes. ``has_more`` says that results follow ``next_after``.
    """
    cap = request.app[SETTINGS].server.max_wait_s
    # Past 2**53 nothing can follow; the cap keeps store queries within SQLite's int64.
    after = int(query_number(request, "after", 0, integer=True, maximum=_MAX_SEQ))
    wait_s = query_number(request, "wait", 0.0, maximum=cap, cap=False)
    limit = int(
        query_number(request, "limit", 100, integer=True, minimum=1, maximum=1000, cap=False)
    )
    page = await session_of(request).results(
        after, wait_s, limit=limit, request_id=request_id(request)
    )
    return web.json_response(render.results(page))


@routes.post("/v1/sessions/{sid}/results/ack")
async def ack_results(request: web.Request) -> web.Response:
    """``POST .../results/ack`` ``{"up_to"}`` → ``{"acked_up_to"}``; 409 past the last seq."""
    body = await json_body(request, required={"up_to": int}, optional={})
    up_to: int = body["up_to"]
    if up_to < 0:
        raise BadRequestError(f"up_to: must be >= 0, got {up_to}")
    acked = await session_of(request).ack(up_to, request_id=request_id(request))
    return web.json_response({"acked_up_to": acked})
