"""Change forms that save through services: creating integrations, icons, attachments,
draft content, device secrets and instance config. A service's refusal is shown on the
field it names and nothing of the request is kept."""
from __future__ import annotations

import json

import pytest
from django.urls import reverse

from marketplace.models import Attachment, Device, Integration, IntegrationVersion
from marketplace.validators import SECRET_MASK

from . import factories
from .admin_forms import change_form_data


def url(name: str, *args) -> str:
    return reverse(f"admin:marketplace_{name}", args=args)


@pytest.fixture
def logged_in(client, publisher):
    client.force_login(publisher)
    return client


@pytest.fixture
def integration(acme):
    return factories.make_integration(acme, name="Printer sync")


def post_change(client, model: str, pk: int, **overrides):
    page = client.get(url(f"{model}_change", pk))
    assert page.status_code == 200
    return client.post(url(f"{model}_change", pk), change_form_data(page, **overrides))


def form_errors(response) -> dict:
    return response.context["adminform"].form.errors


# --- integrations ------------------------------------------------------------------------------


def test_adding_an_integration_goes_through_the_catalog_service(logged_in, acme):
    page = logged_in.get(url("integration_add"))
    response = logged_in.post(url("integration_add"), change_form_data(
        page, owner=acme.pk, name="Label printer", summary="Labels", visibility="public",
    ))
    integration = Integration.objects.get(name="Label printer")
    assert response.status_code == 302
    assert (integration.owner, integration.slug, integration.summary) == (acme, "label-printer", "Labels")


def test_adding_a_duplicate_name_is_a_field_error(logged_in, acme, integration):
    page = logged_in.get(url("integration_add"))
    response = logged_in.post(url("integration_add"), change_form_data(page, owner=acme.pk, name="Printer sync", visibility="public"))
    assert response.status_code == 200
    assert form_errors(response)
    assert Integration.objects.filter(name="Printer sync").count() == 1


@pytest.mark.parametrize(
    "upload, message",
    [
        (lambda: factories.png_upload(640, 480), "icon must be square: got 640×480"),
        (lambda: factories.png_upload(200), "icon must be at least 400×400 px: got 200×200"),
        (lambda: factories.png_upload(400, fmt="JPEG"), "icon must be a PNG image: got JPEG"),
        (lambda: factories.upload("icon.png", b"not an image"), "icon must be a PNG image: the file is not an image"),
    ],
)
def test_a_refused_icon_shows_its_reason_on_the_field_and_nothing_is_saved(logged_in, integration, upload, message):
    response = post_change(logged_in, "integration", integration.pk, summary="Changed", upload_icon=upload())
    assert response.status_code == 200
    assert form_errors(response)["upload_icon"] == [message]
    integration.refresh_from_db()
    assert integration.summary == "" and not integration.icon


def test_a_valid_icon_is_stored_with_its_thumbnail_and_listed(logged_in, integration):
    response = post_change(logged_in, "integration", integration.pk, upload_icon=factories.png_upload(512))
    assert response.status_code == 302
    integration.refresh_from_db()
    assert integration.icon and integration.icon_thumbnail
    listing = logged_in.get(url("integration_changelist"))
    assert integration.icon_thumbnail.url.encode() in listing.content

    assert post_change(logged_in, "integration", integration.pk, remove_icon="on").status_code == 302
    integration.refresh_from_db()
    assert not integration.icon and not integration.icon_thumbnail


def test_attachment_added_inline_goes_through_the_media_service(logged_in, integration, publisher):
    page = logged_in.get(url("integration_change", integration.pk))
    data = change_form_data(page, **{
        "attachments-TOTAL_FORMS": "1", "attachments-0-title": "", "attachments-0-integration": str(integration.pk),
    })
    data["attachments-0-file"] = factories.upload("manual.pdf", factories.pdf_bytes())
    response = logged_in.post(url("integration_change", integration.pk), data)
    assert response.status_code == 302
    attachment = Attachment.objects.get()
    assert (attachment.title, attachment.content_type, attachment.uploaded_by) == ("manual.pdf", "application/pdf", publisher)


def test_a_refused_attachment_is_a_field_error(logged_in, integration):
    page = logged_in.get(url("integration_change", integration.pk))
    data = change_form_data(page, **{"attachments-TOTAL_FORMS": "1", "attachments-0-integration": str(integration.pk)})
    data["attachments-0-file"] = factories.upload("setup.exe", b"MZ\x90\x00rest")
    response = logged_in.post(url("integration_change", integration.pk), data)
    assert response.status_code == 200
    inline_form = response.context["inline_admin_formsets"][1].formset.forms[0]
    assert inline_form.errors["file"] == ["attachments of type .exe are refused: executable or HTML content"]
    assert not Attachment.objects.exists()


