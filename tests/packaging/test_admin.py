"""The console's packaging pages: the searchable API index and per-version validation,
diff and export, scoped like every console page."""
from __future__ import annotations

import io
import zipfile

import pytest
from django.urls import reverse

from marketplace.services.apischemas import upload_api_schema
from tests import factories
from tests.admin_forms import change_form_data

from .helpers import FIXTURES, MINI_LUA, MINI_MANIFEST

PETSTORE = (FIXTURES / "petstore.yaml").read_text()


def url(name: str, *args) -> str:
    return reverse(f"admin:marketplace_{name}", args=args)


@pytest.fixture
def pets(acme):
    integration = factories.make_integration(acme, name="Pets", slug="pets")
    upload_api_schema(integration=integration, name="petstore.yaml", source=PETSTORE)
    return integration


@pytest.fixture
def versions(acme):
    integration = factories.make_integration(acme, name="Mini", slug="mini")
    v1 = factories.make_published(integration, manifest=MINI_MANIFEST, files={"main.lua": MINI_LUA})
    draft = factories.make_draft(integration, manifest={**MINI_MANIFEST, "permissions": ["log", "tenant.sql"]},
                                 files={"main.lua": MINI_LUA.replace("tick", "tock")})
    return v1, draft


def test_endpoints_are_searchable(client, publisher, pets):
    client.force_login(publisher)

    response = client.get(url("apiendpoint_changelist"), {"q": "photos"})

    assert response.status_code == 200
    rows = response.context["cl"].result_list
    assert sorted(str(e) for e in rows) == ["DELETE /pets/{petId}/photos/{photoId}", "GET /pets/{petId}/photos",
                                            "POST /pets/{petId}/photos"]


def test_models_are_searchable_by_field(client, publisher, pets):
    client.force_login(publisher)

    response = client.get(url("apimodel_changelist"), {"q": "shipDate"})

    assert [m.name for m in response.context["cl"].result_list] == ["NewOrder", "Order"]
    page = client.get(url("apimodel_change", response.context["cl"].result_list[1].pk))
    assert page.status_code == 200 and b"shipDate" in page.content


def test_the_index_is_read_only_and_scoped(client, publisher, outsider, pets):
    endpoint = pets.api_schemas.get().endpoints.first()
    client.force_login(publisher)
    assert client.get(url("apiendpoint_add")).status_code == 403
    client.force_login(outsider)
    assert client.get(url("apiendpoint_changelist")).context["cl"].result_count == 0
    assert client.get(url("apiendpoint_change", endpoint.pk)).status_code == 404


def test_a_version_page_links_to_validate_diff_and_export(client, publisher, versions):
    _, draft = versions
    client.force_login(publisher)

    response = client.get(url("integrationversion_change", draft.pk))

    labels = [tool["label"] for tool in response.context["junction_tools"]]
    assert {"Validate", "Diff", "Export .zip"} <= set(labels)


def test_the_validation_page_lists_codes(client, publisher, versions):
    _, draft = versions
    client.force_login(publisher)

    response = client.get(url("integrationversion_validate", draft.pk))

    assert response.status_code == 200
    assert [w.code for w in response.context["report"].warnings] == ["permission_unused"]
    assert b"permission_unused" in response.content and b"permissions.1" in response.content


def test_the_diff_page_compares_the_draft_with_the_latest_version(client, publisher, versions):
    v1, draft = versions
    client.force_login(publisher)

    response = client.get(url("integrationversion_diff", draft.pk))

    diff = response.context["diff"]
    assert (diff.old_label, diff.new_label) == ("v1", "draft")
    assert [c.path for c in diff.manifest] == ["permissions"]
    assert b'+  ctx.log.info(&quot;tock&quot;)' in response.content


def test_export_downloads_the_package(client, publisher, outsider, versions):
    v1, _ = versions
    client.force_login(publisher)

    response = client.get(url("integrationversion_export", v1.pk))

    assert response["Content-Disposition"] == 'attachment; filename="mini-v1.zip"'
    assert zipfile.ZipFile(io.BytesIO(response.content)).namelist() == ["manifest.json", "main.lua"]
    client.force_login(outsider)
    assert client.get(url("integrationversion_export", v1.pk)).status_code == 404


