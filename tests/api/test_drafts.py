"""``integrations/{slug}/draft/…``: write the draft as JSON or a package, validate it, publish
it; publishers of the owning organization only (others: 404, members: 403)."""
from __future__ import annotations

import io
import json
import os

import pytest
from django.core.management import call_command

from marketplace.choices import Visibility
from marketplace.models import ApiSchema, IntegrationVersion
from tests import factories
from tests.packaging import helpers

MINI = {"manifest": helpers.MINI_MANIFEST, "files": {"main.lua": helpers.MINI_LUA}}


@pytest.fixture
def integration(acme):
    return factories.make_integration(acme, name="Mini", slug="mini", visibility=Visibility.PRIVATE)


def url(integration, tail: str = "") -> str:
    return f"/api/v1/integrations/{integration.slug}/draft/{tail}"


def zip_upload(data: bytes, name: str = "package.zip"):
    return {"file": factories.upload(name, data, "application/zip")}


# --- The draft as JSON --------------------------------------------------------------------------

def test_the_first_put_opens_the_draft_and_later_ones_replace_it(api, publisher, integration):
    client = api(publisher)
    assert client.get(url(integration)).status_code == 404

    first = client.put(url(integration), MINI, format="json")
    assert first.status_code == 201
    assert (first.json()["state"], first.json()["manifest"], first.json()["files"]) == (
        "draft", helpers.MINI_MANIFEST, {"main.lua": helpers.MINI_LUA})

    indented = {"main.lua": "  -- leading spaces and a trailing newline stay\n" + helpers.MINI_LUA + "\n\n"}
    second = client.put(url(integration), {**MINI, "files": indented}, format="json")
    assert second.status_code == 200
    assert client.get(url(integration)).json()["files"] == indented
    draft = integration.versions.get()
    assert draft.is_draft and draft.files == indented and draft.checksum == second.json()["checksum"]


def test_get_before_any_draft_says_how_to_open_one(api, publisher, integration):
    response = api(publisher).get(url(integration))
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "mini has no draft: PUT one (or its package) to open it"


@pytest.mark.parametrize("body, field", [
    ({"files": {"main.lua": "x"}}, "manifest"),
    ({"manifest": {}}, "files"),
    ({"manifest": [1, 2], "files": {}}, "manifest"),
    ({"manifest": {}, "files": ["main.lua"]}, "files"),
    ({"manifest": {}, "files": {"main.lua": 42}}, "files.main.lua"),
    ({"manifest": {}, "files": {"../evil.lua": "x"}}, "files.../evil.lua"),
    ({"manifest": {}, "files": {"/abs.lua": "x"}}, "files./abs.lua"),
])
def test_bad_drafts_answer_400_with_the_field_and_open_nothing(api, publisher, integration, body, field):
    response = api(publisher).put(url(integration), body, format="json")

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not IntegrationVersion.objects.exists()


def test_a_file_past_the_size_cap_is_refused_and_the_draft_kept(api, publisher, integration, settings):
    client = api(publisher)
    client.put(url(integration), MINI, format="json")
    settings.JUNCTION_BUNDLE_MAX_FILE_BYTES = 100

    response = client.put(url(integration), {**MINI, "files": {"main.lua": "-- x\n" * 50}}, format="json")

    assert response.status_code == 400
    assert "larger than 100 bytes" in response.json()["error"]["fields"]["files.main.lua"][0]
    assert integration.versions.get().files == {"main.lua": helpers.MINI_LUA}


def test_the_first_put_after_a_release_starts_from_it(api, publisher, integration):
    factories.make_published(integration, manifest=helpers.MINI_MANIFEST, files={"main.lua": helpers.MINI_LUA})
    response = api(publisher).put(url(integration), {**MINI, "files": {"main.lua": helpers.MINI_LUA + "-- v2\n"}},
                                  format="json")
    assert response.status_code == 201
    assert integration.versions.count() == 2 and integration.versions.drafts().count() == 1


# --- The draft from a package -------------------------------------------------------------------

def test_a_package_becomes_the_draft_with_its_api_documents(api, publisher, acme):
    integration = factories.make_integration(acme, name="Printer", slug="printer-sync")
    data = helpers.make_zip({name: data for name, data in helpers.folder_files().items()})

    response = api(publisher).put(url(integration, "package/"), zip_upload(data), format="multipart")

    assert response.status_code == 201
    assert set(response.json()["files"]) == {"main.lua", "lifecycle.lua"}
    assert response.json()["manifest"]["name"] == "printer-sync"
    assert ApiSchema.objects.get(integration=integration).endpoints.count() == 5
    again = api(publisher).put(url(integration, "package/"), zip_upload(data), format="multipart")
    assert again.status_code == 200 and integration.versions.count() == 1


