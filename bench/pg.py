"""PostgreSQL benchmarks, in process: pg_durable_completions, pg_round_trips.

Run one with ``python -m bench.pg NAME [--quick]``; it prints one JSON result line.
The server is ``$BENCH_PG_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``, trust auth); every run creates a
database of its own and drops it afterwards, failed runs included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import struct
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.common import Result, progress
from bench.core import _in_tmp, _run_tasks, _runs, instant
from greenroom import Orchestrator
from greenroom.store.postgres import MIGRATIONS

ADMIN_DSN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


# --- a database of one's own ----------------------------------------------------------


@contextlib.contextmanager
def fresh_database(prefix: str = "greenroom_bench") -> Iterator[str]:
    """Create an empty database, yield its DSN, drop it (and its connections) after.

    Raises:
        RuntimeError: the server cannot be reached (named, with the variable to set).
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RuntimeError(
            f"PostgreSQL unavailable at {ADMIN_DSN} ({first}); set BENCH_PG_DSN"
        ) from exc
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield dsn_with(ADMIN_DSN, dbname=name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def dsn_with(dsn: str, **changes: Any) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info.update({k: str(v) for k, v in changes.items()})
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]


def server_cpu_s() -> float:
    """CPU seconds the local PostgreSQL server's processes have used (all of its
    databases; exited backends through the postmaster's children times); 0 when the
    server is not on this machine. The runner counts it among other processes' load."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            if text[text.index("(") + 1 : text.rindex(")")] == "postgres":
                fields = text[text.rindex(")") + 2 :].split()
                total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / tick


@contextlib.contextmanager
def server_cpu() -> Iterator[list[float]]:
    """Measures :func:`server_cpu_s` over the block: the list holds it afterwards."""
    out: list[float] = []
    before = server_cpu_s()
    try:
        yield out
    finally:
        out.append(server_cpu_s() - before)


def server_note(cpu_s: float, wall_s: float) -> str:
    return (
        f"the PostgreSQL server's processes used {cpu_s:.1f} CPU s in the {wall_s:.0f} s "
        f"run ({cpu_s / max(wall_s, 1e-9):.2f} cores; all its databases; counted in the "
        f"other processes' load)"
    )


def pg_config(dsn: str, lease_s: float = 10.0) -> dict[str, Any]:
    """Config tables for an embedded Orchestrator on the PostgreSQL store, one node."""
    return {
        "store": {"kind": "postgres", "dsn": dsn},
        "cluster": {
            "node_id": "bench",
            "advertise_url": "http://127.0.0.1:9",  # alone: nobody forwards to it
            "lease_s": lease_s,
        },
    }


# --- pg_durable_completions -----------------------------------------------------------


def _pg_tasks(n: int) -> tuple[float, int | None]:
    with fresh_database() as dsn:
        return _in_tmp(lambda tmp: _run_tasks(n, "postgres", tmp, overrides=pg_config(dsn)))


def pg_durable_completions(quick: bool) -> Result:
    n, reps = (1_000, 2) if quick else (5_000, 3)
    pg_runs: list[float] = []
    sqlite_runs: list[float] = []
    pg_commits: list[int] = []
    sqlite_commits: list[int] = []
    started = time.perf_counter()
    with server_cpu() as cpu:
        for rep in range(reps):  # interleaved, so a burst of other load hits both
            progress(f"run {rep + 1}/{reps}: PostgreSQL, then SQLite")
            elapsed, batches = _pg_tasks(n)
            pg_runs.append(n / elapsed)
            pg_commits.append(batches or 0)
            elapsed, batches = _in_tmp(lambda tmp: _run_tasks(n, "sqlite", tmp))
            sqlite_runs.append(n / elapsed)
            sqlite_commits.append(batches or 0)
    wall = time.perf_counter() - started
    best, sqlite_best = pg_runs.index(max(pg_runs)), sqlite_runs.index(max(sqlite_runs))
    ours, baseline = pg_runs[best], sqlite_runs[sqlite_best]
    ratio = ours / baseline
    return Result(
        "pg_durable_completions",
        round(ours),
        "completions/s",
        round(baseline),
        round(ratio, 3),
        "ratio >= 0.5",
        ratio >= 0.5,
        f"the durable_completions workload ({n} instant tasks over 100 sessions, all "
        f"started at once) on the PostgreSQL store, a fresh database per run, local "
        f"server (synchronous_commit {_setting('synchronous_commit')}): {3 * n} writes in "
        f"{pg_commits[best]} transactions; best of {reps} interleaved runs (PostgreSQL "
        f"{_runs(pg_runs)}/s; SQLite {_runs(sqlite_runs)}/s); baseline: greenroom's SQLite "
        f"store in the same run ({sqlite_commits[sqlite_best]} commits); "
        + server_note(cpu[0], wall),
    )


def _setting(name: str) -> str:
    with contextlib.suppress(psycopg.Error), psycopg.connect(ADMIN_DSN, connect_timeout=3) as c:
        row = c.execute("SELECT current_setting(%s)", (name,)).fetchone()
        return str(row[0]) if row else "?"
    return "?"


# --- the relay that counts round trips -------------------------------------------------

_SSL_REQUEST, _GSS_REQUEST, _CANCEL_REQUEST = 80877103, 80877104, 80877102
_KINDS = {"greenroom-writer": "write", "greenroom-read": "read"}
_MESSAGES = {"S": "Sync", "H": "Flush", "X": "Terminate", "C": "Close", "D": "Describe"}


@dataclass
class _Conn:
    """One client connection through the relay: its kind and its protocol state."""

    kind: str = "?"
    started: bool = False  # past the startup message: typed messages follow
    buf: bytearray = field(default_factory=bytearray)
    statements: dict[str, str] = field(default_factory=dict)  # prepared name -> text
    server_spoke: bool = True  # the next client byte begins a flight
    flight: list[str] | None = None  # statements of the flight under way (counted ones)
    messages: set[str] = field(default_factory=set)  # its message types besides


class Relay:
    """A TCP relay on 127.0.0.1 between PostgreSQL clients and the server, on a loop
    and thread of its own, that counts *flights*: a client→server burst that begins
    after the server last sent something on that connection. While ``counting``, each
    flight is counted by connection kind (``application_name``: greenroom-writer is
    "write", greenroom-read "read") and by the statements it carried (the client
    stream is parsed: simple queries, and the statement each Bind names).
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.counting = False
        self.flights: Counter[str] = Counter()
        self.sources: Counter[tuple[str, str]] = Counter()
        self.connections: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-pg-relay", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> Relay:
        self._thread.start()
        if not self._ready.wait(10) or not self.port:
            raise RuntimeError("the relay did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def reset(self) -> None:
        self.flights.clear()
        self.sources.clear()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0)
            )
            self.port = int(self._server.sockets[0].getsockname()[1])
        finally:
            self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

    async def _serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            c_writer.close()
            return
        conn = _Conn()
        self._writers.update((c_writer, s_writer))
        try:
            await asyncio.gather(
                self._pipe(c_reader, s_writer, conn, from_client=True),
                self._pipe(s_reader, c_writer, conn, from_client=False),
            )
        except asyncio.CancelledError:
            pass  # the relay is closing (returning: 3.11's streams callback dislikes cancelled)
        finally:
            self._end_flight(conn)
            for writer in (c_writer, s_writer):
                self._writers.discard(writer)
                writer.close()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: _Conn,
        *,
        from_client: bool,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if from_client:
                    counted = conn.server_spoke and self.counting
                    conn.server_spoke = False
                    if counted:
                        conn.flight = []
                    self._parse(conn, data)
                    if counted:  # after parsing: a connection's first flight names its kind
                        self.flights[conn.kind] += 1
                else:
                    conn.server_spoke = True
                    self._end_flight(conn)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.write_eof()

    def _end_flight(self, conn: _Conn) -> None:
        if conn.flight is not None:
            names = ", ".join(sorted(_MESSAGES.get(t, t) for t in conn.messages - {"H"}))
            label = " | ".join(conn.flight) or f"(no statement: {names})"
            self.sources[(conn.kind, label)] += 1
            conn.flight = None
            conn.messages.clear()

    def _parse(self, conn: _Conn, data: bytes) -> None:
        """Consume the client's bytes: whole messages out of ``conn.buf``, the rest kept."""
        buf = conn.buf
        buf += data
        while True:
            header = 4 if not conn.started else 5  # startup messages carry no type byte
            if len(buf) < header + (4 if not conn.started else 0):
                return
            (length,) = struct.unpack("!I", buf[header - 4 : header])
            end = length if not conn.started else 1 + length
            if len(buf) < end:
                return
            message = bytes(buf[:end])
            del buf[:end]
            if conn.started:
                self._message(conn, message[0:1], message[5:])
            else:
                self._startup(conn, message)

    def _startup(self, conn: _Conn, message: bytes) -> None:
        """SSLRequest, GSSENCRequest, CancelRequest or the StartupMessage."""
        (code,) = struct.unpack("!I", message[4:8])
        if code == _CANCEL_REQUEST:
            conn.kind = "cancel"
        elif code not in (_SSL_REQUEST, _GSS_REQUEST):
            parts = message[8:].split(b"\0")
            params = dict(zip(parts[0::2], parts[1::2], strict=False))
            app = params.get(b"application_name", b"").decode(errors="replace")
            conn.kind = _KINDS.get(app, app or "other")
            conn.started = True
            self.connections[conn.kind] += 1

    def _message(self, conn: _Conn, kind: bytes, body: bytes) -> None:
        """One typed client message: note the statement a Query or a Bind runs."""
        label = None
        if kind == b"Q":
            label = body.split(b"\0", 1)[0].decode(errors="replace")
        elif kind == b"P":
            name, text = body.split(b"\0", 2)[:2]
            conn.statements[name.decode()] = text.decode(errors="replace")
        elif kind == b"B":
            prepared = body.split(b"\0", 2)[1].decode()
            label = conn.statements.get(prepared, f"(prepared {prepared})")
        if conn.flight is not None:
            conn.messages.add(kind.decode(errors="replace"))
            if label is not None:
                conn.flight.append(_short(label))


