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
