"""``/api/v1/integrations/{slug}/attachments/``: seen with their integration (anonymous
callers: a public one's), downloaded through the access-checked view, added and removed by
the integration's publishers through ``services.media``."""
from __future__ import annotations

import os

import pytest

from marketplace.choices import Visibility
from marketplace.models import Attachment

from .. import factories


@pytest.fixture
def public(acme):
    return factories.make_integration(acme, name="Label printer", slug="label-printer")


@pytest.fixture
def private(acme):
    return factories.make_integration(acme, name="Acme ERP", slug="acme-erp", visibility=Visibility.PRIVATE)


def download(client, url: str):
    response = client.get(url)
    return response.status_code, b"".join(response.streaming_content) if response.status_code == 200 else b""


def test_anonymous_callers_list_and_download_a_public_integrations_attachments(anon, public):
    attachment = factories.make_attachment(public, title="Manual")
    response = anon.get("/api/v1/integrations/label-printer/attachments/")
    assert response.status_code == 200
    [row] = response.json()["results"]
    assert row == {
        "id": attachment.pk, "title": "Manual", "filename": "manual.pdf", "content_type": "application/pdf",
        "size": len(factories.pdf_bytes()), "uploaded_at": row["uploaded_at"],
        "download_url": f"http://testserver/attachments/{attachment.pk}/download/",
    }
    assert anon.get(f"/api/v1/integrations/label-printer/attachments/{attachment.pk}/").json() == row
    assert download(anon, row["download_url"]) == (200, factories.pdf_bytes())


def test_a_private_integrations_attachments_are_its_organizations_only(api, anon, member, outsider, private):
    attachment = factories.make_attachment(private)
    base = "/api/v1/integrations/acme-erp/attachments/"
    listed = api(member).get(base).json()["results"]
    assert [row["id"] for row in listed] == [attachment.pk]
    assert download(api(member), listed[0]["download_url"])[0] == 200
    for client in (api(outsider), anon):
        assert client.get(base).status_code == 404
        assert client.get(f"{base}{attachment.pk}/").status_code == 404
        assert client.get(listed[0]["download_url"]).status_code == 404


def test_an_attachment_is_reached_under_its_own_integration_only(api, publisher, public, private):
    attachment = factories.make_attachment(private)
    assert api(publisher).get(f"/api/v1/integrations/label-printer/attachments/{attachment.pk}/").status_code == 404
    response = api(publisher).delete(f"/api/v1/integrations/label-printer/attachments/{attachment.pk}/")
    assert response.status_code == 404 and Attachment.objects.filter(pk=attachment.pk).exists()
    assert api(publisher).get("/api/v1/integrations/label-printer/attachments/nope/").status_code == 404


def test_a_publisher_adds_and_removes_an_attachment(api, publisher, public, django_capture_on_commit_callbacks):
    client = api(publisher)
    response = client.post("/api/v1/integrations/label-printer/attachments/", {
        "file": factories.upload("sheet.pdf", factories.pdf_bytes(), "application/pdf"), "title": "Data sheet",
    }, format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["title"] == "Data sheet" and body["filename"] == "sheet.pdf"
    attachment = Attachment.objects.get(pk=body["id"])
    assert attachment.integration == public and attachment.uploaded_by == publisher
    assert download(client, body["download_url"]) == (200, factories.pdf_bytes())
    untitled = client.post("/api/v1/integrations/label-printer/attachments/",
                           {"file": factories.upload("notes.txt", b"hello", "text/plain")}, format="multipart")
    assert untitled.status_code == 201 and untitled.json()["title"] == "notes.txt"
    path = attachment.file.path
    with django_capture_on_commit_callbacks(execute=True):
        response = client.delete(f"/api/v1/integrations/label-printer/attachments/{attachment.pk}/")
    assert response.status_code == 204
    assert not os.path.exists(path)
    assert not Attachment.objects.filter(pk=attachment.pk).exists()
    assert client.get(f"/api/v1/integrations/label-printer/attachments/{attachment.pk}/").status_code == 404


def test_refused_attachments_write_no_row_and_no_file(api, publisher, member, outsider, anon, public, private,
                                                      media_root):
    def post(client, slug, name="manual.pdf", data=None, **extra):
        return client.post(f"/api/v1/integrations/{slug}/attachments/",
                           {"file": factories.upload(name, data or factories.pdf_bytes()), **extra}, format="multipart")

    response = post(api(publisher), "label-printer", "setup.exe", b"MZ\x90\x00")
    assert response.status_code == 400 and ".exe" in response.json()["error"]["fields"]["file"][0]
    response = post(api(publisher), "label-printer", "page.html", b"<html></html>")
    assert response.status_code == 400 and "file" in response.json()["error"]["fields"]
    response = post(api(publisher), "label-printer", title="x" * 201)
    assert response.status_code == 400 and "title" in response.json()["error"]["fields"]
    response = api(publisher).post("/api/v1/integrations/label-printer/attachments/", {"title": "t"},
                                   format="multipart")
    assert response.status_code == 400 and "file" in response.json()["error"]["fields"]
    assert post(api(member), "label-printer").status_code == 403
    assert post(api(outsider), "label-printer").status_code == 403
    assert post(api(outsider), "acme-erp").status_code == 404
    assert post(anon, "label-printer").status_code == 401
    assert not Attachment.objects.exists()
    private_root = media_root / "private"
    assert not private_root.exists() or not any(p.is_file() for p in private_root.rglob("*"))


def test_only_publishers_remove_attachments(api, member, outsider, anon, public):
    attachment = factories.make_attachment(public)
    url = f"/api/v1/integrations/label-printer/attachments/{attachment.pk}/"
    assert api(member).delete(url).status_code == 403
    assert api(outsider).delete(url).status_code == 403
    assert anon.delete(url).status_code == 401
    assert Attachment.objects.filter(pk=attachment.pk).exists()


@pytest.mark.parametrize("rows", [3, 30])
def test_the_list_runs_a_fixed_number_of_queries(anon, public, django_assert_max_num_queries, rows):
    for n in range(rows):
        factories.make_attachment(public, name=f"doc-{n}.pdf")
    with django_assert_max_num_queries(3):  # integration, count, page
        response = anon.get("/api/v1/integrations/label-printer/attachments/", {"page_size": 200})
    assert len(response.json()["results"]) == rows
