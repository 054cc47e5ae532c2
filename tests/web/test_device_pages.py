"""The devices pages: list, add (fields by kind), edit (secrets kept unless replaced),
delete (refused while bound, naming the instances), test connection; another
organization's device is a 404; constant queries on the list."""
from __future__ import annotations

import pytest
from django.test import Client

from marketplace.choices import ResourceKind
from marketplace.models import Device
from tests import factories


@pytest.fixture
def client(member):
    client = Client()
    client.force_login(member)
    return client


def test_add_an_http_device_with_write_only_secrets(client, acme):
    form = client.get("/devices/add/?kind=http").content.decode()
    assert 'name="base_url"' in form and 'name="dsn"' not in form and 'name="token"' in form
    response = client.post("/devices/add/", {
        "kind": "http", "name": "Printer", "base_url": "http://127.0.0.1:8001/api/", "token": "tok-secret-1",
        "headers": "X-Site: plant-1",
    })
    assert response.status_code == 302 and response["Location"] == "/devices/"
    device = Device.objects.get()
    assert (device.organization, device.kind, device.base_url) == (acme, "http", "http://127.0.0.1:8001/api/")
    assert device.credentials == {"token": "tok-secret-1"} and device.headers == {"X-Site": "plant-1"}
    listing = client.get("/devices/").content.decode()
    assert "Printer" in listing and "tok-secret-1" not in listing and "plant-1" not in listing


def test_a_sql_device_asks_for_a_dsn_and_the_services_refusal_lands_on_it(client):
    form = client.get("/devices/add/?kind=sql").content.decode()
    assert 'name="dsn"' in form and 'name="base_url"' not in form
    response = client.post("/devices/add/", {"kind": "sql", "name": "ERP", "dsn": "sqlite:///../elsewhere.db"})
    assert response.status_code == 400
    assert response.context["form"].errors["dsn"]
    assert not Device.objects.exists()


def test_edit_keeps_secrets_unless_replaced_and_never_shows_them(client, acme):
    device = factories.make_device(acme, ResourceKind.HTTP, name="Printer", credentials={"token": "old-token-x"},
                                   headers={"X-Key": "old-header-x"})
    page = client.get(f"/devices/{device.pk}/edit/").content.decode()
    assert "old-token-x" not in page and "old-header-x" not in page and "token" in page and "X-Key" in page
    client.post(f"/devices/{device.pk}/edit/", {"kind": "http", "name": "Printer 2", "base_url": device.base_url})
    device.refresh_from_db()
    assert device.name == "Printer 2" and device.credentials == {"token": "old-token-x"}
    assert device.headers == {"X-Key": "old-header-x"}
    client.post(f"/devices/{device.pk}/edit/", {"kind": "http", "name": "Printer 2", "base_url": device.base_url,
                                                "token": "new-token-y", "clear_headers": "on"})
    device.refresh_from_db()
    assert device.credentials == {"token": "new-token-y"} and device.headers == {}


def test_a_dsn_password_stays_masked_and_kept(client, acme):
    device = Device.objects.create(organization=acme, kind="sql", name="Warehouse",
                                   dsn="postgresql://svc:db-pass-secret@10.1.2.3/erp")
    page = client.get(f"/devices/{device.pk}/edit/").content.decode()
    assert "db-pass-secret" not in page and "svc:********@10.1.2.3" in page
    client.post(f"/devices/{device.pk}/edit/", {"kind": "sql", "name": "Warehouse",
                                                "dsn": "postgresql://svc:********@10.1.2.3/erp"})
    device.refresh_from_db()
    assert device.dsn == "postgresql://svc:db-pass-secret@10.1.2.3/erp"


def test_delete_is_refused_while_bound_naming_the_instances(client, acme):
    version = factories.make_published()
    instance = factories.make_instance(version, acme, name="Plant 1 printers")
    bound = instance.bindings.get(alias="my-printer").device
    response = client.post(f"/devices/{bound.pk}/delete/", follow=True)
    assert "Plant 1 printers" in response.content.decode()
    assert Device.objects.filter(pk=bound.pk).exists()
    free = factories.make_device(acme, ResourceKind.HTTP)
    assert "Delete device" in client.get(f"/devices/{free.pk}/delete/").content.decode()
    client.post(f"/devices/{free.pk}/delete/")
    assert not Device.objects.filter(pk=free.pk).exists()


def test_test_connection_reports_and_comes_back(client, acme, device_server):
    device = factories.make_device(acme, ResourceKind.HTTP, name="Printer", base_url=device_server.url)
    response = client.post(f"/devices/{device.pk}/test/", {"next": "/devices/"}, follow=True)
    assert "Printer: connection works (the device answered HTTP 200)." in response.content.decode()
    device_server.status = 500
    response = client.post(f"/devices/{device.pk}/test/", follow=True)
    assert "Printer: connection failed (the device answered HTTP 500)." in response.content.decode()
    # ``next`` only leads back to this site.
    response = client.post(f"/devices/{device.pk}/test/", {"next": "https://evil.example/"})
    assert response["Location"] == "/devices/"


def test_another_organizations_device_is_a_404(client, globex):
    device = factories.make_device(globex, ResourceKind.HTTP, name="Globex printer")
    for path in ("edit", "delete", "test"):
        assert client.get(f"/devices/{device.pk}/{path}/").status_code in (404, 405)
        assert client.post(f"/devices/{device.pk}/{path}/").status_code == 404
    assert "Globex printer" not in client.get("/devices/").content.decode()
    assert Device.objects.filter(pk=device.pk).exists()


def test_list_queries_do_not_grow_with_devices(client, acme, django_assert_num_queries):
    version = factories.make_published()
    factories.make_instance(version, acme)
    # session, user, organizations (the page's and the navigation's), devices, their bindings with instances
    with django_assert_num_queries(6):
        assert client.get("/devices/").status_code == 200
    for _ in range(5):
        factories.make_instance(version, acme)
        factories.make_device(acme, ResourceKind.HTTP)
    with django_assert_num_queries(6):
        page = client.get("/devices/")
    assert page.content.decode().count("Test connection of") == Device.objects.count() == 17


def test_adding_a_device_from_the_wizard_comes_back_to_it(client):
    wizard = "/integrations/printer-sync/install/?version=1"
    page = client.get("/devices/add/", {"next": wizard}).content.decode()
    assert "?kind=http&amp;next=/integrations/printer-sync/install/%3Fversion%3D1" in page  # choose the kind first
    response = client.post("/devices/add/", {"kind": "http", "name": "Printer", "base_url": "http://127.0.0.1:8001/",
                                             "next": wizard})
    assert response.status_code == 302 and response["Location"] == wizard


def test_a_member_of_several_organizations_picks_the_devices_organization(client, member, globex):
    factories.add_member(member, globex, "member")
    form = client.get("/devices/add/?kind=http").content.decode()
    assert 'name="organization"' in form
    client.post("/devices/add/", {"kind": "http", "organization": globex.slug, "name": "Printer",
                                  "base_url": "http://127.0.0.1:8001/"})
    assert Device.objects.get().organization == globex
    assert "<th scope=\"col\">Organization</th>" in client.get("/devices/").content.decode()
