"""``/api/v1/integrations/`` and ``/api/v1/categories/``: the catalog each caller sees, its
filters and order, and publishers' writes through the catalog, deletion, forking and media
services — with the tenant wall (another organization's private integration is 404) and
the roles (a plain member is refused with 403)."""
from __future__ import annotations

import pytest

from marketplace.choices import Role, Visibility
from marketplace.models import Attachment, Instance, Integration

from .. import factories


@pytest.fixture
def printing(db):
    return factories.make_category("Printing")


@pytest.fixture
def acme_public(acme, printing):
    return factories.make_integration(acme, name="Label printer", slug="label-printer", category=printing,
                                      summary="Prints labels", description="Thermal printers.")


@pytest.fixture
def acme_private(acme, printing):
    return factories.make_integration(acme, name="Acme ERP", slug="acme-erp", category=printing,
                                      visibility=Visibility.PRIVATE, description="Our own ERP bridge.")


@pytest.fixture
def globex_private(globex):
    return factories.make_integration(globex, name="Globex secret", slug="globex-secret",
                                      visibility=Visibility.PRIVATE)


def slugs(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["slug"] for row in response.json()["results"]]


# --- Reading the catalog -------------------------------------------------------------------


def test_each_caller_sees_public_integrations_and_their_own_organizations_private_ones(
        api, anon, member, outsider, admin_user, acme_public, acme_private, globex_private):
    assert slugs(anon.get("/api/v1/integrations/")) == ["label-printer"]
    assert slugs(api(member).get("/api/v1/integrations/")) == ["acme-erp", "label-printer"]
    assert slugs(api(outsider).get("/api/v1/integrations/")) == ["globex-secret", "label-printer"]
    assert slugs(api(admin_user).get("/api/v1/integrations/")) == ["acme-erp", "globex-secret", "label-printer"]


def test_an_integration_reads_with_the_contracts_fields(anon, acme_public, acme):
    factories.make_published(acme_public)
    factories.make_published(acme_public)
    row = anon.get("/api/v1/integrations/").json()["results"][0]
    detail = anon.get("/api/v1/integrations/label-printer/").json()
    assert row == detail
    assert {k: detail[k] for k in ("slug", "name", "summary", "description", "category", "visibility",
                                   "organization", "latest_version", "icon_url")} == {
        "slug": "label-printer", "name": "Label printer", "summary": "Prints labels",
        "description": "Thermal printers.", "category": acme_public.category.slug,
        "visibility": "public", "organization": acme.slug, "latest_version": 2, "icon_url": None,
    }
    assert detail["url"] == "http://testserver/api/v1/integrations/label-printer/"
    assert detail["page_url"] == "http://testserver/integrations/label-printer/"


def test_private_integration_detail_is_404_for_other_organizations_and_anonymous(
        api, anon, outsider, member, acme_private):
    assert api(member).get("/api/v1/integrations/acme-erp/").status_code == 200
    for client in (api(outsider), anon):
        response = client.get("/api/v1/integrations/acme-erp/")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_search_category_and_organization_filters(api, publisher, acme, globex, printing, acme_public, acme_private):
    factories.make_integration(globex, name="Globex scanner", slug="globex-scanner", summary="label scanner")
    client = api(publisher)
    assert slugs(client.get("/api/v1/integrations/", {"search": "erp"})) == ["acme-erp"]
    assert slugs(client.get("/api/v1/integrations/", {"search": "LABEL"})) == ["globex-scanner", "label-printer"]
    assert slugs(client.get("/api/v1/integrations/", {"search": "thermal"})) == ["label-printer"]
    assert slugs(client.get("/api/v1/integrations/", {"category": printing.slug})) == ["acme-erp", "label-printer"]
    assert slugs(client.get("/api/v1/integrations/", {"organization": globex.slug})) == ["globex-scanner"]
    assert slugs(client.get("/api/v1/integrations/", {"organization": "nobody"})) == []
    response = client.get("/api/v1/integrations/", {"category": "no-such-shelf"})
    assert response.status_code == 400 and "category" in response.json()["error"]["fields"]


