"""Typed application and request keys (``web.AppKey``, not string keys)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from greenroom.orchestrator import Orchestrator
from greenroom.settings import Settings

ORCHESTRATOR = web.AppKey("orchestrator", Orchestrator)
SETTINGS = web.AppKey("settings", Settings)
SHUTDOWN = web.AppKey("shutdown", asyncio.Event)
REQUEST_ID = web.RequestKey("request_id", str)
