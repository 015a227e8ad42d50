"""The SQLite read pool is bounded and lets idle connections go."""

from __future__ import annotations

import threading
from pathlib import Path

from greenroom.models import SessionRecord
from greenroom.store.sqlite import SqliteStore


def test_concurrent_reads_never_open_more_than_the_pool_size(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "g.db", read_pool_size=2, read_idle_s=3600)
    store.open()
    try:
        store.commit("ses_1", session=SessionRecord("ses_1", "echo", 1.0, {}))
        peak = 0
        gate = threading.Barrier(12)
        lock = threading.Lock()

        def reader() -> None:
            nonlocal peak
            gate.wait(timeout=10)
            for _ in range(50):
                assert store.load_session("ses_1", recent_events=10) is not None
                with lock:
                    peak = max(peak, store.read_connections())

        threads = [threading.Thread(target=reader) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert 1 <= peak <= 2
        assert store.read_connections() <= 2
    finally:
        store.close()
    assert store.read_connections() == 0


def test_idle_read_connections_are_closed(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "g.db", read_pool_size=4, read_idle_s=0.0)
    store.open()
    try:
        store.count_sessions()
        assert store.read_connections() == 1
        assert store.trim_idle() == 1  # idle for longer than read_idle_s (0 here)
        assert store.read_connections() == 0
        assert store.count_sessions() == 0  # a new one is opened on demand
    finally:
        store.close()
