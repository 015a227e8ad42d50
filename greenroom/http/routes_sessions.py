"""Sessions and foreground turns: /v1/sessions, /v1/sessions/{sid}, .../messages."""

from __future__ import annotations

from aiohttp import web

from greenroom.api import Session
from greenroom.http import render
from greenroom.http.errors import BadRequestError
from greenroom.http.keys import ORCHESTRATOR
from greenroom.http.middleware import request_id
from greenroom.http.validate import json_body, query_number

routes = web.RouteTableDef()


def session_of(request: web.Request) -> Session:
    """The session the URL names (its existence is checked by the call that uses it)."""
    return request.app[ORCHESTRATOR].session(request.match_info["sid"])


@routes.post("/v1/sessions")
async def create_session(request: web.Request) -> web.Response:
    """``POST /v1/sessions`` ``{"agent"?, "metadata"?}`` → 201 with the session."""
    body = await json_body(
        request, required={}, optional={"agent": str, "metadata": dict}, allow_empty=True
    )
    orch = request.app[ORCHESTRATOR]
    session = await orch.create_session(
        body.get("agent"), body.get("metadata"), request_id=request_id(request)
    )
    # The info of the new session, as created: asking the session again would activate
    # it here, and with several nodes it should be claimed by the node its id hashes to.
    assert session.created is not None
    return web.json_response(render.session(session.created), status=201)


@routes.get("/v1/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    """``GET /v1/sessions?limit=&after=`` → ``{"sessions", "next_after", "has_more"}``,
    newest first."""
    limit = int(
        query_number(request, "limit", 50, integer=True, minimum=1, maximum=1000, cap=False)
    )
    after = request.query.get("after") or None
    if after is not None and len(after) > 200:
        raise BadRequestError("after: expected a session id (at most 200 characters)", "bad_query")
    page = await request.app[ORCHESTRATOR].sessions(after=after, limit=limit)
    return web.json_response(render.sessions(page))


@routes.get("/v1/sessions/{sid}")
async def get_session(request: web.Request) -> web.Response:
    """``GET /v1/sessions/{sid}``: id, agent, created_at, metadata, task counts."""
    info = await session_of(request).info(request_id=request_id(request))
    return web.json_response(render.session(info))


@routes.post("/v1/sessions/{sid}/messages")
async def post_message(request: web.Request) -> web.Response:
    """``POST .../messages`` ``{"content"}`` → 202 ``{"turn_id", "session_id"}``; 409 mid-turn."""
    body = await json_body(request, required={"content": str}, optional={})
    session = session_of(request)
    turn_id = await session.start_turn(body["content"], request_id=request_id(request))
    return web.json_response({"turn_id": turn_id, "session_id": session.id}, status=202)


@routes.get("/v1/sessions/{sid}/messages")
async def get_messages(request: web.Request) -> web.Response:
    """``GET .../messages`` → ``{"messages": [...]}``, oldest first."""
    messages = await session_of(request).messages(request_id=request_id(request))
    return web.json_response({"messages": [render.message(m) for m in messages]})