def test_ordering_is_stable_when_names_tie(api, admin_user, acme, globex):
    first = factories.make_integration(globex, name="Same", slug="same-b")
    second = factories.make_integration(acme, name="Same", slug="same-a")
    factories.make_integration(acme, name="Alpha", slug="alpha")
    client = api(admin_user)
    assert slugs(client.get("/api/v1/integrations/")) == ["alpha", "same-b", "same-a"]  # name, then id
    assert slugs(client.get("/api/v1/integrations/", {"ordering": "-name"})) == ["same-b", "same-a", "alpha"]
    assert slugs(client.get("/api/v1/integrations/", {"ordering": "slug"})) == ["alpha", "same-a", "same-b"]
    Integration.objects.filter(pk=second.pk).update(created_at=first.created_at)
    by_created = slugs(client.get("/api/v1/integrations/", {"ordering": "created_at"}))
    assert by_created.index("same-b") < by_created.index("same-a")
    paged = [slugs(client.get("/api/v1/integrations/", {"ordering": "name", "page_size": 1, "page": n}))[0]
             for n in (1, 2, 3)]
    assert paged == ["alpha", "same-b", "same-a"]
    response = client.get("/api/v1/integrations/", {"ordering": "owner__name"})
    assert response.status_code == 400 and "ordering" in response.json()["error"]["fields"]


@pytest.mark.parametrize("rows", [3, 30])
def test_the_list_runs_a_fixed_number_of_queries(api, publisher, acme, printing, django_assert_max_num_queries,
                                                 rows):
    for n in range(rows):
        integration = factories.make_integration(acme, category=printing,
                                                 visibility=Visibility.PRIVATE if n % 2 else Visibility.PUBLIC)
        integration.icon = f"icons/{integration.slug}/x.png"
        integration.save()
        if n % 3 == 0:
            factories.make_published(integration)
    client = api(publisher)
    # token + its user, count, page (category, owner and the latest version in one query)
    with django_assert_max_num_queries(4):
        response = client.get("/api/v1/integrations/", {"page_size": 200})
    assert len(response.json()["results"]) == rows


def test_categories_count_only_the_integrations_the_caller_sees(api, anon, member, outsider, printing,
                                                                 acme_public, acme_private, globex_private):
    empty = factories.make_category("Empty")
    factories.make_integration(globex_private.owner, visibility=Visibility.PRIVATE, category=empty)

    def counts(client):
        response = client.get("/api/v1/categories/")
        assert response.status_code == 200
        return {row["slug"]: row["integration_count"] for row in response.json()["results"]}

    assert counts(anon) == {printing.slug: 1, empty.slug: 0}
    assert counts(api(member)) == {printing.slug: 2, empty.slug: 0}
    assert counts(api(outsider)) == {printing.slug: 1, empty.slug: 1}


@pytest.mark.parametrize("rows", [3, 30])
def test_categories_list_runs_a_fixed_number_of_queries(anon, django_assert_max_num_queries, rows):
    for _ in range(rows):
        factories.make_integration(category=factories.make_category())
    with django_assert_max_num_queries(2):  # count, page
        response = anon.get("/api/v1/categories/", {"page_size": 200})
    assert [row["integration_count"] for row in response.json()["results"]] == [1] * rows


# --- Creating and editing ------------------------------------------------------------------


