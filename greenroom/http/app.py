"""The aiohttp application: middlewares, routes, health and the OpenAPI document."""

from __future__ import annotations

import asyncio

from aiohttp import web

from greenroom.http import routes_results, routes_sessions, routes_tasks, sse
from greenroom.http.errors import error_middleware, error_response
from greenroom.http.keys import ORCHESTRATOR, SETTINGS, SHUTDOWN
from greenroom.http.middleware import auth_middleware, body_limit_middleware, request_id_middleware
from greenroom.http.openapi import openapi_document
from greenroom.orchestrator import Orchestrator

health = web.RouteTableDef()


@health.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@health.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    orch = request.app[ORCHESTRATOR]
    if request.app[SHUTDOWN].is_set() or not orch.running:
        return error_response(503, "shutting_down", "greenroom is shutting down")
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, orch.runtime.store.check)  # StoreError -> 503
    return web.json_response({"status": "ready"})


@health.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def create_app(orchestrator: Orchestrator) -> web.Application:
    """The HTTP API over a started (or soon started) orchestrator.

    Args:
        orchestrator: serves every request; the caller starts and stops it.
    """
    settings = orchestrator.settings
    app = web.Application(
        middlewares=[
            request_id_middleware,
            error_middleware,
            auth_middleware,
            body_limit_middleware,
        ],
        client_max_size=settings.limits.max_body_bytes,
    )
    app[ORCHESTRATOR] = orchestrator
    app[SETTINGS] = settings
    app[SHUTDOWN] = asyncio.Event()
    for table in (
        health,
        routes_sessions.routes,
        routes_tasks.routes,
        routes_results.routes,
        sse.routes,
    ):
        app.add_routes(table)
    return app
