"""``integrations/{slug}/versions/…`` and ``…/diff/``: published versions as the integration's
viewers see them, availability by its publishers, packages, and what changed."""
from __future__ import annotations

import io
import json
import zipfile

import pytest

from marketplace.choices import Visibility
from marketplace.models import IntegrationVersion
from marketplace.services.packages import export_version, load_package
from tests import factories
from tests.packaging import helpers

V2_LUA = helpers.MINI_LUA.replace('"tick"', '"tock"')
V2_MANIFEST = {**helpers.MINI_MANIFEST, "handlers": {
    "sync": {"type": "timer", "file": "main.lua", "function": "sync", "schedule": {"every": "10m"}}}}


def publish(integration, *, manifest=None, files=None, notes="Release"):
    return factories.make_published(integration, notes=notes, manifest=manifest or helpers.MINI_MANIFEST,
                                    files=files or {"main.lua": helpers.MINI_LUA})


@pytest.fixture
def public(acme):
    integration = factories.make_integration(acme, name="Mini", slug="mini")
    publish(integration, notes="First")
    publish(integration, manifest=V2_MANIFEST, files={"main.lua": V2_LUA}, notes="Second")
    return integration


@pytest.fixture
def private(acme):
    integration = factories.make_integration(acme, name="Secret", slug="secret", visibility=Visibility.PRIVATE)
    publish(integration)
    factories.make_draft(integration, manifest=helpers.MINI_MANIFEST, files={"main.lua": helpers.MINI_LUA})
    return integration


def versions_url(integration, tail: str = "") -> str:
    return f"/api/v1/integrations/{integration.slug}/versions/{tail}"


# --- Reading ------------------------------------------------------------------------------------

def test_versions_are_listed_newest_first_without_the_draft(api, publisher, public):
    factories.make_draft(public)

    body = api(publisher).get(versions_url(public)).json()

    assert body["count"] == 2
    assert [(v["number"], v["notes"], v["state"], v["file_names"]) for v in body["results"]] == [
        (2, "Second", "published", ["main.lua"]), (1, "First", "published", ["main.lua"])]
    assert set(body["results"][0]) == {"number", "state", "notes", "available", "published_at", "checksum", "file_names"}


@pytest.mark.parametrize("persona", [None, "outsider", "member"])
def test_a_public_integrations_versions_are_read_by_anyone(request, api, public, persona):
    client = api(request.getfixturevalue(persona) if persona else None)

    assert client.get(versions_url(public)).json()["count"] == 2
    detail = client.get(versions_url(public, "2/"))
    assert detail.status_code == 200
    assert (detail.json()["manifest"], detail.json()["files"]) == (V2_MANIFEST, {"main.lua": V2_LUA})


def test_unavailable_versions_are_listed_too(api, outsider, public):
    version = public.versions.get(number=1)
    version.available = False
    version.save()
    listed = api(outsider).get(versions_url(public)).json()["results"]
    assert [(v["number"], v["available"]) for v in listed] == [(2, True), (1, False)]


def test_a_missing_version_or_the_draft_by_number_is_404(api, publisher, public):
    factories.make_draft(public)
    client = api(publisher)
    assert client.get(versions_url(public, "3/")).status_code == 404
    assert client.get(versions_url(public, "0/")).status_code == 404
    assert client.get(versions_url(public, "99999999999999999999999/")).status_code == 404
    assert client.get(versions_url(public, "99999999999999999999999/package/")).status_code == 404
    assert client.get("/api/v1/integrations/nowhere/versions/").status_code == 404


@pytest.mark.parametrize("rows", [3, 30])
def test_the_list_costs_the_same_whatever_its_length(api, outsider, acme, rows, django_assert_max_num_queries):
    integration = factories.make_integration(acme)
    drafts = [IntegrationVersion(integration=integration, manifest=helpers.MINI_MANIFEST,
                                 files={"main.lua": helpers.MINI_LUA}) for _ in range(rows)]
    for number, draft in enumerate(drafts, start=1):  # published rows straight away: validating 30 is slow
        draft.number, draft.state, draft.notes, draft.available = number, "published", f"v{number}", True
    IntegrationVersion.objects.bulk_create(drafts)
    client = api(outsider)
    # token, its last use, the integration, count, page
    with django_assert_max_num_queries(5):
        response = client.get(versions_url(integration), {"page_size": 50})
    assert response.json()["count"] == rows