def test_a_publisher_creates_an_integration_in_their_only_publishing_organization(api, publisher, acme, printing):
    response = api(publisher).post("/api/v1/integrations/", {
        "name": "Printer sync", "summary": "Labels", "category": printing.slug, "visibility": "private",
    }, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["slug"] == "printer-sync" and body["organization"] == acme.slug
    assert body["visibility"] == "private" and body["category"] == printing.slug and body["latest_version"] is None
    integration = Integration.objects.get(slug="printer-sync")
    assert integration.owner == acme and integration.summary == "Labels"


def test_create_names_the_organization_when_the_user_publishes_for_several(api, publisher, acme, globex):
    factories.add_member(publisher, globex, Role.OWNER)
    client = api(publisher)
    response = client.post("/api/v1/integrations/", {"name": "Two homes"}, format="json")
    assert response.status_code == 400 and "organization" in response.json()["error"]["fields"]
    response = client.post("/api/v1/integrations/", {"name": "Two homes", "organization": globex.slug}, format="json")
    assert response.status_code == 201 and response.json()["organization"] == globex.slug


def test_create_refusals_write_nothing(api, anon, member, outsider, publisher, acme, acme_public):
    before = Integration.objects.count()
    response = api(member).post("/api/v1/integrations/", {"name": "Nope"}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    response = api(member).post("/api/v1/integrations/", {"name": "Nope", "organization": acme.slug}, format="json")
    assert response.status_code == 403
    response = api(outsider).post("/api/v1/integrations/", {"name": "Nope", "organization": acme.slug}, format="json")
    assert response.status_code == 404
    assert anon.post("/api/v1/integrations/", {"name": "Nope"}, format="json").status_code == 401
    client = api(publisher)
    for body, field in [
        ({"name": "Label printer"}, "name"),  # taken in Acme
        ({"name": ""}, "name"),
        ({}, "name"),
        ({"name": "X", "visibility": "secret"}, "visibility"),
        ({"name": "X", "category": "nope"}, "category"),
        ({"name": "X", "slug": "label-printer"}, "slug"),
        ({"name": "X", "slug": "not a slug"}, "slug"),
    ]:
        response = client.post("/api/v1/integrations/", body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert field in response.json()["error"]["fields"], (body, response.json())
    assert Integration.objects.count() == before


def test_patch_changes_only_the_fields_sent(api, publisher, acme_public, printing):
    response = api(publisher).patch("/api/v1/integrations/label-printer/",
                                    {"summary": "New", "category": None, "visibility": "private"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["summary"] == "New" and response.json()["category"] is None
    acme_public.refresh_from_db()
    assert (acme_public.name, acme_public.summary, acme_public.category, acme_public.visibility) == (
        "Label printer", "New", None, "private")


def test_patch_refusals_change_nothing(api, publisher, member, outsider, acme, acme_public, acme_private):
    factories.make_integration(acme, name="Taken", slug="taken")
    response = api(publisher).patch("/api/v1/integrations/label-printer/", {"name": "Taken"}, format="json")
    assert response.status_code == 400 and "name" in response.json()["error"]["fields"]
    assert api(member).patch("/api/v1/integrations/label-printer/", {"name": "Z"}, format="json").status_code == 403
    assert api(member).patch("/api/v1/integrations/acme-erp/", {"name": "Z"}, format="json").status_code == 403
    # Another organization's public integration is known, so 403; its private one is 404.
    assert api(outsider).patch("/api/v1/integrations/label-printer/", {"name": "Z"}, format="json").status_code == 403
    assert api(outsider).patch("/api/v1/integrations/acme-erp/", {"name": "Z"}, format="json").status_code == 404
    assert set(Integration.objects.values_list("name", flat=True)) == {"Label printer", "Acme ERP", "Taken"}


def test_delete_cascades_to_versions_attachments_and_instances(api, publisher, member, globex, acme_public):
    version = factories.make_published(acme_public)
    factories.make_instance(version, globex)
    factories.make_attachment(acme_public)
    assert api(member).delete("/api/v1/integrations/label-printer/").status_code == 403
    assert Integration.objects.filter(slug="label-printer").exists()
    response = api(publisher).delete("/api/v1/integrations/label-printer/")
    assert response.status_code == 204 and response.content == b""
    assert not Integration.objects.filter(slug="label-printer").exists()
    assert not Instance.objects.exists() and not Attachment.objects.exists()
    assert api(publisher).get("/api/v1/integrations/label-printer/").status_code == 404


# --- Forking ---------------------------------------------------------------------------------


def test_fork_copies_into_the_callers_organization_as_private(api, outsider, globex, acme_public):
    factories.make_published(acme_public)
    response = api(outsider).post("/api/v1/integrations/label-printer/fork/",
                                  {"name": "Globex labels", "description": "Ours"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["organization"] == globex.slug and body["visibility"] == "private"
    assert body["description"] == "Ours" and body["slug"] == "globex-labels"
    fork = Integration.objects.get(slug="globex-labels")
    assert fork.forked_from == acme_public and fork.draft is not None


def test_fork_refusals(api, outsider, member, acme, globex, acme_private, acme_public):
    before = Integration.objects.count()
    assert api(outsider).post("/api/v1/integrations/acme-erp/fork/", {"name": "Steal"}, format="json").status_code == 404
    response = api(member).post("/api/v1/integrations/label-printer/fork/", {"name": "Mine"}, format="json")
    assert response.status_code == 403
    response = api(outsider).post("/api/v1/integrations/label-printer/fork/",
                                  {"name": "Into Acme", "organization": acme.slug}, format="json")
    assert response.status_code == 404
    response = api(outsider).post("/api/v1/integrations/label-printer/fork/", {}, format="json")
    assert response.status_code == 400 and "name" in response.json()["error"]["fields"]
    factories.make_integration(globex, name="Taken", slug="taken")
    response = api(outsider).post("/api/v1/integrations/label-printer/fork/", {"name": "Taken"}, format="json")
    assert response.status_code == 400 and "name" in response.json()["error"]["fields"]
    assert Integration.objects.count() == before + 1


# --- Icons -----------------------------------------------------------------------------------


def test_icon_put_and_delete(api, anon, publisher, acme_public):
    client = api(publisher)
    response = client.put("/api/v1/integrations/label-printer/icon/",
                          {"file": factories.png_upload(400)}, format="multipart")
    assert response.status_code == 200, response.content
    icon_url = response.json()["icon_url"]
    assert icon_url.startswith("http://testserver/") and icon_url.endswith(".png")
    assert response.json()["icon_thumbnail_url"]
    acme_public.refresh_from_db()
    assert acme_public.icon and acme_public.icon_thumbnail
    assert anon.get("/api/v1/integrations/label-printer/").json()["icon_url"] == icon_url
    response = client.delete("/api/v1/integrations/label-printer/icon/")
    assert response.status_code == 204
    acme_public.refresh_from_db()
    assert not acme_public.icon
    assert client.get("/api/v1/integrations/label-printer/").json()["icon_url"] is None


@pytest.mark.parametrize("upload, reason", [
    (lambda: factories.png_upload(400, 300), "square"),
    (lambda: factories.png_upload(100), "400"),
    (lambda: factories.png_upload(400, fmt="JPEG", name="icon.jpg"), "PNG"),
    (lambda: factories.upload("icon.png", b"not an image"), "not an image"),
])
def test_a_refused_icon_answers_400_with_the_reason_on_file(api, publisher, acme_public, upload, reason):
    response = api(publisher).put("/api/v1/integrations/label-printer/icon/", {"file": upload()}, format="multipart")
    assert response.status_code == 400
    error = response.json()["error"]
    assert list(error["fields"]) == ["file"] and reason in error["fields"]["file"][0]
    acme_public.refresh_from_db()
    assert not acme_public.icon


def test_icon_needs_a_file_and_a_publisher(api, publisher, member, outsider, acme_public, acme_private):
    response = api(publisher).put("/api/v1/integrations/label-printer/icon/", {}, format="multipart")
    assert response.status_code == 400 and "file" in response.json()["error"]["fields"]
    upload = factories.png_upload
    assert api(member).put("/api/v1/integrations/label-printer/icon/", {"file": upload()},
                           format="multipart").status_code == 403
    assert api(member).delete("/api/v1/integrations/label-printer/icon/").status_code == 403
    assert api(outsider).put("/api/v1/integrations/acme-erp/icon/", {"file": upload()},
                             format="multipart").status_code == 404
    acme_public.refresh_from_db()
    acme_private.refresh_from_db()
    assert not acme_public.icon and not acme_private.icon


def test_the_schema_documents_the_catalog_requests_and_answers():
    import io

    import yaml
    from django.core.management import call_command

    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = yaml.safe_load(out.getvalue())
    paths, components = schema["paths"], schema["components"]["schemas"]
    integration = components["Integration"]["properties"]
    assert {"slug", "name", "summary", "description", "category", "visibility", "organization"} <= set(integration)
    assert components["VisibilityEnum"]["enum"] == ["public", "private"]
    assert integration["category"]["nullable"] and integration["latest_version"]["nullable"]
    assert set(paths["/api/v1/integrations/"]["post"]["responses"]) >= {"201", "400", "401", "403"}
    assert set(paths["/api/v1/integrations/{slug}/"]["delete"]["responses"]) >= {"204", "403", "404"}
    icon = paths["/api/v1/integrations/{slug}/icon/"]["put"]["requestBody"]["content"]
    assert list(icon) == ["multipart/form-data"]
    assert "201" in paths["/api/v1/integrations/{slug}/fork/"]["post"]["responses"]
    assert "409" in paths["/api/v1/api-schemas/{id}/"]["delete"]["responses"]
    assert {p["name"] for p in paths["/api/v1/integrations/"]["get"]["parameters"]} >= {
        "search", "category", "organization", "ordering", "page", "page_size"}
    assert "security" not in paths["/api/v1/categories/"]["get"] or {} in paths["/api/v1/categories/"]["get"]["security"]
