"""Several nodes over PostgreSQL: membership, leases, and the orphan sweep.

Each node has an id and an advertised URL and keeps its row in the ``nodes`` table
alive (a heartbeat every ``lease_s / 3``). The row's expiry is computed by the
database's clock; the node also keeps a conservative local deadline — the time it
*sent* its last successful renewal plus ``lease_s`` — and once that passes without a
renewal it stops serving: every live session is passivated (its late writes would be
refused anyway, by the fencing generation) and the node joins again.

A session is live on at most one node: activating it claims it
(``PostgresStore.claim_and_load`` raises the session's ``lease_gen``), and every write
carries that generation. Sessions whose owner died are taken over on their next
request; those with queued or running tasks are found by the orphan sweep and
activated here, which recovers their tasks (queued again, run again while attempts
are left, else ``interrupted``) exactly as a single node does after a restart.

There is no consensus protocol here: PostgreSQL is the arbiter of every claim.
"""

from __future__ import annotations

import asyncio
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from greenroom.actors import messages as m
from greenroom.errors import ConfigError
from greenroom.logs import get_logger

if TYPE_CHECKING:
    from greenroom.actors.runtime import Runtime
    from greenroom.settings import Settings
    from greenroom.store.postgres import PostgresStore

log = get_logger()
_SWEEP_LIMIT = 200


def node_identity(settings: Settings) -> tuple[str, str]:
    """This node's id and advertised URL, from ``[cluster]`` or from ``[server]``.

    Raises:
        ConfigError: the port is chosen at bind time and no URL is configured.
    """
    server, cluster = settings.server, settings.cluster
    if server.port == 0 and not (cluster.node_id and cluster.advertise_url):
        raise ConfigError(
            "cluster: with server.port = 0 the other nodes cannot know this node's address; "
            "set server.port, or cluster.node_id and cluster.advertise_url"
        )
    node_id = cluster.node_id or f"{socket.gethostname()}-{server.port}"
    url = cluster.advertise_url or f"http://{server.host}:{server.port}"
    return node_id, url.rstrip("/")


