"""Store test fixtures shared by the backend suites (the contract itself is in contract.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    """A fresh SQLite file path (a real file: in-memory databases are refused)."""
    return str(tmp_path / "wxgate.db")
