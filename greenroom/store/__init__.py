"""Persistence: the memory store, the SQLite store (the default) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from greenroom.settings import Settings
from greenroom.store.memory import MemoryStore
from greenroom.typing import Store

__all__ = ["MemoryStore", "open_store"]


def open_store(settings: Settings) -> Store:
    """The store ``[store] kind`` names, opened.

    Raises:
        StoreError: the store cannot be opened.
        ConfigError: unknown kind.
    """
    if settings.store.kind == "memory":
        store: Store = MemoryStore()
    elif settings.store.kind == "sqlite":
        from greenroom.files import private_dir
        from greenroom.store.sqlite import SqliteStore

        private_dir(Path(settings.data_dir))
        store = SqliteStore(
            Path(settings.data_dir) / "greenroom.db",
            synchronous=settings.store.synchronous,
            read_pool_size=settings.store.read_pool_size,
            read_idle_s=settings.store.read_idle_s,
        )
    elif settings.store.kind == "postgres":
        from greenroom.errors import ConfigError

        if not settings.store.dsn:
            raise ConfigError(
                "store.dsn: kind 'postgres' needs a connection string "
                "(set GREENROOM_STORE__DSN=postgresql://user@host:5432/db)"
            )
        try:
            from greenroom.store.postgres import PostgresStore
        except ImportError as exc:
            raise ConfigError(
                f"store.kind 'postgres' needs psycopg: pip install 'greenroom[postgres]' ({exc})"
            ) from None
        store = PostgresStore(settings.store.dsn, pool_size=settings.store.pool_size)
    else:
        from greenroom.errors import ConfigError

        raise ConfigError(
            f"store.kind: must be 'memory', 'sqlite' or 'postgres', got {settings.store.kind!r}"
        )
    store.open()
    return store
