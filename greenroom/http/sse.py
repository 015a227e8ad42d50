"""Server-Sent Events for a session: replay after ``Last-Event-ID``, then live.

Stored events carry ``id:`` (their session seq); ``message.delta`` has none. A comment
heartbeat keeps proxies from closing an idle stream. A subscriber too slow for its
buffer gets ``event: reset`` and reconnects with ``Last-Event-ID``; on shutdown every
stream ends with ``event: shutdown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from typing import Any, Final

from aiohttp import web

from greenroom.api import Subscription
from greenroom.http.errors import BadRequestError
from greenroom.http.keys import ORCHESTRATOR, SETTINGS, SHUTDOWN, SSE_STREAMS, TICKETS
from greenroom.http.middleware import request_id
from greenroom.http.routes_sessions import session_of
from greenroom.logs import get_logger
from greenroom.models import STREAM_CLOSED, STREAM_RESET, Event

log = get_logger()
routes = web.RouteTableDef()

_SEQ = re.compile(r"[0-9]{1,18}")
_PING: Final = b": ping\n\n"
_RESET: Final = b'event: reset\ndata: {"reason":"subscriber too slow"}\n\n'
_SHUTDOWN: Final = b'event: shutdown\ndata: {"reason":"server shutting down"}\n\n'
_SHUTDOWN_MARK: Final = Event("shutdown", {})


def frame(event: Event) -> bytes:
    """One SSE frame: ``id:`` (stored events only), ``event:`` type, ``data:`` JSON."""
    lines = []
    if event.seq is not None:
        lines.append(f"id: {event.seq}")
    payload = event.data if event.type.startswith("stream.") else {**event.data, "seq": event.seq}
    lines.append(f"event: {event.type}")
    lines.append(f"data: {json.dumps(payload, separators=(',', ':'))}")
    return ("\n".join(lines) + "\n\n").encode()


def _resume_point(request: web.Request) -> int | None:
    header = request.headers.get("Last-Event-ID")
    name, raw = ("Last-Event-ID", header) if header else ("after", request.query.get("after"))
    if raw is None or raw == "":
        return None
    if not _SEQ.fullmatch(raw):
        raise BadRequestError(f"{name}: expected a sequence number, got {raw!r}", "bad_query")
    return int(raw)


@routes.get("/v1/sessions/{sid}/events")
async def events(request: web.Request) -> web.StreamResponse:
    """Stream the session's events until the client leaves, a reset, or shutdown.

    With a token configured, ``?ticket=`` (from ``POST .../events/ticket``) stands in for
    the ``Authorization`` header (checked by the auth middleware).

    Raises:
        BadRequestError: ``Last-Event-ID`` / ``after`` is not a sequence number.
        SessionNotFoundError: no such session.
    """
    settings = request.app[SETTINGS].server
    after = _resume_point(request)
    feed = await session_of(request).subscribe(
        after, maxsize=settings.sse_queue_size, request_id=request_id(request)
    )
    me: asyncio.Task[Any] | None = asyncio.current_task()
    streams = request.app[SSE_STREAMS]
    if me is not None:
        streams.add(me)
    metrics = request.app[ORCHESTRATOR].metrics
    metrics.sse_opened()
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
                "X-Request-ID": request_id(request) or "",
            }
        )
        await response.prepare(request)
        await _pump(request, response, feed, settings.heartbeat_s)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response
    finally:
        metrics.sse_closed()
        feed.close()
        if me is not None:
            streams.discard(me)


@routes.post("/v1/sessions/{sid}/events/ticket")
async def events_ticket(request: web.Request) -> web.Response:
    """``POST .../events/ticket`` → ``{"ticket", "expires_at", "ttl_s"}``: what a browser's
    ``EventSource`` passes as ``?ticket=`` instead of the bearer token it cannot send.

    Raises:
        SessionNotFoundError: no such session (404).
    """
    session = session_of(request)
    await session.info(request_id=request_id(request))  # a ticket only for a real session
    signer = request.app[TICKETS]
    ticket = signer.issue(session.id)
    return web.json_response(
        {"ticket": ticket.value, "expires_at": ticket.expires_at, "ttl_s": signer.ttl_s}
    )


async def _pump(
    request: web.Request, response: web.StreamResponse, feed: Subscription, heartbeat_s: float
) -> None:
    """Copy events to the client; returns when the stream should end."""
    shutdown = request.app[SHUTDOWN]
    try:
        await response.write(b": connected\n\n")
        while True:
            event = await _next(feed, shutdown, heartbeat_s)
            if event is None:
                await response.write(_PING)
            elif event is STREAM_RESET:
                await response.write(_RESET)
                return
            elif event is STREAM_CLOSED or event is _SHUTDOWN_MARK:
                await response.write(_SHUTDOWN)
                return
            else:
                await response.write(frame(event))
    except ConnectionResetError:
        return  # the client went away; the caller unsubscribes
    except Exception as exc:  # headers are sent: log it and end the stream, no 500
        log.error(
            "request_failed",
            actor="http",
            request_id=request_id(request),
            error_type=type(exc).__name__,
            error=str(exc),
            exc_info=exc,
        )


async def _next(feed: Subscription, shutdown: asyncio.Event, heartbeat_s: float) -> Event | None:
    """The next event; None after ``heartbeat_s`` of silence; a shutdown mark on shutdown."""
    if shutdown.is_set():
        return _SHUTDOWN_MARK
    getter: asyncio.Task[Event] = asyncio.ensure_future(feed.get())
    stopper: asyncio.Task[bool] = asyncio.ensure_future(shutdown.wait())
    try:
        done, _ = await asyncio.wait(
            {getter, stopper}, timeout=heartbeat_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopper.cancel()
        if not getter.done():
            # Cancelling Queue.get never loses an item: it stays queued for the next get.
            getter.cancel()
    if getter in done:
        return getter.result()
    return _SHUTDOWN_MARK if stopper in done else None