def test_a_hostile_package_answers_400_with_its_report_and_writes_nothing(api, publisher, integration):
    data = helpers.make_zip(extra=[(helpers.symlink_info("lib.lua"), b"/etc/passwd")])

    response = api(publisher).put(url(integration, "package/"), zip_upload(data), format="multipart")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["fields"] == {"lib.lua": ["package refused: lib.lua is a symbolic link; packages hold plain files only"]}
    assert [(e["code"], e["file"]) for e in error["report"]["errors"]] == [("package_symlink", "lib.lua")]
    assert error["report"]["valid"] is False
    assert not IntegrationVersion.objects.exists()


def test_a_package_past_the_size_limit_answers_413(api, publisher, integration, settings):
    settings.JUNCTION_PACKAGE_MAX_BYTES = 1000
    data = helpers.make_zip({"manifest.json": json.dumps(helpers.MINI_MANIFEST), "main.lua": "-- " + os.urandom(2000).hex()})

    response = api(publisher).put(url(integration, "package/"), zip_upload(data), format="multipart")

    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "too_large"
    assert error["message"] == "package refused: the archive is larger than 1,000 bytes"
    assert [e["code"] for e in error["report"]["errors"]] == ["package_too_large"]
    assert not IntegrationVersion.objects.exists()


def test_an_oversize_upload_is_refused_before_its_body_is_read(api, publisher, integration, settings):
    settings.JUNCTION_PACKAGE_MAX_BYTES = 1000
    # Not even a valid multipart body: parsing it would answer 400.
    response = api(publisher).put(url(integration, "package/"), data=b"x" * 200_000,
                                  content_type="multipart/form-data; boundary=nowhere")

    assert response.status_code == 413
    error = response.json()["error"]
    assert error["message"] == "package refused: the archive is larger than 1,000 bytes"
    assert [e["code"] for e in error["report"]["errors"]] == ["package_too_large"]


def test_a_package_whose_manifest_is_broken_is_refused(api, publisher, integration):
    data = helpers.make_zip({"manifest.json": "{not json", "main.lua": helpers.MINI_LUA})

    response = api(publisher).put(url(integration, "package/"), zip_upload(data), format="multipart")

    assert response.status_code == 400
    error = response.json()["error"]
    assert list(error["fields"]) == ["manifest.json"]
    assert [e["code"] for e in error["report"]["errors"]] == ["manifest_json"]


@pytest.mark.parametrize("body", [{}, {"file": "not a file"}])
def test_the_package_upload_needs_a_file(api, publisher, integration, body):
    response = api(publisher).put(url(integration, "package/"), body, format="multipart")
    assert response.status_code == 400 and list(response.json()["error"]["fields"]) == ["file"]


def test_a_json_body_is_not_a_package_upload(api, publisher, integration):
    response = api(publisher).put(url(integration, "package/"), MINI, format="json")
    assert response.status_code == 415


# --- Validate -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", ["permission_missing", "schedule_too_frequent", "lua_syntax"])
def test_validate_answers_the_report_validate_integration_prints(api, publisher, integration, fixture):
    folder = helpers.FIXTURES / "bad" / fixture
    client = api(publisher)
    assert client.put(url(integration, "package/"), zip_upload(helpers.make_zip(helpers.folder_files(folder))),
                      format="multipart").status_code == 201
    printed = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("validate_integration", str(folder), "--json", stdout=printed)

    response = client.post(url(integration, "validate/"))

    assert response.status_code == 200
    assert response.json() == json.loads(printed.getvalue())
    assert response.json()["valid"] is False
    assert all(set(item) == {"code", "message", "file", "line", "path"} for item in response.json()["errors"])


def test_validate_a_valid_draft_and_write_nothing(api, publisher, integration):
    client = api(publisher)
    client.put(url(integration), MINI, format="json")
    before = integration.versions.get().updated_at

    response = client.post(url(integration, "validate/"))

    assert response.status_code == 200
    assert response.json() == {"valid": True, "errors": [], "warnings": []}
    assert integration.versions.get().updated_at == before


def test_validate_without_a_draft_is_404(api, publisher, integration):
    assert api(publisher).post(url(integration, "validate/")).status_code == 404


# --- Publish ------------------------------------------------------------------------------------

