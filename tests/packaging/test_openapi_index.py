"""Uploading and indexing OpenAPI / Swagger documents, and matching calls against them."""
from __future__ import annotations

import json

import pytest

from marketplace.exceptions import InvalidInput, PermissionDenied
from marketplace.models import ApiEndpoint, ApiField, ApiModel, ApiSchema
from marketplace.packaging.openapi import EndpointMatcher, index_document, load_document, template_regex
from marketplace.packaging.validation import validate_version
from marketplace.services.apischemas import upload_api_schema
from tests import factories

from .helpers import FIXTURES

PETSTORE = (FIXTURES / "petstore.yaml").read_text()
SWAGGER = json.dumps({
    "swagger": "2.0",
    "info": {"title": "Printer", "version": "1"},
    "basePath": "/api",
    "paths": {
        "/status": {"get": {"operationId": "status", "summary": "Status", "responses": {"200": {"description": "OK"}}}},
        "/jobs/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True, "type": "integer"}],
            "get": {"operationId": "job", "responses": {"200": {"description": "OK"}}},
        },
    },
    "definitions": {
        "Job": {"type": "object", "required": ["id"], "properties": {
            "id": {"type": "integer", "description": "Job number"}, "pages": {"type": "array", "items": {"type": "string"}}}},
    },
})


@pytest.fixture
def integration(acme):
    return factories.make_integration(acme, name="Pets", slug="pets")


def test_a_petstore_is_indexed(integration, publisher):
    schema = upload_api_schema(integration=integration, name="petstore.yaml", source=PETSTORE, user=publisher)

    assert (schema.title, schema.api_version) == ("Petstore", "1.4.0")
    assert schema.endpoints.count() == 42
    assert schema.models.count() == 17
    get_pet = schema.endpoints.get(method="GET", path="/pets/{petId}")
    assert (get_pet.operation_id, get_pet.summary) == ("getPet", "Get one pet")
    assert get_pet.parameters == [
        {"name": "petId", "in": "path", "required": True, "type": "integer (int64)", "description": "ID of the pet"}
    ]
    listing = schema.endpoints.get(operation_id="listPets")
    assert [p["name"] for p in listing.parameters] == ["limit", "offset", "status", "tags"]
    pet = {f.name: f for f in ApiField.objects.filter(model__schema=schema, model__name="Pet")}
    assert set(pet) == {"id", "name", "category", "tags", "status", "birthDate", "ownerId"}
    assert (pet["id"].required, pet["name"].required, pet["status"].required) == (True, True, False)
    assert pet["tags"].type == "array of Tag"
    assert pet["name"].description == "The pet's name"


def test_swagger_2_json_is_indexed(integration, publisher):
    schema = upload_api_schema(integration=integration, name="printer.json", source=SWAGGER, user=publisher)

    assert sorted(str(e) for e in schema.endpoints.all()) == ["GET /jobs/{id}", "GET /status"]
    job = ApiModel.objects.get(schema=schema, name="Job")
    assert [(f.name, f.type, f.required) for f in job.fields.all()] == [("id", "integer", True), ("pages", "array of string", False)]


def test_uploading_again_replaces_the_index(integration, publisher):
    upload_api_schema(integration=integration, name="api.yaml", source=PETSTORE, user=publisher)
    schema = upload_api_schema(integration=integration, name="api.yaml", source=SWAGGER, user=publisher)

    assert ApiSchema.objects.filter(integration=integration).count() == 1
    assert schema.endpoints.count() == 2
    assert ApiEndpoint.objects.filter(schema__integration=integration).count() == 2
    assert not ApiModel.objects.filter(schema=schema, name="Pet").exists()


def test_a_broken_document_is_refused_with_the_validators_message(integration, publisher):
    broken = json.dumps({"openapi": "3.0.3", "info": {"title": "No version"}, "paths": {}})

    with pytest.raises(InvalidInput) as exc:
        upload_api_schema(integration=integration, name="api.json", source=broken, user=publisher)

    assert list(exc.value.errors) == ["source"]
    assert "'version' is a required property" in exc.value.errors["source"][0]
    assert not ApiSchema.objects.exists()


@pytest.mark.parametrize("source, message", [
    ("openapi: [unclosed", "not valid JSON or YAML"),
    ("just a string", "is a JSON/YAML object"),
    (json.dumps({"info": {}}), "neither an OpenAPI 3.x document"),
    (json.dumps({"openapi": "3.0.3", "info": {"title": "t", "version": "1"},
                 "paths": {"/a": {"$ref": "https://evil.example/paths.json"}}}), "external $ref"),
])
def test_unusable_documents_are_refused(integration, publisher, source, message):
    with pytest.raises(InvalidInput) as exc:
        upload_api_schema(integration=integration, name="api.yaml", source=source, user=publisher)
    assert message in exc.value.errors["source"][0]


