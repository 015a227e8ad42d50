"""Typed application and request keys (``web.AppKey``, not string keys)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from greenroom.http.tickets import TicketSigner
from greenroom.orchestrator import Orchestrator
from greenroom.settings import Settings

if TYPE_CHECKING:
    from greenroom.http.forward import Forwarder

ORCHESTRATOR = web.AppKey("orchestrator", Orchestrator)
SETTINGS = web.AppKey("settings", Settings)
SHUTDOWN = web.AppKey("shutdown", asyncio.Event)
# The handler tasks of open SSE streams, so shutdown can wait for their last event.
SSE_STREAMS: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("sse_streams")
# Several nodes: owner hints and the client that forwards requests to other nodes.
FORWARD: web.AppKey[Forwarder] = web.AppKey("forward")
TICKETS = web.AppKey("tickets", TicketSigner)
REQUEST_ID = web.RequestKey("request_id", str)
# The owner's URL when this node forwarded the request (logged with request_finished).
FORWARDED_TO = web.RequestKey("forwarded_to", str)
