"""The own PostgreSQL instance: ours (not the system's), and a crash ("stop -m
immediate") followed by a start keeps every committed row."""

from __future__ import annotations

import uuid

from tests.cluster.postgres import Postgres


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
    assert "database system was interrupted" in pg.tail(50)  # it did crash and recover
