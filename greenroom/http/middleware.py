"""Request ids, access logs, bearer-token auth, closed intake, the body-size bound."""

from __future__ import annotations

import hmac
import itertools
import re
import time
import uuid

from aiohttp import web

from greenroom.errors import ShuttingDownError
from greenroom.http.errors import Handler, error_response, shutting_down
from greenroom.http.keys import FORWARDED_TO, ORCHESTRATOR, REQUEST_ID, SETTINGS, TICKETS
from greenroom.logs import get_logger
from greenroom.metrics import UNMATCHED_ROUTE

log = get_logger()
_VALID_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


MAX_TARGET_BYTES = 8192
"""The longest request target (path and query) answered; longer is a JSON 414."""
MAX_HEADER_BYTES = 16384
"""The most header bytes answered; more is a JSON 431."""
PARSER_LIMIT_BYTES = 65536
"""What ``greenroom serve``'s HTTP parser accepts per line and header field; beyond it
the parser answers a plain-text 400 before greenroom sees the request."""
EVENTS_ROUTE = "/v1/sessions/{sid}/events"
"""The one route that takes a stream ticket (``?ticket=``) in place of the token."""


# Made-up request ids: unique in the process (a counter) and across processes (a random
# prefix per process), without a uuid4 per request on the hot path.
_RID_PREFIX = uuid.uuid4().hex[:24]
_RIDS = itertools.count(1)


def route_template(request: web.Request) -> str:
    """The template of the route the request matched (``/v1/sessions/{sid}``): a metrics
    label, so never the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


def request_id(request: web.Request) -> str | None:
    """The request's id (set by :func:`request_id_middleware`)."""
    value = request.get(REQUEST_ID)
    return value if isinstance(value, str) else None


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Accept or make up ``X-Request-ID``, echo it, and log the request's start and end."""
    given = request.headers.get("X-Request-ID", "")
    rid = given if _VALID_ID.fullmatch(given) else f"req_{_RID_PREFIX}{next(_RIDS):08x}"
    request[REQUEST_ID] = rid
    started = time.perf_counter()
    log.info(
        "request_started", actor="http", request_id=rid, method=request.method, path=request.path
    )
    status: int | str = "cancelled"  # the client went away before an answer
    try:
        response = await handler(request)
        if not response.prepared:  # a stream (SSE) set the header before it started
            response.headers["X-Request-ID"] = rid
        status = response.status
        return response
    finally:
        duration_s = time.perf_counter() - started
        request.app[ORCHESTRATOR].metrics.http_request(
            route_template(request), request.method, status, duration_s
        )
        log.info(
            "request_finished",
            actor="http",
            request_id=rid,
            status=status,
            method=request.method,
            path=request.path,
            duration_ms=round(duration_s * 1000, 3),
            forwarded_to=request.get(FORWARDED_TO),
            # Long on purpose: doctor does not call these slow.
            stream=request.path.endswith("/events") or None,
            wait_s=request.query.get("wait") or None,
        )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With a token configured, every /v1 route and /metrics need
    ``Authorization: Bearer <token>``; a session's event stream also takes a ticket for
    that session (``?ticket=``, see ``greenroom.http.tickets``)."""
    token = request.app[SETTINGS].server.token
    path = request.path
    if token and (path.startswith("/v1") or path == "/metrics"):
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        bearer = scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())
        if not bearer and not _ticket_admits(request):
            message = "missing or wrong bearer token (Authorization: Bearer ...)"
            if "ticket" in request.query:
                message += "; the stream ticket is expired, forged, or for another session"
            return error_response(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})
    return await handler(request)


def _ticket_admits(request: web.Request) -> bool:
    """A valid, unexpired ticket for the session whose event stream is requested."""
    ticket = request.query.get("ticket")
    if not ticket or request.method != "GET" or route_template(request) != EVENTS_ROUTE:
        return False
    return request.app[TICKETS].verify(ticket, request.match_info["sid"])


@web.middleware
async def intake_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse /v1 work once shutdown began (the orchestrator may already be gone).

    Raises:
        ShuttingDownError: the server is stopping (503).
    """
    if request.path.startswith("/v1") and shutting_down(request.app):
        raise ShuttingDownError("greenroom is shutting down; no new work is accepted")
    return await handler(request)


@web.middleware
async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """413 before reading a body whose declared length is over ``max_body_bytes``; a JSON
    414 for a request target over ``MAX_TARGET_BYTES`` and a JSON 431 for headers over
    ``MAX_HEADER_BYTES`` (``greenroom serve`` lets the HTTP parser take longer ones, so
    these answers, not the parser's plain-text 400, are what a client meets)."""
    if len(request.raw_path) > MAX_TARGET_BYTES:
        return error_response(
            414,
            "uri_too_long",
            f"request target of {len(request.raw_path)} bytes exceeds {MAX_TARGET_BYTES}",
        )
    header_bytes = sum(len(k) + len(v) for k, v in request.raw_headers)
    if header_bytes > MAX_HEADER_BYTES:
        return error_response(
            431,
            "headers_too_large",
            f"request headers of {header_bytes} bytes exceed {MAX_HEADER_BYTES}",
        )
    limit = request.app[SETTINGS].limits.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return error_response(
            413,
            "body_too_large",
            f"request body of {request.content_length} bytes exceeds "
            f"limits.max_body_bytes ({limit})",
        )
    return await handler(request)
