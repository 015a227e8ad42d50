"""Results: read (never deletes, long-polls) and acknowledge."""

from __future__ import annotations

from aiohttp import web

from greenroom.http.keys import SETTINGS
from greenroom.http.middleware import request_id
from greenroom.http.routes_sessions import session_of
from greenroom.http.validate import json_body, query_number

routes = web.RouteTableDef()


@routes.get("/v1/sessions/{sid}/results")
async def get_results(request: web.Request) -> web.Response:
    cap = request.app[SETTINGS].server.max_wait_s
    after = int(query_number(request, "after", 0, integer=True))
    wait_s = query_number(request, "wait", 0.0, maximum=cap)
    limit = int(query_number(request, "limit", 100, integer=True, minimum=1, maximum=1000))
    results = await session_of(request).results(
        after, wait_s, limit=limit, request_id=request_id(request)
    )
    next_after = results[-1].seq if results else after
    return web.json_response({"results": [r.to_json() for r in results], "next_after": next_after})


@routes.post("/v1/sessions/{sid}/results/ack")
async def ack_results(request: web.Request) -> web.Response:
    body = await json_body(request, required={"up_to": int}, optional={})
    acked = await session_of(request).ack(body["up_to"], request_id=request_id(request))
    return web.json_response({"acked_up_to": acked})
