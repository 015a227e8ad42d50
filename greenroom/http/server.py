"""``greenroom serve``: run the API until SIGTERM/SIGINT, then stop cleanly and boundedly.

Shutdown: stop accepting connections, end SSE streams with ``event: shutdown``, let
running turns finish within ``shutdown_grace_s``, record the rest as ``interrupted``,
stop every actor (pykka threads are not daemons: one left running would hang exit).
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal

import structlog
from aiohttp import web

from greenroom.errors import ConfigError
from greenroom.http.app import create_app
from greenroom.http.keys import SHUTDOWN
from greenroom.orchestrator import Orchestrator
from greenroom.settings import Settings

log = structlog.get_logger("greenroom")


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback bind without a token.

    Raises:
        ConfigError: ``host`` is not loopback and no token is configured.
    """
    if token:
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"server.host: refusing to bind {host!r} without a token; set "
            "GREENROOM_TOKEN (or server.token), or bind 127.0.0.1"
        )


async def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set), then shut down in order.

    Args:
        settings: the configuration.
        host: overrides ``server.host``.
        port: overrides ``server.port``.
        ready: set once the server accepts connections.
        stop: setting it stops the server (tests, embedding).

    Raises:
        ConfigError: a non-loopback host without a token, or a bad configuration.
        StoreError: the store cannot be opened or the data dir is in use.
    """
    host = host or settings.server.host
    port = settings.server.port if port is None else port
    check_bind(host, settings.server.token)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    orch = Orchestrator(settings)
    await orch.start()
    app = create_app(orch)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2.0)
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.info("server_started", actor="http", host=host, port=_port(runner), pid=_pid())
        print(f"greenroom serving on http://{host}:{_port(runner)}", flush=True)
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("server_stopping", actor="http")
        app[SHUTDOWN].set()  # SSE streams end with `event: shutdown`
        await site.stop()  # stop accepting
        await orch.stop()  # grace for turns, interrupted for the rest, actors stopped
    finally:
        await runner.cleanup()
        await orch.stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("server_stopped", actor="http")


def _port(runner: web.AppRunner) -> int:
    addresses = runner.addresses
    return int(addresses[0][1]) if addresses else 0


def _pid() -> int:
    import os

    return os.getpid()
