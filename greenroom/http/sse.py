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
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from greenroom.actors.events import CLOSED, RESET
from greenroom.http.errors import BadRequestError
from greenroom.http.keys import SETTINGS, SHUTDOWN
from greenroom.http.middleware import request_id
from greenroom.http.routes_sessions import session_of
from greenroom.models import Event

routes = web.RouteTableDef()


def _frame(event: Event) -> bytes:
    lines = []
    if event.seq is not None:
        lines.append(f"id: {event.seq}")
    payload = event.data if event.type.startswith("stream.") else {**event.data, "seq": event.seq}
    lines.append(f"event: {event.type}")
    lines.append(f"data: {json.dumps(payload, separators=(',', ':'))}")
    return ("\n".join(lines) + "\n\n").encode()


def _resume_point(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("after")
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise BadRequestError(
            f"Last-Event-ID: expected a sequence number, got {raw!r}", "bad_header"
        )
    return int(raw)


@routes.get("/v1/sessions/{sid}/events")
async def events(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS].server
    after = _resume_point(request)
    session = session_of(request)
    feed = await session.subscribe(
        after, maxsize=settings.sse_queue_size, request_id=request_id(request)
    )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Request-ID": request_id(request) or "",
        }
    )
    await response.prepare(request)
    shutdown = request.app[SHUTDOWN]
    try:
        await response.write(b": connected\n\n")
        while True:
            event = await _next(feed.get(), shutdown, settings.heartbeat_s)
            if event is None:
                await response.write(b": ping\n\n")
                continue
            if event is RESET:
                await response.write(b'event: reset\ndata: {"reason":"too slow"}\n\n')
                break
            if event is CLOSED or event.type == "shutdown":
                await response.write(b"event: shutdown\ndata: {}\n\n")
                break
            await response.write(_frame(event))
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the client went away; unsubscribe below
    finally:
        feed.close()
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


_SHUTDOWN_EVENT = Event("shutdown", {})


async def _next(
    get: Coroutine[Any, Any, Event], shutdown: asyncio.Event, heartbeat_s: float
) -> Event | None:
    """The next event; None after ``heartbeat_s`` of silence; a shutdown marker on shutdown."""
    getter: asyncio.Future[Event] = asyncio.ensure_future(get)
    stopper: asyncio.Future[Any] = asyncio.ensure_future(shutdown.wait())
    done, _ = await asyncio.wait(
        {getter, stopper}, timeout=heartbeat_s, return_when=asyncio.FIRST_COMPLETED
    )
    stopper.cancel()
    if getter in done:
        return getter.result()
    getter.cancel()
    return _SHUTDOWN_EVENT if stopper in done else None
