"""``GET /console/``: the live web console, static files shipped in the package.

HTML, CSS and JavaScript with no build step and nothing fetched from elsewhere (the
Content-Security-Policy says so to the browser too). The files hold no data: the page
asks the API for everything, with the token the user typed (kept in the tab's
``sessionStorage``), and opens event streams with short-lived tickets.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from greenroom.http.errors import error_response

routes = web.RouteTableDef()

CONSOLE_DIR = Path(__file__).parent / "console"
_FILES = frozenset({"index.html", "console.css", "console.js"})
_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@routes.get("/console")
async def console_root(request: web.Request) -> web.StreamResponse:
    """Redirect to ``/console/``, so the page's relative links resolve under it."""
    raise web.HTTPFound("console/")


@routes.get("/console/{name:[^/]*}")
async def console_file(request: web.Request) -> web.StreamResponse:
    """One of the console's files (``/console/`` is ``index.html``)."""
    name = request.match_info["name"] or "index.html"
    if name not in _FILES:
        return error_response(404, "not_found", f"no such console file: {name}")
    return web.FileResponse(CONSOLE_DIR / name, headers=_HEADERS)
