"""The embedded SQLite backend: SQLiteStore (store.py), one module per store role."""

from wxgate.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