# --- Availability -------------------------------------------------------------------------------

def test_a_publisher_withdraws_and_restores_a_version(api, publisher, public):
    client = api(publisher)

    response = client.patch(versions_url(public, "1/"), {"available": False}, format="json")

    assert response.status_code == 200 and response.json()["available"] is False
    assert public.versions.get(number=1).available is False
    assert client.patch(versions_url(public, "1/"), {"available": True}, format="json").json()["available"] is True


def test_sending_back_what_get_gave_changes_only_available(api, publisher, public):
    client = api(publisher)
    current = client.get(versions_url(public, "2/")).json()

    response = client.patch(versions_url(public, "2/"), {**current, "available": False}, format="json")

    assert response.status_code == 200 and response.json() == {**current, "available": False}


@pytest.mark.parametrize("change", [
    {"notes": "Rewritten"},
    {"number": 7},
    {"manifest": {}},
    {"files": {"main.lua": "-- replaced"}},
    {"state": "draft"},
    {"available": False, "notes": "Rewritten"},
])
def test_changing_a_published_versions_content_is_409_and_changes_nothing(api, publisher, public, change):
    response = api(publisher).patch(versions_url(public, "2/"), change, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "immutable_version"
    version = public.versions.get(number=2)
    assert (version.notes, version.available, version.files) == ("Second", True, {"main.lua": V2_LUA})


@pytest.mark.parametrize("body", [{}, {"available": "perhaps"}, {"available": None}])
def test_availability_must_be_a_boolean(api, publisher, public, body):
    response = api(publisher).patch(versions_url(public, "1/"), body, format="json")
    assert response.status_code == 400 and list(response.json()["error"]["fields"]) == ["available"]


@pytest.mark.parametrize("body", [{"available": False}, {"notes": "Rewritten"}])
@pytest.mark.parametrize("persona", ["member", "outsider"])
def test_only_its_publishers_change_availability(request, api, public, persona, body):
    response = api(request.getfixturevalue(persona)).patch(versions_url(public, "1/"), body, format="json")
    assert response.status_code == 403
    version = public.versions.get(number=1)
    assert (version.available, version.notes) == (True, "First")


def test_anonymous_callers_cannot_change_availability(anon, public):
    assert anon.patch(versions_url(public, "1/"), {"available": False}, format="json").status_code == 401


# --- Packages -----------------------------------------------------------------------------------

@pytest.mark.parametrize("accept", [None, "application/zip"])
def test_a_version_downloads_as_its_package(anon, public, accept):
    headers = {"HTTP_ACCEPT": accept} if accept else {}

    response = anon.get(versions_url(public, "2/package/"), **headers)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="mini-v2.zip"'
    version = public.versions.get(number=2)
    assert response.content == export_version(version=version)
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert names == ["manifest.json", "main.lua"]
    package = load_package(response.content)
    assert (package.manifest, package.bundle) == (V2_MANIFEST, {"main.lua": V2_LUA})


def test_a_package_error_is_json_even_when_a_zip_was_asked_for(anon, private):
    response = anon.get(versions_url(private, "1/package/"), HTTP_ACCEPT="application/zip")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- Diff ---------------------------------------------------------------------------------------

def diff_url(integration, **params) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/api/v1/integrations/{integration.slug}/diff/?{query}"


def test_the_diff_of_two_versions_names_manifest_paths_and_files(anon, public):
    response = anon.get(diff_url(public, **{"from": 1, "to": 2}))

    assert response.status_code == 200
    body = response.json()
    assert (body["old"], body["new"], body["unchanged_files"]) == ("v1", "v2", [])
    assert body["manifest"] == [
        {"path": "handlers.sync.schedule.every", "change": "changed", "old": "5m", "new": "10m"}]
    [file] = body["files"]
    assert (file["file"], file["change"], file["added"], file["removed"]) == ("main.lua", "changed", 1, 1)
    assert file["diff"].startswith("--- a/main.lua\n+++ b/main.lua\n@@ ")
    assert '-  ctx.log.info("tick")\n+  ctx.log.info("tock")\n' in file["diff"]


def test_the_draft_is_compared_by_its_publishers(api, publisher, public):
    factories.make_draft(public, manifest=V2_MANIFEST, files={"main.lua": V2_LUA, "lib.lua": "return {}\n"})

    body = api(publisher).get(diff_url(public, **{"from": 2, "to": "draft"})).json()

    assert (body["old"], body["new"], body["manifest"], body["unchanged_files"]) == ("v2", "draft", [], ["main.lua"])
    assert [(f["file"], f["change"], f["diff"]) for f in body["files"]] == [
        ("lib.lua", "added", "--- /dev/null\n+++ b/lib.lua\n@@ -0,0 +1 @@\n+return {}\n")]
    backwards = api(publisher).get(diff_url(public, **{"from": "draft", "to": 1})).json()
    assert [f["change"] for f in backwards["files"]] == ["removed", "changed"]


@pytest.mark.parametrize("persona, status", [("outsider", 404), ("member", 403), (None, 401)])
def test_the_draft_is_not_compared_by_others(request, api, public, persona, status):
    factories.make_draft(public)
    client = api(request.getfixturevalue(persona) if persona else None)
    assert client.get(diff_url(public, **{"from": 1, "to": "draft"})).status_code == status


@pytest.mark.parametrize("params, field", [
    ({"to": 2}, "from"),
    ({"from": 1}, "to"),
    ({"from": "one", "to": 2}, "from"),
    ({"from": 1, "to": "-2"}, "to"),
    ({"from": "%C2%B2", "to": 1}, "from"),  # "²", a digit to str.isdigit
    ({"from": 1, "to": "9" * 5000}, "to"),
])
def test_a_bad_diff_query_is_400_with_the_parameter(anon, public, params, field):
    response = anon.get(diff_url(public, **params))
    assert response.status_code == 400 and list(response.json()["error"]["fields"]) == [field]


@pytest.mark.parametrize("missing", [9, "99999999999999999999"])
def test_a_diff_with_a_missing_version_is_404(anon, public, missing):
    assert anon.get(diff_url(public, **{"from": 1, "to": missing})).status_code == 404


# --- A private integration: another organization finds nothing -----------------------------------

PRIVATE_CALLS = [
    ("get", "versions/", None),
    ("get", "versions/1/", None),
    ("patch", "versions/1/", {"available": False}),
    ("get", "versions/1/package/", None),
    ("get", "diff/?from=1&to=1", None),
    ("get", "diff/?from=1&to=draft", None),
]


@pytest.mark.parametrize("method, tail, body", PRIVATE_CALLS)
@pytest.mark.parametrize("persona", [None, "outsider"])
def test_a_private_integrations_versions_are_404_for_other_organizations(
        request, api, private, persona, method, tail, body):
    client = api(request.getfixturevalue(persona) if persona else None)

    response = getattr(client, method)(f"/api/v1/integrations/{private.slug}/{tail}", body, format="json")

    expected = 401 if persona is None and method == "patch" else 404
    assert response.status_code == expected
    assert private.versions.get(number=1).available is True


@pytest.mark.parametrize("method, tail, body", PRIVATE_CALLS)
def test_its_own_members_read_a_private_integrations_versions(api, member, private, method, tail, body):
    response = getattr(api(member), method)(f"/api/v1/integrations/{private.slug}/{tail}", body, format="json")
    assert response.status_code == 403 if method == "patch" or "draft" in tail else 200


def test_the_schema_names_the_paths(anon):
    paths = json.loads(anon.get("/api/schema/", HTTP_ACCEPT="application/json").content)["paths"]
    mine = {p.removeprefix("/api/v1/integrations/{slug}/"): set(ops) for p, ops in paths.items()
            if p.startswith("/api/v1/integrations/{slug}/")}
    assert {k: v for k, v in mine.items() if k.startswith(("draft/", "versions/", "diff/"))} == {
        "draft/": {"get", "put"}, "draft/package/": {"put"}, "draft/validate/": {"post"},
        "draft/publish/": {"post"}, "versions/": {"get"}, "versions/{number}/": {"get", "patch"},
        "versions/{number}/package/": {"get"}, "diff/": {"get"},
    }