def test_a_late_refusal_lands_on_the_field_the_service_names(db):
    """What the console does when a service refuses after the form validated."""
    from marketplace.admin.forms import IntegrationForm
    from marketplace.formerrors import with_refusal

    form_class = with_refusal(IntegrationForm, {"icon": ["icon must be square: got 2×1"], "__all__": ["too late"]})
    form = form_class(data={"name": "X", "visibility": "public"})
    form.is_valid()
    assert form.errors["upload_icon"] == ["icon must be square: got 2×1"]
    assert form.non_field_errors() == ["too late"]


# --- drafts and published versions ---------------------------------------------------------


def test_draft_files_are_edited_one_text_area_each_through_update_draft(logged_in, integration):
    draft = factories.make_draft(integration, files={"main.lua": "-- main\n", "old.lua": "-- old\n"})
    page = logged_in.get(url("integrationversion_change", draft.pk))
    form = page.context["adminform"].form
    assert (form.fields["file_0"].label, form.fields["file_1"].label) == ("main.lua", "old.lua")
    response = logged_in.post(url("integrationversion_change", draft.pk), change_form_data(
        page, file_0="function sync(ctx, input)\r\n  return { ok = false }\r\nend\r\n", remove_1="on",
        new_file_path="lib/util.lua", new_file_source="return {}\n",
    ))
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.files == {
        "main.lua": "function sync(ctx, input)\n  return { ok = false }\nend\n", "lib/util.lua": "return {}\n",
    }


def test_manifest_is_edited_as_json(logged_in, integration):
    draft = factories.make_draft(integration)
    manifest = {**draft.manifest, "title": "Printer sync 2"}
    assert post_change(logged_in, "integrationversion", draft.pk, manifest=json.dumps(manifest)).status_code == 302
    draft.refresh_from_db()
    assert draft.manifest["title"] == "Printer sync 2"


def test_a_bundle_the_service_refuses_is_shown_on_the_field_and_nothing_is_kept(logged_in, integration):
    draft = factories.make_draft(integration)
    before = (dict(draft.manifest), dict(draft.files))
    response = post_change(
        logged_in, "integrationversion", draft.pk,
        manifest=json.dumps({"name": "changed"}), new_file_path="../escape.lua", new_file_source="x = 1",
    )
    assert response.status_code == 200
    assert form_errors(response)["new_file_path"] == ["'../escape.lua' is not a plain relative path"]
    draft.refresh_from_db()
    assert (draft.manifest, draft.files) == before


def test_draft_editor_uses_monospace_text_areas(logged_in, integration):
    draft = factories.make_draft(integration)
    page = logged_in.get(url("integrationversion_change", draft.pk))
    assert page.content.count(b'class="junction-code"') >= 2


def test_published_versions_are_read_only(logged_in, integration):
    version = factories.make_published(integration)
    page = logged_in.get(url("integrationversion_change", version.pk))
    assert page.status_code == 200 and page.context["has_change_permission"] is False
    assert page.context["has_delete_permission"] is False
    assert logged_in.post(url("integrationversion_change", version.pk), {"notes": "rewritten"}).status_code == 403
    assert logged_in.post(url("integrationversion_delete", version.pk), {"post": "yes"}).status_code == 403
    assert IntegrationVersion.objects.get(pk=version.pk).notes == "Release"


# --- device secrets --------------------------------------------------------------------------


def test_device_secrets_are_never_shown_only_their_keys(logged_in, acme):
    device = factories.make_device(acme, credentials={"token": "tok-very-secret"}, headers={"X-Key": "hdr-secret"})
    page = logged_in.get(url("device_change", device.pk))
    assert b"tok-very-secret" not in page.content and b"hdr-secret" not in page.content
    assert f"token = {SECRET_MASK}".encode() in page.content
    assert page.context["adminform"].form["new_credentials"].value() in (None, "")  # an empty box
    assert b">\nnull</textarea>" not in page.content
    assert logged_in.get(url("device_changelist")).content.count(b"tok-very-secret") == 0


