"""/openapi.json is a valid OpenAPI 3.1 document listing every route."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate

from support.api import ApiRig
from wxgate.metrics import UNROUTED


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_openapi_document(rig: ApiRig) -> None:
    resp = await rig.client.get("/openapi.json")  # no key needed
    assert resp.status == 200 and resp.content_type == "application/json"
    doc = await resp.json()
    validate(doc)  # raises on an invalid 3.1 document
    assert doc["openapi"] == "3.1.0"

    app = rig.client.app
    assert app is not None
    for route in app.router.routes():
        if route.name == UNROUTED:  # the catch-all that answers 404/405 is not an operation
            continue
        path = route.resource.canonical if route.resource is not None else ""
        assert route.method.lower() in doc["paths"][path], (route.method, path)

    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref

    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    send = doc["paths"]["/v1/messages"]["post"]
    assert send["security"] == [{"bearer": []}] and send["x-wxgate-scope"] == "send"
    assert send["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/MessageIn"
    )
    assert set(send["responses"]) >= {"202", "400", "401", "413", "429", "503"}
    assert doc["paths"]["/wechat/callback/{app}"]["post"]["security"] == []
    assert "touser" in schemas["MessageIn"]["required"]
