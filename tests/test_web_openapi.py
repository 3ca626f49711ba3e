"""The OpenAPI document at /api/openapi.json matches the app's routes (paths and methods), both ways."""

from __future__ import annotations

import re

DOCUMENTED_PREFIXES = ("/api/", "/health", "/metrics")


def app_routes(app) -> set[tuple[str, str]]:
    out = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(DOCUMENTED_PREFIXES):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        out |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return out


def spec_routes(spec) -> set[tuple[str, str]]:
    return {(path, method) for path, item in spec["paths"].items() for method in item
            if method in ("get", "post", "put", "patch", "delete")}


def test_the_spec_documents_every_route_and_nothing_else(app, client):
    spec = client.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert app_routes(app) == spec_routes(spec)


def test_path_parameters_match_the_placeholders(client):
    spec = client.get("/api/openapi.json").get_json()
    for path, item in spec["paths"].items():
        names = set(re.findall(r"{([^}]+)}", path))
        for method, op in item.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path)
            assert op.get("responses"), (method, path)


def test_every_reference_resolves(client):
    spec = client.get("/api/openapi.json").get_json()
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', __import__("json").dumps(spec))
    assert refs and set(refs) <= set(spec["components"]["schemas"])
