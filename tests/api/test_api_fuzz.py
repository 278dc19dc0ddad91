"""Random JSON-ish bodies at POST /v1/messages and /v1/batches: never a 5xx, and a 4xx stores
nothing."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.api import KEY, ThreadServer, make_settings

FIELDS = [
    "touser", "template_id", "data", "app", "kind", "url", "miniprogram", "page",
    "miniprogram_state", "lang", "send_at", "expire_at", "idempotency_key", "callback_url",
    "priority",
]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["shop", "template", "subscribe", "#fff", "https://x", "o_user", ""])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Bodies near the real shape, where most validation bugs hide, and arbitrary JSON.
near_valid = st.fixed_dictionaries(
    {"touser": st.text(max_size=140) | json_values, "template_id": st.just("tpl")},
    optional={
        name: json_values
        | st.dictionaries(
            st.text(max_size=6),
            json_values
            | st.fixed_dictionaries({"value": json_values}, optional={"color": json_values}),
            max_size=3,
        )
        for name in FIELDS
        if name not in ("touser", "template_id")
    },
)
bodies = (
    near_valid.map(msgspec.json.encode)
    | json_values.map(msgspec.json.encode)
    | st.binary(max_size=64)
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    db: Path = tmp_path_factory.mktemp("fuzz") / "wx.db"
    srv = ThreadServer(db, make_settings(max_body_bytes=4096)).start()
    yield srv
    srv.stop()


def _post(srv: ThreadServer, path: str, body: bytes) -> tuple[int, bytes]:
    host, port = srv.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _stored(srv: ThreadServer) -> Any:
    assert srv.store is not None
    store = srv.store
    return srv.run(store.stats).by_status


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies, path=st.sampled_from(["/v1/messages", "/v1/batches"]))
def test_random_bodies_never_5xx(server: ThreadServer, body: bytes, path: str) -> None:
    before = _stored(server)
    status, answer = _post(server, path, body)
    assert status < 500, (status, answer)
    if status >= 400:
        err = msgspec.json.decode(answer)
        assert err["error"] and err["message"]
        assert _stored(server) == before
    else:
        assert status == 202
