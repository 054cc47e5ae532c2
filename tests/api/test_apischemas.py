"""``/api/v1/api-schemas/``: OpenAPI documents uploaded for an integration through
``services.apischemas``, listed with their indexed endpoints and models."""
from __future__ import annotations

import json

import pytest

from marketplace.choices import Visibility
from marketplace.models import ApiEndpoint, ApiSchema
from marketplace.services.apischemas import reindex

from .. import factories

DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "Printer API", "version": "2.1"},
    "paths": {
        "/jobs": {"get": {"operationId": "listJobs", "summary": "Jobs", "responses": {"200": {"description": "ok"}}},
                  "post": {"operationId": "addJob", "responses": {"201": {"description": "ok"}}}},
        "/jobs/{id}": {"get": {"operationId": "getJob", "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {"200": {"description": "ok"}}}},
    },
    "components": {"schemas": {"Job": {"type": "object", "required": ["id"], "properties": {
        "id": {"type": "integer"}, "label": {"type": "string"}}}}},
}


@pytest.fixture
def public(acme):
    return factories.make_integration(acme, name="Label printer", slug="label-printer")


@pytest.fixture
def private(acme):
    return factories.make_integration(acme, name="Acme ERP", slug="acme-erp", visibility=Visibility.PRIVATE)


def document_file(name="openapi.json", document=DOCUMENT):
    return factories.upload(name, json.dumps(document).encode(), "application/json")


def test_a_publisher_uploads_a_document_and_gets_its_index(api, publisher, public):
    response = api(publisher).post("/api/v1/api-schemas/", {"integration": "label-printer", "file": document_file()},
                                   format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["integration"], body["name"], body["title"], body["api_version"]) == (
        "label-printer", "openapi.json", "Printer API", "2.1")
    assert [(e["method"], e["path"], e["operation_id"]) for e in body["endpoints"]] == [
        ("GET", "/jobs", "listJobs"), ("POST", "/jobs", "addJob"), ("GET", "/jobs/{id}", "getJob")]
    assert body["endpoints"][2]["parameters"][0]["name"] == "id"
    [model] = body["models"]
    assert model["name"] == "Job"
    assert {f["name"]: f["required"] for f in model["fields"]} == {"id": True, "label": False}
    assert ApiSchema.objects.get(pk=body["id"]).integration == public


def test_a_document_sent_as_text_under_a_name_replaces_the_one_of_that_name(api, publisher, public):
    client = api(publisher)
    first = client.post("/api/v1/api-schemas/", {"integration": "label-printer", "file": document_file()},
                        format="multipart").json()
    smaller = {**DOCUMENT, "paths": {"/ping": {"get": {"responses": {"200": {"description": "ok"}}}}}}
    response = client.post("/api/v1/api-schemas/", {"integration": "label-printer", "name": "openapi.json",
                                                    "source": json.dumps(smaller)}, format="multipart")
    assert response.status_code == 201 and response.json()["id"] == first["id"]
    assert [e["path"] for e in response.json()["endpoints"]] == ["/ping"]
    assert ApiEndpoint.objects.count() == 1


@pytest.mark.parametrize("fields, field", [
    ({"file": lambda: factories.upload("openapi.json", b"{not json")}, "file"),
    ({"file": lambda: factories.upload("openapi.json", json.dumps({"openapi": "3.0.3"}).encode())}, "file"),
    ({"file": lambda: factories.upload("openapi.json", b"\xff\xfe")}, "file"),
    ({"file": lambda: document_file("notes.txt")}, "name"),
    ({"source": lambda: "{broken"}, "name"),
    ({"source": lambda: "{broken", "name": lambda: "openapi.json"}, "source"),
    ({}, "file"),
    ({"file": lambda: document_file(), "integration": None}, "integration"),
])
def test_broken_uploads_answer_400_on_the_field_and_write_nothing(api, publisher, public, fields, field):
    data = {"integration": "label-printer"}
    for key, make in fields.items():
        if make is None:
            del data[key]
        else:
            data[key] = make()
    response = api(publisher).post("/api/v1/api-schemas/", data, format="multipart")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"], response.json()
    assert not ApiSchema.objects.exists()


def test_uploads_need_a_publisher_of_the_integration(api, anon, member, outsider, public, private):
    def post(client, slug):
        return client.post("/api/v1/api-schemas/", {"integration": slug, "file": document_file()}, format="multipart")

    assert post(api(member), "label-printer").status_code == 403
    assert post(api(outsider), "label-printer").status_code == 403
    assert post(api(outsider), "acme-erp").status_code == 404
    assert post(api(outsider), "no-such").status_code == 404
    assert post(anon, "label-printer").status_code == 401
    assert not ApiSchema.objects.exists()


def test_the_list_is_the_callers_own_unless_an_integration_is_named(api, anon, member, outsider, public, private):
    mine = factories.make_api_schema(public)
    secret = factories.make_api_schema(private, name="erp.yaml")

    def ids(client, **params):
        response = client.get("/api/v1/api-schemas/", params)
        assert response.status_code == 200
        return [row["id"] for row in response.json()["results"]]

    assert ids(api(member)) == [secret.pk, mine.pk]  # acme-erp before label-printer
    assert ids(api(member), integration="label-printer") == [mine.pk]
    assert ids(api(outsider)) == []
    assert ids(api(outsider), integration="label-printer") == [mine.pk]
    assert ids(api(outsider), integration="acme-erp") == []
    assert api(outsider).get(f"/api/v1/api-schemas/{mine.pk}/").status_code == 200
    assert api(outsider).get(f"/api/v1/api-schemas/{secret.pk}/").status_code == 404
    assert anon.get("/api/v1/api-schemas/").status_code == 401


def test_delete_refuses_a_document_a_version_names(api, publisher, member, outsider, public):
    schema = factories.make_api_schema(public)
    manifest = {**factories.SAMPLE_MANIFEST,
                "resources": {"my-printer": {"kind": "http", "apiSchema": "openapi.json"}, "erp": {"kind": "sql"}}}
    draft = factories.make_draft(public, manifest=manifest)
    assert api(member).delete(f"/api/v1/api-schemas/{schema.pk}/").status_code == 403
    assert api(outsider).delete(f"/api/v1/api-schemas/{schema.pk}/").status_code == 403
    response = api(publisher).delete(f"/api/v1/api-schemas/{schema.pk}/")
    assert response.status_code == 409 and "resources.my-printer.apiSchema" in response.json()["error"]["message"]
    assert ApiSchema.objects.filter(pk=schema.pk).exists()
    draft.delete()
    assert api(publisher).delete(f"/api/v1/api-schemas/{schema.pk}/").status_code == 204
    assert not ApiSchema.objects.exists()


@pytest.mark.parametrize("rows", [3, 30])
def test_the_list_runs_a_fixed_number_of_queries(api, publisher, acme, django_assert_max_num_queries, rows):
    for n in range(rows):
        integration = factories.make_integration(acme)
        schema = ApiSchema.objects.create(integration=integration, name=f"doc-{n}.json", source="{}", document=DOCUMENT)
        reindex(schema)
    client = api(publisher)
    # token + its last use, count, page, endpoints, models, their fields
    with django_assert_max_num_queries(7):
        response = client.get("/api/v1/api-schemas/", {"page_size": 200})
    rows_seen = response.json()["results"]
    assert len(rows_seen) == rows and all(len(r["endpoints"]) == 3 and r["models"] for r in rows_seen)


def test_a_document_with_nul_characters_is_refused_not_a_server_error(api, publisher, public):
    # "\u0000" is valid JSON but neither PostgreSQL's text nor its jsonb can store it.
    text = json.dumps({**DOCUMENT, "info": {"title": "Printer\u0000API", "version": "1"}})
    assert "\\u0000" in text
    response = api(publisher).post("/api/v1/api-schemas/", {"integration": "label-printer",
                                                           "file": factories.upload("openapi.json", text.encode())},
                                   format="multipart")
    assert response.status_code == 400 and "NUL" in response.json()["error"]["fields"]["file"][0]
    assert not ApiSchema.objects.exists()
