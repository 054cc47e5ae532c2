"""The OpenAPI schema validates with no warnings, and its docs pages need no CDN."""
from __future__ import annotations

import io

import yaml
from django.core.management import call_command


def test_schema_validates_without_warnings():
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = yaml.safe_load(out.getvalue())
    assert "/api/v1/tokens/" in schema["paths"]
    assert schema["components"]["securitySchemes"]["tokenAuth"] == {
        "type": "http", "scheme": "bearer", "description": schema["components"]["securitySchemes"]["tokenAuth"]["description"]}
    # every operation documents the error shape
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "429" in operation["responses"], (method, path)


def test_docs_pages_load_their_assets_from_this_server(client):
    for url in ("/api/docs/", "/api/redoc/"):
        html = client.get(url).content.decode()
        assert "drf_spectacular_sidecar" in html, url
        assert "cdn.jsdelivr.net" not in html and "unpkg.com" not in html, url


def test_paged_lists_document_the_404_of_a_page_past_the_end(api, publisher):
    """Found by schemathesis (scripts/api_fuzz.py): ``?page=0`` answers 404, so every paged
    list must list 404 among its responses."""
    out = io.StringIO()
    call_command("spectacular", stdout=out)
    schema = yaml.safe_load(out.getvalue())
    response = api(publisher).get("/api/v1/tokens/?page=0")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    paged = [(path, operation) for path, operations in schema["paths"].items()
             for method, operation in operations.items()
             if method == "get" and "page" in {p["name"] for p in operation.get("parameters", [])}]
    assert paged
    for path, operation in paged:
        assert "404" in operation["responses"], path


def test_writes_document_404_and_filtered_lists_document_400():
    """Also found by schemathesis: a write naming another organization's object answers 404
    (tenant wall), and a filter given a value it cannot read answers 400 with the field."""
    out = io.StringIO()
    call_command("spectacular", stdout=out)
    schema = yaml.safe_load(out.getvalue())
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method in ("post", "put", "patch"):
                assert {"400", "404"} <= set(operation["responses"]), (method, path)
            filters = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"} - {"page", "page_size"}
            if method == "get" and filters:
                assert "400" in operation["responses"], (method, path, filters)
    assert "404" in schema["paths"]["/api/v1/tokens/"]["post"]["responses"]
