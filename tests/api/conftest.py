"""API tests run the real app against the real SQLiteStore on a tmp file (support/api.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.api import ApiRig, running_gateway


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[ApiRig]:
    async with running_gateway(tmp_path / "wx.db") as g:
        yield g
