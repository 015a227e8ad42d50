"""Stream tickets: how a browser's EventSource reaches an event stream without the token."""

from __future__ import annotations

import time

from greenroom.http.tickets import TicketSigner
from tests.http.conftest import Client, ClientFactory, SSEReader, new_session

TOKEN = "tickets-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_a_ticket_opens_only_its_own_session_until_it_expires() -> None:
    signer = TicketSigner(TOKEN, ttl_s=60)
    now = time.time()
    ticket = signer.issue("ses_a", now=now)
    assert ticket.expires_at == int(now) + 60
    assert TOKEN not in ticket.value
    assert signer.verify(ticket.value, "ses_a", now=now + 59)
    assert not signer.verify(ticket.value, "ses_b", now=now)  # bound to its session
    assert not signer.verify(ticket.value, "ses_a", now=now + 61)  # expired
    version, expiry, mac = ticket.value.split(".")
    later = str(int(expiry) + 3600)
    assert not signer.verify(f"{version}.{later}.{mac}", "ses_a", now=now)  # forged expiry
    for forged in ("", "v1", "v1..", f"v2.{expiry}.{mac}", f"v1.{expiry}.x", "v1.\uff11\uff12.x"):
        assert not signer.verify(forged, "ses_a", now=now), forged
    # Every node sharing the token accepts it; a server with another token does not.
    assert TicketSigner(TOKEN).verify(ticket.value, "ses_a", now=now)
    assert not TicketSigner("another-token").verify(ticket.value, "ses_a", now=now)


async def ticket_for(client: Client, sid: str) -> str:
    response = await client.post(f"/v1/sessions/{sid}/events/ticket", headers=AUTH)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["ttl_s"] == 60 and body["expires_at"] > time.time()
    ticket: str = body["ticket"]
    return ticket


async def test_the_events_route_takes_a_ticket_for_its_session_instead_of_the_token(
    make_client: ClientFactory,
) -> None:
    client = await make_client(server={"token": TOKEN})
    a, b = await _session(client), await _session(client)
    ticket = await ticket_for(client, a)
    events = f"/v1/sessions/{a}/events"

    assert (await client.post(f"/v1/sessions/{a}/events/ticket")).status == 401  # needs token
    assert (await client.get(events)).status == 401
    forged = await client.get(events, params={"ticket": "v1.99999999999.forged"})
    assert forged.status == 401
    assert "ticket is expired, forged" in (await forged.json())["error"]["message"]
    assert (await client.get(f"/v1/sessions/{b}/events", params={"ticket": ticket})).status == 401
    # Only the event stream takes a ticket; every other route still needs the token.
    assert (await client.get(f"/v1/sessions/{a}", params={"ticket": ticket})).status == 401
    assert (await client.get("/metrics", params={"ticket": ticket})).status == 401
    missing = await client.post("/v1/sessions/ses_missing/events/ticket", headers=AUTH)
    assert missing.status == 404

    stream = await client.get(events, params={"ticket": ticket, "after": "0"})
    assert stream.status == 200
    started = await client.post(f"/v1/sessions/{a}/tasks", json={"prompt": "hi"}, headers=AUTH)
    assert started.status == 202
    seen = await SSEReader(stream).until("task.completed")
    assert [f["event"] for f in seen] == ["task.queued", "task.started", "task.completed"]
    stream.close()


async def test_without_a_token_tickets_are_issued_and_not_needed(client: Client) -> None:
    sid = await new_session(client)
    response = await client.post(f"/v1/sessions/{sid}/events/ticket")
    assert response.status == 200
    stream = await client.get(f"/v1/sessions/{sid}/events", params={"ticket": "anything"})
    assert stream.status == 200
    stream.close()


async def _session(client: Client) -> str:
    response = await client.post("/v1/sessions", json={}, headers=AUTH)
    assert response.status == 201
    sid: str = (await response.json())["id"]
    return sid