class Node:
    """This process's membership in the cluster. Lives on the runtime's loop.

    Args:
        runtime: the runtime whose sessions this node serves.
        store: the shared PostgreSQL store.
        node_id: unique in the cluster.
        url: where other nodes forward requests for this node's sessions.
        lease_s: how long the node's row stays valid without a renewal.
    """

    def __init__(
        self, runtime: Runtime, store: PostgresStore, node_id: str, url: str, lease_s: float
    ) -> None:
        if lease_s <= 0:
            raise ValueError(f"cluster.lease_s: must be > 0, got {lease_s}")
        self.runtime = runtime
        self.store = store
        self.node_id = node_id
        self.url = url
        self.lease_s = lease_s
        self.valid_until = 0.0  # monotonic; no claim is made after this
        self.forwarded = 0  # requests this node sent on to another
        self.leases_lost = 0
        self.activated_orphans = 0
        self._timers: list[asyncio.TimerHandle] = []
        # Renewals run on a thread of their own (and the store gives them a connection of
        # their own): they never queue behind the reads of a busy node.
        self._lease_thread = ThreadPoolExecutor(1, thread_name_prefix="greenroom-lease")
        self._renewing = False
        self._stopped = False
        self._sweeping = True
        self._first_sweep = True
        self.log = log.bind(actor="node", node_id=node_id)

    @property
    def lease_ok(self) -> bool:
        """Whether this node may claim and serve sessions now."""
        return time.monotonic() < self.valid_until

    def join(self) -> None:
        """Insert or refresh this node's row (blocking; called off the loop at start)."""
        sent = time.monotonic()
        self.store.join(self.node_id, self.url, self.lease_s)
        self.valid_until = sent + self.lease_s

    def start(self) -> None:
        """Begin the heartbeat and the orphan sweep (on the loop)."""
        self.log.info("node_joined", url=self.url, lease_s=self.lease_s)
        self._every(self.lease_s / 3, self._heartbeat)
        self._every(max(self.lease_s / 2, 0.2), self._sweep, first_s=0.0)

    def stop_sweeping(self) -> None:
        """Shutdown began: take no more sessions over (the heartbeat goes on, so that the
        sessions still draining here keep their lease until they are passivated)."""
        self._sweeping = False

    def stop(self) -> None:
        """Stop the heartbeat and the sweep (the caller leaves the cluster afterwards)."""
        self._stopped = True
        for timer in self._timers:
            timer.cancel()
        self._lease_thread.shutdown(wait=False)

    def leave(self) -> None:
        """Give up every session and end this node's lease now (blocking)."""
        self.store.leave(self.node_id)
        self.log.info("node_left")

    def stats(self) -> dict[str, Any]:
        """For ``/v1/stats``: who this node is and what it does."""
        return {
            "node_id": self.node_id,
            "url": self.url,
            "lease_ok": self.lease_ok,
            "owned": len(self.runtime.directory.live),
            "forwarded": self.forwarded,
            "leases_lost": self.leases_lost,
            "orphans_activated": self.activated_orphans,
        }

    # --- timers ---------------------------------------------------------------------

    def _every(self, period_s: float, fn: Any, first_s: float | None = None) -> None:
        loop = self.runtime.loop

        def tick() -> None:
            if self._stopped:
                return
            try:
                fn()
            except Exception as exc:  # a bug must not stop the heartbeat for good
                self.log.error("node_timer_failed", error=str(exc), exc_info=exc)
            finally:
                self._timers[index] = loop.call_later(period_s, tick)

        index = len(self._timers)
        self._timers.append(loop.call_later(period_s if first_s is None else first_s, tick))

    def _heartbeat(self) -> None:
        if self.valid_until and time.monotonic() >= self.valid_until:
            self.lapsed("no renewal within the lease")
        if self._renewing:  # the last renewal is still waiting on the database
            return
        self._renewing = True
        sent = time.monotonic()

        def renew() -> bool:
            if self.store.renew(self.node_id, self.lease_s):
                return True
            self.store.join(self.node_id, self.url, self.lease_s)  # expired: join again
            return False

        def done(outcome: Any) -> None:
            self._renewing = False
            if isinstance(outcome, BaseException):
                self.log.warning("lease_renew_failed", error=str(outcome))
                return
            if outcome is False and self.valid_until:
                self.lapsed("the database had already expired this node's lease")
            self.valid_until = sent + self.lease_s

        def finished(future: asyncio.Future[bool]) -> None:
            if future.cancelled():  # the loop is closing
                return
            error = future.exception()
            done(error if error is not None else future.result())

        loop = self.runtime.loop
        loop.run_in_executor(self._lease_thread, renew).add_done_callback(finished)

    def lapsed(self, why: str) -> None:
        """The lease lapsed: stop serving every session now (on the loop). Another node
        may own them already; this one claims each anew once it has renewed."""
        self.valid_until = 0.0
        self.leases_lost += 1
        directory = self.runtime.directory
        self.log.warning("lease_lost", why=why, live_sessions=len(directory.live))
        directory.passivate_all_now()

    def _sweep(self) -> None:
        if not self._sweeping or not self.lease_ok or not self.runtime.taking_work:
            return

        def found(outcome: Any) -> None:
            if isinstance(outcome, BaseException):
                self.log.warning("orphan_sweep_failed", error=str(outcome))
                return
            directory = self.runtime.directory
            for sid in outcome:
                if sid not in directory.live and self.runtime.taking_work:
                    self.activated_orphans += 1
                    self.log.info("orphan_activating", session_id=sid)
                    directory.route(sid, m.Activate())

        # This node's own sessions are orphans only after a restart (no actor of this
        # process holds them yet): the first sweep takes them; later ones look only at
        # the other nodes' sessions, so busy sessions here never crowd those out.
        own, self._first_sweep = self._first_sweep, False
        store, node_id = self.store, self.node_id
        self.runtime.read(lambda: store.orphaned_sessions(node_id, _SWEEP_LIMIT, own=own), found)
