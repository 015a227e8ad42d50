"""Persistence: the memory store and the SQLite store (the default)."""

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
    else:
        from greenroom.errors import ConfigError

        raise ConfigError(f"store.kind: must be 'memory' or 'sqlite', got {settings.store.kind!r}")
    store.open()
    return store
