"""Several nodes over one PostgreSQL database: ownership, forwarding, failover."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import requests

from tests.nodes.conftest import ROOT, Cluster

NODE = "X-Greenroom-Node"


def wait_for(predicate: object, timeout_s: float, what: str) -> object:
    """Poll ``predicate`` until it returns something truthy (bounded by timeout_s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = predicate()  # type: ignore[operator]
        except requests.RequestException:
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_a_session_lives_on_one_node_and_any_node_answers_for_it(cluster: Cluster) -> None:
    a, b = cluster.nodes
    created = requests.post(f"{a.url}/v1/sessions", json={}, timeout=5)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    # Created owned by nobody: the first request claims it wherever it lands.
    first = requests.get(f"{b.url}/v1/sessions/{sid}", timeout=5)
    assert first.status_code == 200 and first.headers[NODE] == "b"
    via_a = requests.get(f"{a.url}/v1/sessions/{sid}", timeout=5)
    assert via_a.status_code == 200 and via_a.headers[NODE] == "b"  # forwarded to its owner
    started = requests.post(
        f"{a.url}/v1/sessions/{sid}/tasks", json={"prompt": "hi", "agent": "slow"}, timeout=5
    )
    assert started.status_code == 202, started.text
    tid = started.json()["id"]
    # A long-poll and a stream through the node that does not own the session.
    done = requests.get(f"{a.url}/v1/sessions/{sid}/tasks/{tid}?wait=20", timeout=30).json()
    assert done["status"] == "completed" and done["content"]
    with requests.get(
        f"{a.url}/v1/sessions/{sid}/events?after=0", stream=True, timeout=10
    ) as stream:
        assert stream.headers[NODE] == "b"
        seen = []
        for line in stream.iter_lines(decode_unicode=True):  # ends on the 3rd id (or timeout)
            if line.startswith("id:"):
                seen.append(line)
            if len(seen) == 3:
                break
    assert seen == ["id: 1", "id: 2", "id: 3"]
    # a's log says where each request went, under the request id b logged too.
    log = (Path(a.env["GREENROOM_DATA_DIR"]) / "greenroom.log").read_text().splitlines()
    forwards = [json.loads(x) for x in log if '"forwarded_to"' in x]
    assert forwards and {f["forwarded_to"] for f in forwards} == {b.url}
    scraped = requests.get(f"{a.url}/metrics", timeout=5).text  # each node its own figures
    assert "greenroom_node_lease_ok 1.0" in scraped
    forwarded = re.search(r"^greenroom_forwarded_requests_total (\S+)$", scraped, re.MULTILINE)
    assert forwarded and float(forwarded.group(1)) >= 4
    stats = requests.get(f"{a.url}/v1/stats", timeout=5).json()["cluster"]
    assert stats["node_id"] == "a" and stats["forwarded"] >= 4 and stats["owned"] == 0
    status = subprocess.run(
        [sys.executable, "-m", "greenroom.cli", "cluster", "status", "--json"],
        cwd=ROOT,
        env=a.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    nodes = {n["node_id"]: n for n in json.loads(status.stdout)["nodes"]}
    assert nodes["a"]["alive"] and nodes["b"]["alive"] and nodes["b"]["sessions"] == 1


def test_a_killed_nodes_sessions_and_tasks_move_to_the_survivor(cluster: Cluster) -> None:
    a, b = cluster.nodes
    sid = requests.post(f"{b.url}/v1/sessions", json={}, timeout=5).json()["id"]
    tasks = []
    for attempts in (1, 2):
        r = requests.post(
            f"{b.url}/v1/sessions/{sid}/tasks",
            json={"prompt": f"job {attempts}", "agent": "slow", "max_attempts": attempts},
            timeout=5,
        )
        assert r.status_code == 202 and r.headers[NODE] == "b", r.text
        tasks.append(r.json()["id"])
    wait_for(
        lambda: (
            requests.get(f"{b.url}/v1/sessions/{sid}/tasks/{tasks[0]}", timeout=2).json()["status"]
            == "running"
        ),
        10,
        "the first task to run",
    )
    b.kill()
    killed = time.monotonic()
    # Within the lease (2 s) plus a few seconds, a answers for the session itself.
    info = wait_for(
        lambda: (r := requests.get(f"{a.url}/v1/sessions/{sid}", timeout=2)).ok and r,
        2 + 5,
        "the survivor to take the session over",
    )
    assert info.headers[NODE] == "a"  # type: ignore[attr-defined]
    print(f"failover: {time.monotonic() - killed:.2f} s")
    results = [
        requests.get(f"{a.url}/v1/sessions/{sid}/tasks/{t}?wait=20", timeout=30).json()
        for t in tasks
    ]
    # Running with one attempt: interrupted. With two (running or queued): done again.
    assert results[0]["status"] == "interrupted"
    assert results[1]["status"] == "completed"
    page = requests.get(f"{a.url}/v1/sessions/{sid}/results?after=0", timeout=5).json()
    assert sorted(r["task_id"] for r in page["results"]) == sorted(tasks)


def test_a_paused_node_loses_its_lease_and_its_late_writes_are_refused(cluster: Cluster) -> None:
    a, b = cluster.nodes
    sid = requests.post(f"{a.url}/v1/sessions", json={}, timeout=5).json()["id"]
    assert requests.get(f"{a.url}/v1/sessions/{sid}", timeout=5).headers[NODE] == "a"
    r = requests.post(
        f"{a.url}/v1/sessions/{sid}/tasks", json={"prompt": "x", "agent": "slow"}, timeout=5
    )
    tid = r.json()["id"]
    wait_for(
        lambda: (
            requests.get(f"{a.url}/v1/sessions/{sid}/tasks/{tid}", timeout=2).json()["status"]
            == "running"
        ),
        10,
        "the task to run on a",
    )
    a.signal(signal.SIGSTOP)
    try:
        # a still holds the lease but does not answer: b does not hang on it, it says so.
        paused = requests.get(f"{b.url}/v1/sessions/{sid}/tasks/{tid}", timeout=30)
        assert paused.status_code == 503 and paused.headers["Retry-After"] == "1"
        assert paused.json()["error"]["code"] == "owner_unreachable"
        # b takes the session once a's lease ran out; the task a was running is recorded
        # interrupted by b.
        task = wait_for(
            lambda: (
                (r := requests.get(f"{b.url}/v1/sessions/{sid}/tasks/{tid}", timeout=2)).ok
                and r.json()["status"] != "running"
                and r.json()
            ),
            15,
            "b to recover the task",
        )
    finally:
        a.signal(signal.SIGCONT)
    assert task["status"] == "interrupted"  # type: ignore[index]
    # a wakes up; its agent finishes and it tries to record "completed": refused.
    a_stats = wait_for(
        lambda: requests.get(f"{a.url}/v1/stats", timeout=2).json()["cluster"]["leases_lost"],
        10,
        "a to notice it lost its lease",
    )
    assert a_stats == 1
    # a's agent ends; a finds the session is b's now and does not record its completion.
    log = Path(a.env["GREENROOM_DATA_DIR"]) / "greenroom.log"

    def dropped() -> bool:
        return any(
            '"message_for_session_owned_elsewhere"' in line and '"TaskCompleted"' in line
            for line in log.read_text().splitlines()
        )

    wait_for(dropped, 15, "a to drop its late completion")
    final = requests.get(f"{b.url}/v1/sessions/{sid}/results?after=0", timeout=5).json()
    assert [(x["task_id"], x["status"]) for x in final["results"]] == [(tid, "interrupted")]
    # And a serves the session again correctly, forwarding to b (once it has joined
    # again: until then it answers 503 with Retry-After, as a client retries).
    again = wait_for(
        lambda: (r := requests.get(f"{a.url}/v1/sessions/{sid}/tasks/{tid}", timeout=2)).ok and r,
        10,
        "a to serve again",
    )
    assert again.json()["status"] == "interrupted"  # type: ignore[attr-defined]
    assert again.headers[NODE] == "b"  # type: ignore[attr-defined]


@pytest.mark.parametrize("cluster", ["n0des-t0ken"], indirect=True)
def test_a_stream_ticket_from_one_node_opens_the_stream_on_the_owner(cluster: Cluster) -> None:
    a, b = cluster.nodes
    auth = {"Authorization": "Bearer n0des-t0ken"}
    sid = requests.post(f"{a.url}/v1/sessions", json={}, headers=auth, timeout=5).json()["id"]
    assert requests.get(f"{b.url}/v1/sessions/{sid}", headers=auth, timeout=5).ok  # b owns it
    ticket = requests.post(f"{a.url}/v1/sessions/{sid}/events/ticket", headers=auth, timeout=5)
    assert ticket.ok and ticket.headers[NODE] == "b", ticket.text
    url = f"{a.url}/v1/sessions/{sid}/events?after=0&ticket={ticket.json()['ticket']}"
    with requests.get(url, stream=True, timeout=10) as stream:  # no token: the ticket only
        assert stream.status_code == 200 and stream.headers[NODE] == "b"
    forged = requests.get(f"{a.url}/v1/sessions/{sid}/events?ticket=x.y", timeout=5)
    assert forged.status_code == 401


def test_a_node_that_stops_cleanly_hands_its_sessions_back(cluster: Cluster) -> None:
    a, b = cluster.nodes
    sid = requests.post(f"{a.url}/v1/sessions", json={}, timeout=5).json()["id"]
    assert requests.get(f"{a.url}/v1/sessions/{sid}", timeout=5).headers[NODE] == "a"
    assert a.stop() == 0  # SIGTERM: sessions passivated, lease ended, exit 0
    with psycopg.connect(cluster.dsn) as conn:
        row = conn.execute(
            "SELECT s.owner, n.expires_at <= now() FROM sessions s, nodes n "
            "WHERE s.id = %s AND n.id = 'a'",
            (sid,),
        ).fetchone()
    assert row == (None, True)  # nobody owns it; a's lease is over
    served = requests.get(f"{b.url}/v1/sessions/{sid}", timeout=5)
    assert served.ok and served.headers[NODE] == "b"  # claimed at once, no lease to wait out