def test_publish_makes_the_next_version_available(api, publisher, integration):
    client = api(publisher)
    client.put(url(integration), MINI, format="json")

    response = client.post(url(integration, "publish/"), {"notes": "First release"}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert (body["number"], body["state"], body["available"], body["notes"]) == (1, "published", True, "First release")
    assert body["files"] == {"main.lua": helpers.MINI_LUA} and body["file_names"] == ["main.lua"]
    assert body["published_at"]
    assert client.get(url(integration)).status_code == 404  # the draft is now version 1
    client.put(url(integration), MINI, format="json")
    assert client.post(url(integration, "publish/"), {"notes": "Again"}, format="json").json()["number"] == 2


def test_publishing_an_invalid_draft_is_409_with_the_whole_report(api, publisher, integration):
    client = api(publisher)
    broken = {**helpers.MINI_MANIFEST, "handlers": {
        "sync": {"type": "timer", "file": "main.lua", "function": "sync", "schedule": {"every": "1s"}}}}
    client.put(url(integration), {"manifest": broken, "files": {"main.lua": helpers.MINI_LUA}}, format="json")
    report = client.post(url(integration, "validate/")).json()

    response = client.post(url(integration, "publish/"), {"notes": "Broken"}, format="json")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "not_publishable"
    assert error["message"] == "the draft has 1 validation error; fix them to publish"
    assert error["report"] == report
    assert [e["code"] for e in report["errors"]] == ["schedule_too_frequent"]
    assert "fields" not in error
    draft = integration.versions.get()
    assert draft.is_draft and draft.number is None and draft.notes == ""


@pytest.mark.parametrize("body", [{"notes": ""}, {"notes": "   "}, {}])
def test_publish_needs_notes(api, publisher, integration, body):
    client = api(publisher)
    client.put(url(integration), MINI, format="json")

    response = client.post(url(integration, "publish/"), body, format="json")

    assert response.status_code == 400 and list(response.json()["error"]["fields"]) == ["notes"]
    assert integration.versions.get().is_draft


def test_publish_without_a_draft_is_404(api, publisher, integration):
    response = api(publisher).post(url(integration, "publish/"), {"notes": "x"}, format="json")
    assert response.status_code == 404


# --- Who may -------------------------------------------------------------------------------------

CALLS = [
    ("get", "", None, None),
    ("put", "", MINI, "json"),
    ("put", "package/", "zip", "multipart"),
    ("post", "validate/", None, None),
    ("post", "publish/", {"notes": "x"}, "json"),
]


def call(client, integration, method, tail, body, fmt):
    if body == "zip":
        body = zip_upload(helpers.make_zip())
    kwargs = {"format": fmt} if fmt else {}
    return getattr(client, method)(url(integration, tail), body, **kwargs)


@pytest.mark.parametrize("visibility", [Visibility.PUBLIC, Visibility.PRIVATE])
@pytest.mark.parametrize("method, tail, body, fmt", CALLS)
def test_another_organization_gets_404_even_for_a_public_integration(
        api, acme, outsider, visibility, method, tail, body, fmt):
    integration = factories.make_integration(acme, visibility=visibility)
    factories.make_draft(integration, manifest=helpers.MINI_MANIFEST, files={"main.lua": helpers.MINI_LUA})

    response = call(api(outsider), integration, method, tail, body, fmt)

    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    draft = integration.versions.get()
    assert draft.is_draft and draft.manifest == helpers.MINI_MANIFEST


@pytest.mark.parametrize("method, tail, body, fmt", CALLS)
def test_a_member_who_does_not_publish_gets_403(api, member, integration, method, tail, body, fmt):
    factories.make_draft(integration, manifest=helpers.MINI_MANIFEST, files={"main.lua": "-- old\n"})

    response = call(api(member), integration, method, tail, body, fmt)

    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    assert integration.versions.get().files == {"main.lua": "-- old\n"}


@pytest.mark.parametrize("method, tail, body, fmt", CALLS)
def test_anonymous_callers_get_401(anon, integration, method, tail, body, fmt):
    assert call(anon, integration, method, tail, body, fmt).status_code == 401


def test_a_missing_integration_is_404_like_another_organizations(api, publisher):
    response = api(publisher).put("/api/v1/integrations/nowhere/draft/", MINI, format="json")
    assert response.status_code == 404


def test_a_superuser_works_on_any_draft(api, admin_user, integration):
    client = api(admin_user)
    assert client.put(url(integration), MINI, format="json").status_code == 201
    assert client.post(url(integration, "publish/"), {"notes": "By the platform"}, format="json").status_code == 201


def test_a_publisher_reads_the_draft_in_a_fixed_number_of_queries(api, publisher, integration,
                                                                  django_assert_max_num_queries):
    client = api(publisher)
    client.put(url(integration), MINI, format="json")
    # token, its last use, integration, membership (any role), membership (publishing), draft
    with django_assert_max_num_queries(6):
        assert client.get(url(integration)).status_code == 200


@pytest.mark.parametrize("body, code", [
    ('{"manifest": {"a": ' + "[" * 5000 + "]" * 5000 + '}, "files": {}}', "json_too_deep"),
    ('{"manifest": {"a": NaN}, "files": {}}', "json_not_finite"),
    ('{"manifest": {}, "manifest": {}, "files": {}}', "json_duplicate_key"),
    ('{"manifest": {"a": "\\u0000"}, "files": {}}', "json_bad_string"),
    ('{"manifest": ', "parse_error"),
])
def test_json_the_platform_cannot_store_is_400_not_500(api, publisher, integration, body, code):
    response = api(publisher).put(url(integration), data=body, content_type="application/json")

    assert response.status_code == 400 and response.json()["error"]["code"] == code
    assert not IntegrationVersion.objects.exists()