def _short(sql: str) -> str:
    text = re.sub(r"\s+", " ", sql).strip() or "(empty query)"
    return text if len(text) <= 60 else text[:57] + "..."


# --- pg_round_trips -------------------------------------------------------------------


async def _round_trips(dsn: str, relay: Relay, n: int) -> tuple[float, int, Counter[str]]:
    """Warm one session, then n tasks one after another (start, wait, ack) while the
    relay counts; the window's seconds, the writer's transactions in it, and the
    flights of the cold session's first task (create, claim and load, start, ack)."""
    async with Orchestrator(
        {"logging": {"level": "warning"}, **pg_config(dsn_with(dsn, **_via(relay)))}
    ) as orch:
        orch.register_agent("instant", instant)
        await asyncio.sleep(0.2)  # let start-up's reads (the first orphan sweep) end
        relay.reset()
        relay.counting = True
        session = await orch.create_session(agent="instant")
        done = await (await session.start_task("cold")).wait(timeout=30)
        await session.ack(done.seq)
        relay.counting = False
        cold = Counter(relay.flights)
        for i in range(3):  # warm: claimed, live, its statements prepared where they will be
            done = await (await session.start_task(f"warm {i}")).wait(timeout=30)
            await session.ack(done.seq)
        await asyncio.sleep(0.2)  # let the last write's flight end before counting
        relay.reset()
        relay.counting = True
        batches = orch.runtime.store.batches  # type: ignore[attr-defined]
        started = time.perf_counter()
        for i in range(n):
            task = await session.start_task(f"t{i}")
            done = await task.wait(timeout=30)
            assert done.status.value == "completed", done
            await session.ack(done.seq)
        elapsed = time.perf_counter() - started
        relay.counting = False
        return elapsed, orch.runtime.store.batches - batches, cold  # type: ignore[attr-defined]