def test_a_yaml_alias_bomb_is_refused(integration, publisher):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    bomb = "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths: {}\nx-bomb:\n" + "\n".join("  " + line for line in lines)

    with pytest.raises(InvalidInput) as exc:
        upload_api_schema(integration=integration, name="api.yaml", source=bomb, user=publisher)

    assert "too large" in exc.value.errors["source"][0]


@pytest.mark.parametrize("name", ["../api.json", "/etc/api.json", "api.txt", "manifest.json", ".hidden.json"])
def test_document_names_are_plain_relative_names(integration, publisher, name):
    with pytest.raises(InvalidInput) as exc:
        upload_api_schema(integration=integration, name=name, source=SWAGGER, user=publisher)
    assert list(exc.value.errors) == ["name"]


def test_outsiders_cannot_upload(integration, outsider):
    with pytest.raises(PermissionDenied):
        upload_api_schema(integration=integration, name="api.json", source=SWAGGER, user=outsider)


@pytest.mark.parametrize("method, path, expected", [
    ("GET", "/pets", True),
    ("GET", "/pets/", True),
    ("GET", "/pets?status=sold&limit=5", True),
    ("get", "/pets/42", True),
    ("DELETE", "/pets/42/photos/7", True),
    ("GET", "/pets/42/photos/7", False),       # only DELETE is declared there
    ("GET", "/v1/pets/42", True),              # the server URL's path prefix
    ("GET", "https://petstore.example.com/v1/store/inventory", True),
    ("GET", "/pets/42/unknown", False),
    ("GET", "/petsX", False),
    ("GET", "/pets//photos", False),           # a template segment is never empty
    ("POST", "/users/login", True),
    (None, "/orders/3/cancel", True),          # no literal method: any method will do
])
def test_calls_match_endpoints_through_path_templates(method, path, expected):
    indexed = index_document(load_document(PETSTORE, "petstore.yaml"))
    assert indexed.base_paths == ["/v1"]
    matcher = EndpointMatcher([(e.method, e.path) for e in indexed.endpoints], indexed.base_paths)
    assert matcher.matches(method, path) is expected


def test_template_regex_escapes_literal_parts():
    assert template_regex("/a.b/{id}").match("/a.b/1")
    assert not template_regex("/a.b/{id}").match("/axb/1")


def test_validation_warns_about_calls_no_endpoint_matches(integration, publisher):
    upload_api_schema(integration=integration, name="petstore.yaml", source=PETSTORE, user=publisher)
    manifest = {
        "name": "pets", "permissions": ["device.http"],
        "resources": {"store": {"kind": "http", "apiSchema": "petstore.yaml"}},
        "handlers": {"sync": {"type": "timer", "file": "main.lua", "function": "sync", "schedule": {"every": "1h"}}},
    }
    source = (
        "function sync(ctx, input)\n"
        '  ctx.device.http("store", { method = "GET", path = "/pets/" .. input.id })\n'
        '  ctx.device.http("store", { method = "GET", path = "/pets/7/visits" })\n'
        '  ctx.device.http("store", { method = "DELETE", path = "/store/inventory" })\n'
        '  ctx.device.http("store", { method = "GET", path = "/v1/owners/3/pets" })\n'
        '  ctx.device.http("store", { path = "/orders/3/cancel" })\n'
        '  ctx.device.http("store", { method = input.method, path = "/orders/3/cancel" })\n'
        "end\n"
    )
    draft = factories.make_draft(integration, manifest=manifest, files={"main.lua": source})

    report = validate_version(draft)

    assert report.valid
    # Line 6 is a GET (no method given) of a POST-only path; line 7's method is computed.
    assert [(w.code, w.file, w.line) for w in report.warnings] == [
        ("http_endpoint_unknown", "main.lua", 4), ("http_endpoint_unknown", "main.lua", 6),
    ]
    assert "DELETE /store/inventory matches no endpoint of petstore.yaml" in report.warnings[0].message


def test_a_resource_naming_a_document_never_uploaded_is_an_error(integration):
    manifest = {
        "name": "pets", "permissions": ["device.http"],
        "resources": {"store": {"kind": "http", "apiSchema": "petstore.yaml"}},
        "handlers": {"sync": {"type": "timer", "file": "main.lua", "function": "sync", "schedule": {"every": "1h"}}},
    }
    files = {"main.lua": 'function sync(ctx, input)\n  ctx.device.http("store", { path = "/pets" })\nend\n'}
    report = validate_version(factories.make_draft(integration, manifest=manifest, files=files))

    assert [(e.code, e.path) for e in report.errors] == [("api_schema_missing", "resources.store.apiSchema")]
