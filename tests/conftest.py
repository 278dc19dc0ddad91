"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.redis_server import session_redis_url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis for the session: a spare DB of the local one, else a server of our own."""
    with session_redis_url() as url:
        yield url
