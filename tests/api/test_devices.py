"""``/api/v1/devices/``: an organization's devices over HTTP. Credentials and headers are
write-only, DSN passwords masked; another organization's device is 404 on every method."""
from __future__ import annotations

import pytest

from marketplace.choices import ResourceKind, Role
from marketplace.models import Device

from .. import factories

pytestmark = pytest.mark.django_db

DEVICES = "/api/v1/devices/"


def url(device) -> str:
    return f"{DEVICES}{device.pk}/"


def test_create_an_http_device_keeps_its_credentials_and_never_returns_them(api, member, acme, secret):
    token = secret("tok-7f3a9-printer")
    header = secret("hdr-b7c1-value")
    response = api(member).post(DEVICES, {
        "name": "Main printer", "kind": "http", "base_url": "https://printer.example.com/api/",
        "credentials": {"token": token}, "headers": {"X-Key": header},
    }, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body == {"id": body["id"], "name": "Main printer", "kind": "http",
                    "base_url": "https://printer.example.com/api/", "dsn": "", "organization": acme.slug,
                    "created_at": body["created_at"]}
    device = Device.objects.get(pk=body["id"])
    assert (device.organization, device.credentials, device.headers) == (acme, {"token": token}, {"X-Key": header})


def test_a_sql_devices_password_is_masked_on_read_and_kept_when_sent_back_masked(api, member, acme, secret):
    password = secret("pw-Zq81-erp")
    client = api(member)
    created = client.post(DEVICES, {"name": "ERP", "kind": "sql", "dsn": f"postgresql://erp:{password}@10.0.0.5/erp"},
                          format="json")
    assert created.status_code == 201, created.json()
    masked = created.json()["dsn"]
    assert masked.startswith("postgresql://erp:") and masked.endswith("@10.0.0.5/erp")

    device = Device.objects.get(pk=created.json()["id"])
    assert client.get(url(device)).json()["dsn"] == masked
    changed = client.patch(url(device), {"dsn": masked + "2"}, format="json")
    assert changed.status_code == 200, changed.json()
    device.refresh_from_db()
    assert device.dsn == f"postgresql://erp:{password}@10.0.0.5/erp2"


def test_list_shows_the_callers_organizations_devices_only_in_a_stable_order(api, member, acme, globex):
    factories.make_device(acme, name="b-printer")
    factories.make_device(acme, name="a-printer")
    factories.make_device(globex, name="theirs")
    listed = api(member).get(DEVICES).json()
    assert [d["name"] for d in listed["results"]] == ["a-printer", "b-printer"]
    assert listed["count"] == 2
    assert all("credentials" not in d and "headers" not in d for d in listed["results"])


def test_patch_replaces_credentials_and_leaves_them_when_left_out(api, member, acme, secret):
    old, new = secret("old-cred-1x9"), secret("new-cred-2y8")
    device = factories.make_device(acme, credentials={"token": old})
    client = api(member)
    assert client.patch(url(device), {"name": "Renamed"}, format="json").status_code == 200
    device.refresh_from_db()
    assert (device.name, device.credentials) == ("Renamed", {"token": old})
    assert client.patch(url(device), {"credentials": {"token": new}}, format="json").status_code == 200
    device.refresh_from_db()
    assert device.credentials == {"token": new}


@pytest.mark.parametrize("body, field", [
    ({"name": "x", "kind": "http"}, "base_url"),
    ({"name": "x", "kind": "sql"}, "dsn"),
    ({"name": "x", "kind": "ftp", "base_url": "https://a.example.com/"}, "kind"),
    ({"kind": "http", "base_url": "https://a.example.com/"}, "name"),
    ({"name": "x", "kind": "http", "base_url": "https://a.example.com/", "credentials": ["a"]}, "credentials"),
    ({"name": "x", "kind": "http", "base_url": "ftp://a.example.com/"}, "base_url"),
    ({"name": "x", "kind": "sql", "dsn": "sqlite:////etc/passwd"}, "dsn"),
])
def test_bad_input_is_400_with_the_field_and_writes_nothing(api, member, body, field):
    response = api(member).post(DEVICES, body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert not Device.objects.exists()


def test_a_name_the_organization_uses_is_400_on_name(api, member, acme):
    factories.make_device(acme, name="Printer")
    response = api(member).post(DEVICES, {"name": "Printer", "kind": "http", "base_url": "https://a.example.com/"},
                                format="json")
    assert response.status_code == 400 and "name" in response.json()["error"]["fields"]
    assert Device.objects.count() == 1


def test_a_member_of_several_organizations_names_one_and_only_their_own(api, member, acme, globex):
    initech = factories.make_org("Initech")
    factories.add_member(member, initech, Role.MEMBER)
    body = {"name": "P", "kind": "http", "base_url": "https://a.example.com/"}
    client = api(member)
    assert client.post(DEVICES, body, format="json").json()["error"]["fields"] == {
        "organization": ["you belong to several organizations: name one by its slug"]}
    assert client.post(DEVICES, {**body, "organization": globex.slug}, format="json").status_code == 404
    created = client.post(DEVICES, {**body, "organization": initech.slug}, format="json")
    assert created.status_code == 201 and created.json()["organization"] == initech.slug
    assert not Device.objects.filter(organization=globex).exists()


def test_delete_a_free_device_and_refuse_a_bound_one_naming_its_instances(api, member, acme):
    free = factories.make_device(acme)
    bindings = factories.make_bindings(acme)
    factories.make_instance(organization=acme, name="Plant printers", bindings=bindings)
    client = api(member)

    assert client.delete(url(free)).status_code == 204
    assert not Device.objects.filter(pk=free.pk).exists()
    refused = client.delete(url(bindings["erp"]))
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "conflict" and "Plant printers" in refused.json()["error"]["message"]
    assert Device.objects.filter(pk=bindings["erp"].pk).exists()


def test_another_organizations_device_is_404_on_every_method(api, outsider, acme, secret):
    device = factories.make_device(acme, kind=ResourceKind.SQL, dsn=f"postgresql://u:{secret('pw-x81')}@h/db",
                                   credentials={"t": secret("cred-x82")})
    client = api(outsider)
    assert client.get(url(device)).status_code == 404
    assert client.patch(url(device), {"name": "mine"}, format="json").status_code == 404
    assert client.delete(url(device)).status_code == 404
    assert client.get(DEVICES).json()["count"] == 0
    assert client.get(f"{DEVICES}999999/").status_code == 404
    device.refresh_from_db()
    assert device.name != "mine"


def test_an_integrations_publisher_does_not_see_its_customers_devices(api, outsider, acme):
    version = factories.make_published(factories.make_integration(outsider.memberships.get().organization))
    instance = factories.make_instance(version, acme)
    device = instance.bindings.first().device
    client = api(outsider)
    assert client.get(url(device)).status_code == 404
    assert client.get(DEVICES).json()["count"] == 0


def test_anonymous_callers_get_401(anon, acme):
    device = factories.make_device(acme)
    assert anon.get(DEVICES).status_code == 401
    assert anon.get(url(device)).status_code == 401
    assert anon.post(DEVICES, {}, format="json").status_code == 401


@pytest.mark.parametrize("rows", [3, 30])
def test_the_list_runs_a_fixed_number_of_queries(api, member, acme, rows, django_assert_max_num_queries):
    for n in range(rows):
        factories.make_device(acme, name=f"device {n:02}")
    client = api(member)
    # token lookup + last-used stamp, count, page
    with django_assert_max_num_queries(5):
        response = client.get(DEVICES, {"page_size": 50})
    assert len(response.json()["results"]) == rows


def test_moving_a_bound_device_to_another_organization_is_409(api, member, acme):
    initech = factories.make_org("Initech")
    factories.add_member(member, initech, Role.MEMBER)
    bindings = factories.make_bindings(acme)
    factories.make_instance(organization=acme, name="Plant printers", bindings=bindings)
    free = factories.make_device(acme)
    client = api(member)
    refused = client.patch(url(bindings["erp"]), {"organization": initech.slug}, format="json")
    assert refused.status_code == 409 and "Plant printers" in refused.json()["error"]["message"]
    moved = client.patch(url(free), {"organization": initech.slug}, format="json")
    assert moved.status_code == 200 and moved.json()["organization"] == initech.slug


def test_the_list_filters_by_kind_and_organization(api, member, acme):
    factories.make_device(acme, ResourceKind.HTTP, name="h")
    factories.make_device(acme, ResourceKind.SQL, name="s")
    client = api(member)
    assert [d["name"] for d in client.get(DEVICES, {"kind": "sql"}).json()["results"]] == ["s"]
    assert client.get(DEVICES, {"organization": "nowhere"}).json()["count"] == 0


def test_the_schema_takes_secrets_in_requests_and_never_shows_them_in_responses():
    from drf_spectacular.generators import SchemaGenerator

    components = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    assert {"credentials", "headers"} <= set(components["DeviceWriteRequest"]["properties"])
    assert not {"credentials", "headers"} & set(components["Device"]["properties"])
    assert components["Instance"]["properties"]["config"]["nullable"] is True
