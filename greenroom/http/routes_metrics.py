"""``GET /metrics``: the orchestrator's Prometheus metrics in the text format.

On the API's port it needs the bearer token when one is configured (the auth
middleware). ``server.metrics_port`` serves it again, alone, on a loopback-only port
without the token (:func:`create_metrics_app`), for a local agent that should not hold
the API token.
"""

from __future__ import annotations

from aiohttp import web

from greenroom.http.errors import error_response
from greenroom.http.keys import ORCHESTRATOR
from greenroom.orchestrator import Orchestrator

routes = web.RouteTableDef()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """The metrics, in the format the ``Accept`` header asks for (Prometheus text by
    default, OpenMetrics on request); 404 when ``server.metrics`` is off."""
    collected = request.app[ORCHESTRATOR].metrics
    if not collected.enabled:
        return error_response(404, "not_found", "metrics are off (server.metrics = false)")
    body, content_type = await collected.exposition(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


def create_metrics_app(orchestrator: Orchestrator) -> web.Application:
    """An app serving only ``GET /metrics``, without auth: bind it to loopback only."""
    app = web.Application()
    app[ORCHESTRATOR] = orchestrator
    app.add_routes(routes)
    return app