def test_device_secrets_are_kept_replaced_or_cleared(logged_in, acme):
    device = factories.make_device(acme, credentials={"token": "old"}, headers={"X-Key": "h"})
    assert post_change(logged_in, "device", device.pk, name="Printer").status_code == 302
    device = Device.objects.get(pk=device.pk)
    assert (device.name, device.credentials, device.headers) == ("Printer", {"token": "old"}, {"X-Key": "h"})

    post_change(logged_in, "device", device.pk, new_credentials='{"token": "new"}', clear_headers="on")
    device = Device.objects.get(pk=device.pk)
    assert (device.credentials, device.headers) == ({"token": "new"}, {})


def test_device_secret_must_be_a_json_object(logged_in, acme):
    device = factories.make_device(acme)
    response = post_change(logged_in, "device", device.pk, new_credentials='["token"]')
    assert response.status_code == 200 and "new_credentials" in form_errors(response)


# --- instances -------------------------------------------------------------------------------


@pytest.fixture
def instance(integration, acme):
    return factories.make_instance(factories.make_published(integration), acme, name="Plant 1")


def test_instance_page_shows_masked_config_never_the_secret(logged_in, instance):
    page = logged_in.get(url("instance_change", instance.pk))
    assert factories.SAMPLE_CONFIG["apiKey"].encode() not in page.content
    assert SECRET_MASK.encode() in page.content


def test_reconfiguring_keeps_a_masked_secret_and_validates_config(logged_in, instance):
    config = {**instance.masked_config(), "site": "Plant 2"}
    response = post_change(logged_in, "instance", instance.pk, config_values=json.dumps(config))
    assert response.status_code == 302
    instance.refresh_from_db()
    assert instance.config["site"] == "Plant 2"
    assert instance.secret_config["apiKey"] == factories.SAMPLE_CONFIG["apiKey"]

    response = post_change(logged_in, "instance", instance.pk, config_values=json.dumps({**config, "interval": 0}))
    assert response.status_code == 200
    assert form_errors(response)["config_values"] == ["config.interval: 0 is less than the minimum of 1"]


def test_rebinding_a_resource_to_a_device_of_the_wrong_kind_is_a_field_error(logged_in, instance, acme):
    sql_device = factories.make_device(acme, "sql")
    response = post_change(logged_in, "instance", instance.pk, **{"binding__my-printer": str(sql_device.pk)})
    # The choice list only offers HTTP devices for an HTTP resource.
    assert response.status_code == 200 and "binding__my-printer" in form_errors(response)


def test_enable_disable_actions_and_uninstall(logged_in, instance):
    logged_in.post(url("instance_changelist"), {"action": "disable", "_selected_action": [instance.pk]})
    instance.refresh_from_db()
    assert instance.enabled is False
    logged_in.post(url("instance_changelist"), {"action": "enable", "_selected_action": [instance.pk]})
    instance.refresh_from_db()
    assert instance.enabled is True
    page = logged_in.get(url("instance_change", instance.pk))
    assert b"Disable" in page.content
    logged_in.post(url("instance_enabled", instance.pk) + "?enabled=0")
    instance.refresh_from_db()
    assert instance.enabled is False
    response = logged_in.post(url("instance_delete", instance.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not type(instance).objects.filter(pk=instance.pk).exists()


# --- API schemas ------------------------------------------------------------------------------

PETSTORE = {
    "openapi": "3.0.3", "info": {"title": "Pets", "version": "2"},
    "paths": {"/pets/{id}": {"get": {
        "operationId": "getPet", "responses": {"200": {"description": "ok"}},
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
    }}},
}


def test_an_api_document_is_uploaded_and_indexed_through_the_service(logged_in, integration, publisher):
    page = logged_in.get(url("apischema_add"))
    response = logged_in.post(url("apischema_add"), change_form_data(
        page, integration=integration.pk, name="openapi.json", source=json.dumps(PETSTORE),
    ))
    assert response.status_code == 302
    schema = integration.api_schemas.get()
    assert (schema.title, schema.api_version, schema.uploaded_by) == ("Pets", "2", publisher)
    assert [str(e) for e in schema.endpoints.all()] == ["GET /pets/{id}"]


def test_a_broken_api_document_is_refused_on_the_field(logged_in, integration):
    page = logged_in.get(url("apischema_add"))
    response = logged_in.post(url("apischema_add"), change_form_data(
        page, integration=integration.pk, name="openapi.json", source='{"openapi": "3.0.3"',
    ))
    assert response.status_code == 200
    assert form_errors(response)["source"][0].startswith("invalid OpenAPI document")
    assert not integration.api_schemas.exists()
