"""The own PostgreSQL instance: ours (not the system's), and a crash ("stop -m
immediate") followed by a start keeps every committed row. The store probe reads the
cluster tables the failure test checks."""

from __future__ import annotations

import uuid

from tests.cluster.history import StoredEvent, StoredSession
from tests.cluster.postgres import Postgres
from tests.cluster.stores import PostgresProbe


async def test_own_postgres_keeps_committed_rows_through_a_crash_and_restart(
    postgres_server: Postgres,
) -> None:
    pg = postgres_server
    assert pg.port != 5432 and pg.proc is not None
    database = f"harness_{uuid.uuid4().hex[:8]}"
    assert pg.create_database(database) == f"postgresql://postgres@127.0.0.1:{pg.port}/{database}"
    pg.execute("CREATE TABLE t (n bigint PRIMARY KEY, doc jsonb)", database)
    pg.execute("""INSERT INTO t VALUES (1, '{"a": [1, 2]}'), (2, '{"b": null}')""", database)
    first_pid = pg.proc.pid
    ready_s = await pg.restart_async(down_s=0.0)  # SIGQUIT: no checkpoint, then recovery
    assert pg.proc is not None and pg.proc.pid != first_pid
    assert ready_s < 30
    rows = await pg.query("SELECT n, doc FROM t ORDER BY n", database)
    assert rows == [{"n": 1, "doc": {"a": [1, 2]}}, {"n": 2, "doc": {"b": None}}]
    assert "database system was interrupted" in pg.log.read_text()  # it crashed, recovered


# The columns the failure test reads, as the cluster interface describes them (the nodes
# create the real tables; these stand in for them so the probe's SQL is tested today).
INTERFACE_SCHEMA = """
CREATE TABLE sessions (id text PRIMARY KEY, agent text, created_at double precision,
    metadata jsonb, acked_up_to bigint, last_seq bigint, owner text NULL, lease_gen bigint);
CREATE TABLE events (session_id text, seq bigint, gen bigint, type text,
    ts double precision, data jsonb, PRIMARY KEY (session_id, seq));
CREATE TABLE tasks (id text PRIMARY KEY, session_id text, status text, seq bigint);
CREATE TABLE nodes (id text PRIMARY KEY, url text, started_at timestamptz,
    expires_at timestamptz);
"""


async def test_the_store_probe_reads_owners_events_with_generations_and_tasks(
    postgres_server: Postgres,
) -> None:
    pg = postgres_server
    database = f"probe_{uuid.uuid4().hex[:8]}"
    pg.create_database(database)
    pg.execute(INTERFACE_SCHEMA, database)
    pg.execute(
        """
        INSERT INTO sessions VALUES ('s1', 'echo', 0, '{}', 0, 2, 'n2', 2),
                                    ('s2', 'echo', 0, '{}', 0, 0, NULL, 0);
        INSERT INTO events VALUES
            ('s1', 2, 2, 'task.completed', 2.5, '{"task_id": "t1", "status": "completed"}'),
            ('s1', 1, 1, 'task.queued', 1.5, '{"task": {"id": "t1"}}');
        INSERT INTO tasks VALUES ('t1', 's1', 'completed', 2);
        """,
        database,
    )
    probe = PostgresProbe(pg, database)
    assert await probe.owners() == {"s1": "n2", "s2": None}
    stored = await probe.sessions(["s1", "s2", "s3"])
    assert stored["s1"] == StoredSession(
        "s1",
        owner="n2",
        events=[
            StoredEvent(1, 1, "task.queued", {"task": {"id": "t1"}}),
            StoredEvent(2, 2, "task.completed", {"task_id": "t1", "status": "completed"}),
        ],
        tasks={"t1": "completed"},
        last_seq=2,
    )
    assert stored["s2"] == StoredSession("s2", last_seq=0)
    assert stored["s3"] == StoredSession("s3")  # unknown to the store: empty
    assert [e.task_id for e in stored["s1"].events] == ["t1", "t1"]
