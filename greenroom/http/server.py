"""``greenroom serve``: run the API until SIGTERM/SIGINT, then stop cleanly and boundedly.

Shutdown: stop accepting connections, end SSE streams with ``event: shutdown``, let
running turns finish within ``shutdown_grace_s``, record the rest as ``interrupted``,
stop every actor (pykka threads are not daemons: one left running would hang exit),
then close the remaining connections.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal

from aiohttp import web

from greenroom.errors import ConfigError
from greenroom.http.app import create_app
from greenroom.http.keys import SHUTDOWN, SSE_STREAMS
from greenroom.http.middleware import PARSER_LIMIT_BYTES
from greenroom.http.routes_metrics import create_metrics_app
from greenroom.logs import get_logger
from greenroom.orchestrator import Orchestrator
from greenroom.settings import Settings

log = get_logger()
_SSE_CLOSE_S = 2.0  # how long open SSE streams get to send `event: shutdown`
_CLEANUP_S = 2.0  # how long in-flight requests get once the orchestrator stopped
METRICS_HOST = "127.0.0.1"
"""Where ``server.metrics_port`` binds: loopback only, whatever ``server.host`` is."""


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
    ready: asyncio.Future[int] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set), then shut down in order.

    Args:
        settings: the configuration.
        host: overrides ``server.host``.
        port: overrides ``server.port`` (0 picks a free port).
        ready: resolved with the bound port once the server accepts connections.
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
    orch = Orchestrator(settings)
    await orch.start()
    app = create_app(orch)
    # handler_cancellation: a client that disconnects cancels its handler at once, so a
    # long-poll or an event stream notices a gone client now, not at the next heartbeat.
    # The parser takes lines and header fields up to PARSER_LIMIT_BYTES, so the usual
    # oversize requests reach the middleware and get a JSON 414/431 (not a text 400).
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=_CLEANUP_S,
        handler_cancellation=True,
        max_line_size=PARSER_LIMIT_BYTES,
        max_field_size=PARSER_LIMIT_BYTES,
    )
    signals = _install_signal_handlers(loop, stop)
    metrics_runner: web.AppRunner | None = None
    try:  # from here on, every exit path stops the orchestrator's (non-daemon) threads
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = _port(runner)
        log.info("server_started", actor="http", host=host, port=bound, pid=os.getpid())
        print(f"greenroom serving on http://{host}:{bound}", flush=True)
        metrics_runner = await _serve_metrics(settings, orch)
        if ready is not None and not ready.done():
            ready.set_result(bound)
        await stop.wait()
        await _shut_down(app, site, orch)
    finally:
        await orch.stop()  # no-op after a clean _shut_down; stops the actors otherwise
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()
        for signum in signals:
            loop.remove_signal_handler(signum)
    log.info("server_stopped", actor="http")


async def _serve_metrics(settings: Settings, orch: Orchestrator) -> web.AppRunner | None:
    """``server.metrics_port``: /metrics alone, without the token, on 127.0.0.1 only."""
    port = settings.server.metrics_port
    if not (settings.server.metrics and port):
        return None
    runner = web.AppRunner(create_metrics_app(orch), handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, METRICS_HOST, port).start()
    except BaseException:  # the port is taken, say: fail start-up, leave nothing open
        await runner.cleanup()
        raise
    log.info("metrics_server_started", actor="http", host=METRICS_HOST, port=_port(runner))
    print(f"greenroom metrics on http://{METRICS_HOST}:{_port(runner)}/metrics", flush=True)
    return runner


async def _shut_down(app: web.Application, site: web.TCPSite, orch: Orchestrator) -> None:
    """Stop intake, end SSE streams, stop the orchestrator; each step is bounded."""
    log.info("server_stopping", actor="http")
    app[SHUTDOWN].set()  # /v1 answers 503, readyz 503, SSE streams write `event: shutdown`
    await site.stop()  # stop accepting connections
    registry = app[SSE_STREAMS]
    if registry:
        _, pending = await asyncio.wait(set(registry), timeout=_SSE_CLOSE_S)
        for task in pending:  # a client that stopped reading: do not wait for it
            task.cancel()
    await orch.stop()  # grace for turns, interrupted for the rest, actors stopped


def _install_signal_handlers(
    loop: asyncio.AbstractEventLoop, stop: asyncio.Event
) -> list[signal.Signals]:
    installed: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no Unix
            continue
        installed.append(signum)
    return installed


def _port(runner: web.AppRunner) -> int:
    addresses = runner.addresses
    return int(addresses[0][1]) if addresses else 0