def test_the_draft_page_shows_its_validation_report(client, publisher, acme):
    integration = factories.make_integration(acme, name="Broken", slug="broken")
    draft = factories.make_draft(integration, manifest=MINI_MANIFEST,
                                 files={"main.lua": "function tick(ctx, input)\n  return {\nend\n"})
    client.force_login(publisher)

    page = client.get(url("integrationversion_change", draft.pk)).content.decode()

    assert "Invalid — publishing is refused until the errors are fixed" in page
    assert "lua_syntax" in page and "main.lua:3" in page


# --- Deleting an uploaded API document ------------------------------------------------------

PETS_MANIFEST = {**MINI_MANIFEST, "permissions": ["log", "device.http"],
                 "resources": {"shop": {"kind": "http", "apiSchema": "petstore.yaml"}}}
PETS_LUA = MINI_LUA.replace('ctx.log.info("tick")', 'ctx.log.info("tick")\n  ctx.device.http("shop", { path = "/pets" })')


def test_a_document_a_published_version_names_cannot_be_deleted(pets, publisher):
    from marketplace.exceptions import Conflict
    from marketplace.models import ApiEndpoint, ApiSchema
    from marketplace.services.apischemas import delete_api_schema

    factories.make_published(pets, manifest=PETS_MANIFEST, files={"main.lua": PETS_LUA})
    schema = pets.api_schemas.get()
    with pytest.raises(Conflict) as exc:
        delete_api_schema(schema=schema, user=publisher)
    assert exc.value.errors["schema"] == [
        "petstore.yaml is named by v1 (resources.shop.apiSchema); upload a new document under the same name to "
        "replace it"
    ]
    assert ApiSchema.objects.filter(pk=schema.pk).exists() and ApiEndpoint.objects.filter(schema=schema).exists()

    other = upload_api_schema(integration=pets, name="unused.yaml", source=PETSTORE)
    delete_api_schema(schema=other, user=publisher)  # named by no version: it goes, index and all
    assert not ApiSchema.objects.filter(pk=other.pk).exists()
    assert not ApiEndpoint.objects.filter(schema_id=other.pk).exists()


def test_the_console_shows_why_a_document_cannot_be_deleted(client, publisher, pets):
    factories.make_draft(pets, manifest=PETS_MANIFEST, files={"main.lua": PETS_LUA})
    schema = pets.api_schemas.get()
    client.force_login(publisher)

    response = client.post(url("apischema_delete", schema.pk), {"post": "yes"}, follow=True)

    assert response.redirect_chain == [(url("apischema_change", schema.pk), 302)]
    assert [str(m) for m in response.context["messages"]] == [
        "petstore.yaml is named by draft (resources.shop.apiSchema); upload a new document under the same name to "
        "replace it"
    ]
    assert pets.api_schemas.filter(pk=schema.pk).exists()


def test_a_publisher_deletes_a_document_no_version_names_from_the_console(client, publisher, pets):
    schema = pets.api_schemas.get()
    client.force_login(publisher)

    confirm = client.get(url("apischema_delete", schema.pk))
    assert confirm.status_code == 200 and not confirm.context["perms_lacking"]
    response = client.post(url("apischema_delete", schema.pk), {"post": "yes"})

    assert response.status_code == 302 and response.url == url("apischema_changelist")
    assert not pets.api_schemas.exists()


@pytest.mark.parametrize("text, words", [
    pytest.param('{"name": "mini", "handlers": ' + "[" * 50_000 + "]" * 50_000 + "}",
                 "not valid JSON: nested deeper than 64 levels", id="nested-50000-deep"),
    pytest.param('{"name": "mini", "title": NaN, "handlers": {}}', "not valid JSON: NaN is not a JSON number", id="nan"),
    pytest.param('{"name": "mini", "name": "again", "handlers": {}}', "the key 'name' appears twice", id="duplicate-key"),
])
def test_a_manifest_the_platform_refuses_is_a_form_error_not_a_500(client, publisher, versions, text, words):
    _, draft = versions
    client.force_login(publisher)
    page = client.get(url("integrationversion_change", draft.pk))

    response = client.post(url("integrationversion_change", draft.pk), change_form_data(page, manifest=text))

    assert response.status_code == 200
    [message] = response.context["adminform"].form.errors["manifest"]
    assert words in message
    draft.refresh_from_db()
    assert draft.manifest == {**MINI_MANIFEST, "permissions": ["log", "tenant.sql"]}
