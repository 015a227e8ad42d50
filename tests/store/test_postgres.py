"""What only the PostgreSQL store does: leases, fencing, membership, in-doubt writes."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from greenroom.errors import LeaseLostError, OwnedElsewhereError, StoreError, StoreInDoubtError
from greenroom.models import Event, SessionRecord, TaskRecord, TaskStatus, Write
from greenroom.store.postgres import MIGRATIONS, PostgresStore
from tests.pg import fresh_database


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_database() as name:
        yield name


@pytest.fixture
def store(dsn: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(dsn, pool_size=2)
    opened.open()
    yield opened
    opened.close()


def write(store: PostgresStore, w: Write) -> BaseException | None:
    outcome: list[BaseException | None] = []
    done = threading.Event()

    def finished(error: BaseException | None) -> None:
        outcome.append(error)
        done.set()

    store.write(w, finished)
    assert done.wait(10)
    return outcome[0]


def event(seq: int) -> Event:
    return Event("task.queued", {"n": seq}, seq, float(seq))


def new_session(store: PostgresStore, sid: str = "ses_1") -> None:
    store.commit(sid, session=SessionRecord(sid, "echo", 1.0, {}))


def test_claims_raise_the_generation_and_fence_older_writers(store: PostgresStore) -> None:
    new_session(store)
    store.join("a", "http://a", 30)
    store.join("b", "http://b", 30)
    gen_a, snapshot = store.claim_and_load("ses_1", "a", recent_events=10)  # type: ignore[misc]
    assert gen_a == 1 and snapshot.last_seq == 0
    assert write(store, Write("ses_1", events=(event(1),), fence=gen_a)) is None
    # b cannot take it while a's lease is live: it is told where the session lives.
    with pytest.raises(OwnedElsewhereError) as owned:
        store.claim_and_load("ses_1", "b", recent_events=10)
    assert (owned.value.node_id, owned.value.url) == ("a", "http://a")
    # a's lease runs out (by the database's clock); b takes over with a higher generation.
    with psycopg.connect(store.dsn, autocommit=True) as conn:
        conn.execute("UPDATE nodes SET expires_at = now() - interval '1 second' WHERE id = 'a'")
    gen_b, snapshot = store.claim_and_load("ses_1", "b", recent_events=10)  # type: ignore[misc]
    assert gen_b == 2 and snapshot.last_seq == 1
    # a, paused past its lease, wakes up and writes: refused, and nothing of it lands.
    late = write(store, Write("ses_1", events=(event(2),), fence=gen_a))
    assert isinstance(late, LeaseLostError)
    assert store.events_after("ses_1", 0, 10) == [event(1)]
    assert write(store, Write("ses_1", events=(event(2),), fence=gen_b)) is None
    with psycopg.connect(store.dsn) as conn:
        gens = conn.execute("SELECT seq, gen FROM events ORDER BY seq").fetchall()
    assert gens == [(1, 1), (2, 2)]


def test_a_node_whose_own_lease_expired_claims_nothing(store: PostgresStore) -> None:
    new_session(store)
    store.join("a", "http://a", 30)
    with psycopg.connect(store.dsn, autocommit=True) as conn:
        conn.execute("UPDATE nodes SET expires_at = now() - interval '1 second'")
    assert store.renew("a", 30) is False
    with pytest.raises(StoreError, match=r"lease .* has expired"):
        store.claim_and_load("ses_1", "a", recent_events=10)
    store.join("a", "http://a", 30)
    assert store.renew("a", 30) is True
    assert store.claim_and_load("ses_1", "a", recent_events=10) is not None
    assert store.claim_and_load("nope", "a", recent_events=10) is None


def test_release_and_leave_let_any_node_claim_at_once(store: PostgresStore) -> None:
    for sid in ("ses_1", "ses_2"):
        new_session(store, sid)
    store.join("a", "http://a", 30)
    store.join("b", "http://b", 30)
    gen, _ = store.claim_and_load("ses_1", "a", recent_events=0)  # type: ignore[misc]
    store.claim_and_load("ses_2", "a", recent_events=0)
    assert [n["sessions"] for n in store.cluster_status()] == [2, 0]
    assert write(store, Write("ses_1", fence=gen, release=True)) is None
    assert store.claim_and_load("ses_1", "b", recent_events=0) is not None
    store.leave("a")
    status = {n["node_id"]: n for n in store.cluster_status()}
    assert status["a"]["alive"] is False and status["a"]["sessions"] == 0
    assert status["b"]["alive"] is True and status["b"]["sessions"] == 1
    assert store.claim_and_load("ses_2", "b", recent_events=0) is not None


def test_orphaned_sessions_are_those_with_unfinished_tasks_and_no_live_owner(
    store: PostgresStore,
) -> None:
    def task(tid: str, sid: str, status: TaskStatus) -> TaskRecord:
        return TaskRecord(tid, sid, "background", "echo", "p", status, 1.0)

    for sid in ("ses_dead", "ses_live", "ses_done", "ses_free"):
        new_session(store, sid)
    store.join("dead", "http://d", 30)
    store.join("live", "http://l", 30)
    store.claim_and_load("ses_dead", "dead", recent_events=0)
    store.claim_and_load("ses_live", "live", recent_events=0)
    store.claim_and_load("ses_done", "dead", recent_events=0)
    store.commit("ses_dead", tasks=[task("t1", "ses_dead", TaskStatus.RUNNING)])
    store.commit("ses_live", tasks=[task("t2", "ses_live", TaskStatus.QUEUED)])
    store.commit("ses_done", tasks=[task("t3", "ses_done", TaskStatus.COMPLETED)])
    store.commit("ses_free", tasks=[task("t4", "ses_free", TaskStatus.QUEUED)])
    with psycopg.connect(store.dsn, autocommit=True) as conn:
        conn.execute("UPDATE nodes SET expires_at = now() WHERE id = 'dead'")
    assert sorted(store.orphaned_sessions("other", 10)) == ["ses_dead", "ses_free"]
    assert sorted(store.orphaned_sessions("live", 10)) == ["ses_dead", "ses_free"]
    # After a restart a node's own sessions are orphans too (no actor holds them).
    assert sorted(store.orphaned_sessions("live", 10, own=True)) == [
        "ses_dead",
        "ses_free",
        "ses_live",
    ]
    assert len(store.orphaned_sessions("other", 1)) == 1


def test_a_write_whose_connection_breaks_is_in_doubt_and_the_writer_recovers(
    store: PostgresStore,
) -> None:
    new_session(store)
    assert write(store, Write("ses_1", events=(event(1),))) is None
    with psycopg.connect(store.dsn, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'greenroom-writer' AND datname = current_database()"
        ).fetchall()
    assert killed == [(True,)]
    # The writer finds out on its next write, whose outcome it cannot know.
    assert isinstance(write(store, Write("ses_1", events=(event(2),))), StoreInDoubtError)
    assert write(store, Write("ses_1", events=(event(2),))) is None  # it reconnected
    assert [e.seq for e in store.events_after("ses_1", 0, 10)] == [1, 2]


def test_nodes_starting_together_migrate_once_and_a_newer_schema_is_refused(dsn: str) -> None:
    stores = [PostgresStore(dsn, pool_size=1) for _ in range(3)]
    errors: list[BaseException] = []

    def open_one(s: PostgresStore) -> None:
        try:
            s.open()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for s in stores:
        s.close()
    assert errors == []
    with psycopg.connect(dsn, autocommit=True) as conn:
        versions = conn.execute("SELECT version FROM greenroom_schema ORDER BY 1").fetchall()
        assert versions == [(n,) for n in range(1, len(MIGRATIONS) + 1)]
        conn.execute("INSERT INTO greenroom_schema VALUES (%s)", (len(MIGRATIONS) + 1,))
    newer = PostgresStore(dsn)
    with pytest.raises(StoreError, match="newer than this greenroom"):
        newer.open()
    newer.close()


def test_an_unreachable_server_is_a_store_error_naming_it_without_password() -> None:
    unreachable = PostgresStore(
        "postgresql://ada:s3cret@127.0.0.1:1/nowhere", connect_timeout_s=1.0
    )
    with pytest.raises(StoreError) as failed:
        unreachable.open()
    assert "127.0.0.1:1/nowhere" in str(failed.value)
    assert "s3cret" not in str(failed.value)
    unreachable.close()
