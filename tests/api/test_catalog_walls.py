"""The tenant wall over the catalog resources: every URL of another organization's private
integration (and of what hangs off it) answers 404 on every method, exactly like a missing
one, and changes nothing; anonymous callers get 401 for everything but the public catalog."""
from __future__ import annotations

import pytest

from marketplace.choices import Visibility
from marketplace.models import ApiSchema, Attachment, Integration

from .. import factories


@pytest.fixture
def private(acme):
    integration = factories.make_integration(acme, name="Acme ERP", slug="acme-erp", visibility=Visibility.PRIVATE)
    factories.make_published(integration)
    return integration


def private_urls(private):
    attachment = factories.make_attachment(private)
    schema = factories.make_api_schema(private)
    base = f"/api/v1/integrations/{private.slug}/"
    return attachment, schema, [
        ("get", base), ("patch", base), ("delete", base),
        ("post", f"{base}fork/"),
        ("put", f"{base}icon/"), ("delete", f"{base}icon/"),
        ("get", f"{base}attachments/"), ("post", f"{base}attachments/"),
        ("get", f"{base}attachments/{attachment.pk}/"), ("delete", f"{base}attachments/{attachment.pk}/"),
        ("get", f"/api/v1/api-schemas/{schema.pk}/"), ("delete", f"/api/v1/api-schemas/{schema.pk}/"),
    ]


def body_for(url: str) -> tuple[dict, str]:
    if url.endswith("icon/"):
        return {"file": factories.png_upload()}, "multipart"
    if url.endswith("attachments/"):
        return {"file": factories.upload("a.pdf", factories.pdf_bytes()), "title": "t"}, "multipart"
    return {"name": "Renamed", "description": "x", "organization": "org"}, "json"


def test_another_organizations_private_integration_is_404_on_every_url_and_method(api, outsider, private):
    attachment, schema, urls = private_urls(private)
    client = api(outsider)
    for method, url in urls:
        data, fmt = body_for(url)
        response = getattr(client, method)(url, data, format=fmt)
        assert response.status_code == 404, (method, url, response.status_code)
        assert response.json()["error"]["code"] == "not_found", (method, url)
    response = client.post("/api/v1/api-schemas/", {"integration": private.slug, "source": "{}",
                                                    "name": "x.json"}, format="multipart")
    assert response.status_code == 404
    private.refresh_from_db()
    assert private.name == "Acme ERP" and not private.icon
    assert Integration.objects.count() == 1
    assert list(Attachment.objects.all()) == [attachment] and list(ApiSchema.objects.all()) == [schema]
    assert client.get("/api/v1/integrations/", {"search": "erp"}).json()["count"] == 0


def test_anonymous_callers_read_only_the_public_catalog(anon, private, acme):
    attachment, schema, urls = private_urls(private)
    for method, url in urls:
        data, fmt = body_for(url)
        response = getattr(anon, method)(url, data, format=fmt)
        # Catalog reads of a private integration are 404 (no telling it exists); writes and
        # API documents, which are no part of the public catalog, 401.
        expected = 404 if method == "get" and not url.startswith("/api/v1/api-schemas/") else 401
        assert response.status_code == expected, (method, url, response.status_code)
    assert anon.get("/api/v1/api-schemas/").status_code == 401
    assert anon.get("/api/v1/categories/").status_code == 200
    assert anon.get("/api/v1/integrations/").json()["count"] == 0
    public = factories.make_integration(acme, name="Public one", slug="public-one")
    assert anon.get("/api/v1/integrations/public-one/").status_code == 200
    assert anon.patch("/api/v1/integrations/public-one/", {"name": "x"}, format="json").status_code == 401
    assert anon.delete("/api/v1/integrations/public-one/").status_code == 401
    assert anon.post("/api/v1/integrations/public-one/fork/", {"name": "x"}, format="json").status_code == 401
    assert Integration.objects.filter(pk=public.pk, name="Public one").exists()
