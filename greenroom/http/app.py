"""The aiohttp application: middlewares, routes, health and the OpenAPI document."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from greenroom.http import (
    routes_console,
    routes_metrics,
    routes_results,
    routes_sessions,
    routes_tasks,
    sse,
)
from greenroom.http.errors import error_middleware, error_response, shutting_down
from greenroom.http.forward import Forwarder, forward_middleware, name_the_node
from greenroom.http.keys import FORWARD, ORCHESTRATOR, SETTINGS, SHUTDOWN, SSE_STREAMS, TICKETS
from greenroom.http.middleware import (
    auth_middleware,
    body_limit_middleware,
    intake_middleware,
    request_id,
    request_id_middleware,
)
from greenroom.http.openapi import openapi_document
from greenroom.http.tickets import TicketSigner
from greenroom.logs import get_logger
from greenroom.orchestrator import Orchestrator

log = get_logger()
health = web.RouteTableDef()


@health.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


@health.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Readiness: not shutting down, and the store passes its check (run off the loop)."""
    if shutting_down(request.app):
        return error_response(503, "shutting_down", "greenroom is shutting down")
    try:
        await request.app[ORCHESTRATOR].check_store()
    except Exception as exc:  # any failure of the check means "not ready", never a 500
        log.warning(
            "store_check_failed",
            actor="http",
            request_id=request_id(request),
            error_type=type(exc).__name__,
            error=str(exc),
        )
        return error_response(503, "store_unavailable", f"store check failed: {exc}")
    return web.json_response({"status": "ready"})


@health.get("/v1/stats")
async def stats(request: web.Request) -> web.Response:
    """Live sessions, live actors by kind, running and queued tasks, threads, open fds."""
    orch = request.app[ORCHESTRATOR]
    body = await orch.stats()
    return web.json_response(body)


@health.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this API, with this server's bounds."""
    return web.json_response(openapi_document(request.app[SETTINGS]))


async def _on_shutdown(app: web.Application) -> None:
    # However the app is run (serve(), web.run_app, a test server), SSE streams end
    # with `event: shutdown` before the server closes their connections.
    app[SHUTDOWN].set()
    registry = app[SSE_STREAMS]
    if registry:
        await asyncio.wait(set(registry), timeout=2.0)


def create_app(orchestrator: Orchestrator) -> web.Application:
    """The HTTP API over an orchestrator.

    Args:
        orchestrator: serves every request; the caller starts it before serving and
            stops it after the app has shut down.

    Returns:
        The application, with typed ``web.AppKey`` state (see ``greenroom.http.keys``).
    """
    settings = orchestrator.settings
    app = web.Application(
        middlewares=[
            request_id_middleware,
            error_middleware,
            auth_middleware,
            intake_middleware,
            body_limit_middleware,
            forward_middleware,
        ],
        client_max_size=settings.limits.max_body_bytes,
    )
    app[ORCHESTRATOR] = orchestrator
    app[SETTINGS] = settings
    app[SHUTDOWN] = asyncio.Event()
    app[TICKETS] = TicketSigner(settings.server.token)
    streams: set[asyncio.Task[Any]] = set()
    app[SSE_STREAMS] = streams
    app.on_shutdown.append(_on_shutdown)
    forwarder = app[FORWARD] = Forwarder()
    app.on_response_prepare.append(name_the_node)

    async def close_forwarder(_: web.Application) -> None:
        await forwarder.close()

    app.on_cleanup.append(close_forwarder)
    for table in (
        health,
        routes_sessions.routes,
        routes_tasks.routes,
        routes_results.routes,
        sse.routes,
        routes_metrics.routes,
        routes_console.routes,
    ):
        app.add_routes(table)
    return app