def _via(relay: Relay) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": relay.port, "sslmode": "disable", "gssencmode": "disable"}


def _bare_round_trips(dsn: str, relay: Relay, n: int, *, store_style: bool = False) -> float:
    """The floor: the same four writes per task (queued, running, completed, ack) from
    bare psycopg on the greenroom schema, each one transaction in one pipeline with
    explicit ``BEGIN``/``COMMIT``; or, with ``store_style``, wrapped as the store's
    writer wraps a batch (``with conn.pipeline(), conn.transaction()``). Flights per task.
    """
    with psycopg.connect(
        dsn_with(dsn, **_via(relay)), autocommit=True, application_name="greenroom-writer"
    ) as conn:
        sid = f"bare-{uuid.uuid4().hex[:8]}"
        conn.execute(
            "INSERT INTO sessions (id, agent, created_at, metadata) VALUES (%s, 'x', 0, '{}')",
            (sid,),
        )
        relay.reset()
        relay.counting = True
        seq = 0
        for i in range(n):
            tid = f"{sid}-{i}"
            for status in ("queued", "running", "completed", "ack"):
                with conn.pipeline(), conn.cursor() as cur:
                    tx = conn.transaction() if store_style else contextlib.nullcontext()
                    with tx:
                        if not store_style:
                            cur.execute("BEGIN")
                        if status == "ack":
                            cur.execute(
                                "UPDATE sessions SET acked_up_to = %s WHERE id = %s", (seq, sid)
                            )
                        else:
                            seq += 1
                            cur.execute(
                                "INSERT INTO tasks (id, session_id, kind, agent, prompt, "
                                "status, created_at) VALUES (%s, %s, 'background', 'x', 'p', "
                                "%s, 0) ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status",
                                (tid, sid, status),
                            )
                            cur.execute(
                                "INSERT INTO events (session_id, seq, type, ts, data) "
                                "VALUES (%s, %s, %s, 0, '{}')",
                                (sid, seq, f"task.{status}"),
                            )
                            cur.execute(
                                "UPDATE sessions SET last_seq = %s WHERE id = %s", (seq, sid)
                            )
                        if not store_style:
                            cur.execute("COMMIT")
        relay.counting = False
    return sum(relay.flights.values()) / n


