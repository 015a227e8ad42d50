"""Short-lived signed tickets for event streams: what a browser's ``EventSource`` sends
instead of the bearer token it cannot put in a header.

``POST /v1/sessions/{sid}/events/ticket`` (authorized by the bearer token) returns a
ticket bound to that session and valid for :data:`TICKET_TTL_S` seconds;
``GET /v1/sessions/{sid}/events?ticket=...`` accepts it in place of the header. The
long-lived token never goes into a URL: a ticket that leaks (a proxy's access log, the
browser's history) opens one session's stream for a minute, and tells nothing of the
token.

A ticket is ``v1.<expiry>.<mac>``: the expiry in Unix seconds and an HMAC-SHA256 of the
session id and the expiry. The key is derived from the token, so every node that shares
the token accepts a ticket any of them issued (the HMAC cannot be inverted to the
token); without a token the key is random per process, and tickets are not needed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

TICKET_TTL_S = 60
"""How long a ticket opens its session's stream (checked when the stream starts)."""
_CONTEXT = b"greenroom event-stream ticket v1"


@dataclass(frozen=True, slots=True)
class Ticket:
    """A ticket and the Unix time it expires."""

    value: str
    expires_at: int


class TicketSigner:
    """Issues and checks tickets.

    Args:
        token: the server's bearer token (the key is derived from it), or None.
        ttl_s: how long a ticket is valid.
    """

    def __init__(self, token: str | None, ttl_s: int = TICKET_TTL_S) -> None:
        if token:
            self._key = hmac.new(token.encode(), _CONTEXT, hashlib.sha256).digest()
        else:
            self._key = secrets.token_bytes(32)
        self.ttl_s = ttl_s

    def _mac(self, session_id: str, expires_at: int) -> str:
        message = f"{expires_at}\n{session_id}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue(self, session_id: str, now: float | None = None) -> Ticket:
        """A ticket for ``session_id``'s event stream, valid for ``ttl_s`` from ``now``."""
        expires_at = int(time.time() if now is None else now) + self.ttl_s
        return Ticket(f"v1.{expires_at}.{self._mac(session_id, expires_at)}", expires_at)

    def verify(self, ticket: str, session_id: str, now: float | None = None) -> bool:
        """Whether ``ticket`` was issued for ``session_id`` and has not expired."""
        version, _, rest = ticket.partition(".")
        raw_expiry, _, mac = rest.partition(".")
        if version != "v1" or not (raw_expiry.isascii() and raw_expiry.isdigit()):
            return False
        if len(raw_expiry) > 12:
            return False
        expires_at = int(raw_expiry)
        if expires_at < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(mac.encode(), self._mac(session_id, expires_at).encode())
