"""Any node answers any request: a session's requests go to the node that owns it.

With several nodes, a request for a session that is live on another node is forwarded
there and its answer streamed back (SSE and long-polls too). Which node owns a session
is learnt by trying: activating the session here claims it in PostgreSQL, and a claim
refused with :class:`~greenroom.errors.OwnedElsewhereError` names the owner and its URL.
That answer is remembered for half a lease, so the next request for the session goes
straight to its owner. A forwarded request carries ``X-Greenroom-Forwarded`` and is
never forwarded again: if its receiver does not own the session either (ownership just
moved), it answers 503 with ``Retry-After`` and the client retries.

Every response names the node that produced it in ``X-Greenroom-Node``.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from greenroom.errors import OwnedElsewhereError
from greenroom.http.errors import Handler, error_response
from greenroom.http.keys import FORWARD, FORWARDED_TO, ORCHESTRATOR, SETTINGS
from greenroom.http.middleware import request_id
from greenroom.logs import get_logger

if TYPE_CHECKING:
    from greenroom.cluster import Node

log = get_logger()

FORWARDED = "X-Greenroom-Forwarded"
NODE = "X-Greenroom-Node"
_SESSION_PATH = re.compile(r"^/v1/sessions/([^/]+)(?:/|$)")
# Request headers the owner needs; hop-by-hop ones (Connection, Host...) stay here.
_PASS_ON = (
    "Authorization",
    "Content-Type",
    "Accept",
    "Last-Event-ID",
    "Idempotency-Key",
    "X-Request-ID",
)
_DROP_BACK = frozenset(("connection", "keep-alive", "transfer-encoding", "content-length", "date"))


class Forwarder:
    """Owner hints and the HTTP client that forwards; one per app."""

    def __init__(self) -> None:
        self.hints: dict[str, tuple[str, float]] = {}  # session id -> (owner url, until)
        self._client: aiohttp.ClientSession | None = None

    def client(self) -> aiohttp.ClientSession:
        if self._client is None or self._client.closed:
            self._client = aiohttp.ClientSession(
                # No bound on connections to the other nodes: each forwarded stream or
                # long-poll holds one, and a request must never wait for a free one.
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=3.0),
                auto_decompress=False,
            )
        return self._client

    def hint(self, sid: str) -> str | None:
        found = self.hints.get(sid)
        if found is None:
            return None
        if found[1] < time.monotonic():
            del self.hints[sid]
            return None
        return found[0]

    def remember(self, sid: str, url: str, ttl_s: float) -> None:
        if len(self.hints) > 100_000:  # bounded: forget everything rather than grow
            self.hints.clear()
        self.hints[sid] = (url, time.monotonic() + ttl_s)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


@web.middleware
async def forward_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Serve here, or forward to the session's owner."""
    node = request.app[ORCHESTRATOR].node
    match = _SESSION_PATH.match(request.path)
    if node is None or match is None or FORWARDED in request.headers:
        return await handler(request)
    sid = match.group(1)
    forwarder = request.app[FORWARD]
    url = forwarder.hint(sid)
    if url is None:
        try:
            return await handler(request)
        except OwnedElsewhereError as exc:
            if not exc.url:
                raise
            url = exc.url
            forwarder.remember(sid, url, node.lease_s / 2)
    return await _proxy(request, node, forwarder, sid, url)


async def _proxy(
    request: web.Request, node: Node, forwarder: Forwarder, sid: str, url: str
) -> web.StreamResponse:
    body = await request.read()
    headers = {name: request.headers[name] for name in _PASS_ON if name in request.headers}
    headers[FORWARDED] = node.node_id
    node.forwarded += 1
    request[FORWARDED_TO] = url
    quiet = aiohttp.ClientTimeout(
        total=None, connect=5.0, sock_connect=3.0, sock_read=_quiet_s(request, node)
    )
    try:
        upstream = await forwarder.client().request(
            request.method,
            url + request.path_qs,
            data=body or None,
            headers=headers,
            timeout=quiet,
        )
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        forwarder.hints.pop(sid, None)
        log.warning(
            "forward_failed",
            actor="http",
            request_id=request_id(request),
            session_id=sid,
            to=url,
            error=str(exc) or type(exc).__name__,
        )
        message = f"the node that owns session {sid} ({url}) did not answer; retry shortly"
        if request.method != "GET" and not isinstance(exc, aiohttp.ClientConnectorError):
            # Sent, then no answer: the owner may have carried it out.
            message += " (the request may have been carried out: retry it with the same "
            message += "Idempotency-Key)"
        return error_response(503, "owner_unreachable", message, {"Retry-After": "1"})
    async with upstream:
        if upstream.status == 503:
            forwarder.hints.pop(sid, None)  # ownership may be moving: ask again next time
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in upstream.headers.items():
            if name.lower() not in _DROP_BACK:
                response.headers.add(name, value)
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
        except (TimeoutError, aiohttp.ClientError):
            # The owner went away mid-answer (a stream, most often): end ours too;
            # an SSE client resumes with Last-Event-ID wherever it reconnects.
            return response
        await response.write_eof()
        return response


def _quiet_s(request: web.Request, node: Node) -> float:
    """How long the owner may stay silent before it is taken for dead (paused, cut off).

    A stream sends a heartbeat every ``heartbeat_s`` and a long-poll answers within its
    ``wait``; anything else answers at once. A lease on top covers a slow owner.
    """
    settings = request.app[SETTINGS].server
    if request.path.endswith("/events"):
        return settings.heartbeat_s + node.lease_s
    try:
        wait = float(request.query.get("wait", 0))
    except ValueError:
        wait = 0.0
    return min(max(wait, 0.0), settings.max_wait_s) + node.lease_s


async def name_the_node(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: say which node answered (cluster only)."""
    node = request.app[ORCHESTRATOR].node
    if node is not None and NODE not in response.headers:
        response.headers[NODE] = node.node_id