def _migrate(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for script in MIGRATIONS:
            conn.execute(script)


def pg_round_trips(quick: bool) -> Result:
    n = 30 if quick else 100
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_DSN)
    host, port = str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432)
    with server_cpu() as cpu, fresh_database() as dsn, Relay(host, port) as relay:
        progress(f"{n} tasks one after another on a warm session, through the relay")
        elapsed, transactions, cold = asyncio.run(_round_trips(dsn, relay, n))
        flights, sources = Counter(relay.flights), Counter(relay.sources)
        progress("the bare psycopg baseline")
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("CREATE SCHEMA bare")
        bare_dsn = dsn_with(dsn, options="-c search_path=bare")
        _migrate(bare_dsn)
        bare = _bare_round_trips(bare_dsn, relay, n)
        store_style = _bare_round_trips(bare_dsn, relay, n, store_style=True)
    per_task = sum(flights.values()) / n
    by_kind = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(flights.items()))
    top = "; ".join(
        f"{count / n:.2f}/task {kind}: {label}" for (kind, label), count in sources.most_common(8)
    )
    return Result(
        "pg_round_trips",
        round(per_task, 2),
        "round trips/task",
        round(bare, 2),
        round(bare / per_task, 3),
        "<= 6 per task",
        per_task <= 6,
        f"{n} background tasks one after another on a warm session (start, Task.wait, "
        f"ack), embedded Orchestrator on the PostgreSQL store, {elapsed / n * 1000:.1f} ms "
        f"per task; flights counted at a TCP relay (a client burst after the server "
        f"spoke) on every connection, the node's heartbeat and orphan sweep included "
        f"(read): per task {by_kind or 'none'}; the writer committed {transactions} "
        f"transactions ({sum(flights.values()) / max(transactions, 1):.2f} flights each); "
        f"the cold session's first task (create, claim and load, start, wait, ack): "
        f"{sum(cold.values())} ({', '.join(f'{k} {v}' for k, v in sorted(cold.items()))}); "
        f"the warm ones by statement: "
        f"{top}; baseline: bare psycopg, the same four writes per task (queued, running, "
        f"completed, ack), each one transaction in one pipeline (explicit BEGIN/COMMIT), "
        f"through the same relay; the same bare writes wrapped as the store's writer wraps "
        f"a batch (`with conn.pipeline(), conn.transaction()`): {store_style:.2f} per "
        f"task; PostgreSQL server CPU over the run, all its databases: {cpu[0]:.1f} s",
    )


BENCHMARKS = {f.__name__: f for f in (pg_durable_completions, pg_round_trips)}

if __name__ == "__main__":
    result = BENCHMARKS[sys.argv[1]]("--quick" in sys.argv)
    print(json.dumps(result.to_json()))
