"""The HTTP API (aiohttp): a thin layer that validates, asks session actors, renders.

It lives in ``greenroom/http/`` rather than a top-level ``http`` package, which would
shadow the standard library's ``http`` that aiohttp itself imports.
"""

from greenroom.http.app import create_app
from greenroom.http.server import serve

__all__ = ["create_app", "serve"]
