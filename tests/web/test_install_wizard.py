"""The install wizard's page: fields from configSchema, refusals of the install service
on the field they name, nothing written on a refusal, a failed install handler's message,
404 walls, and a constant number of queries."""
from __future__ import annotations

import pytest
from django.test import Client

from marketplace.choices import InstanceState, ResourceKind, Visibility
from marketplace.models import Instance, ResourceBinding
from tests import factories
from tests.runtime.helpers import PERMISSIONS, make_runtime_version


@pytest.fixture
def client_of():
    def client_of(user):
        client = Client()
        client.force_login(user)
        return client
    return client_of


@pytest.fixture
def version(acme):
    return factories.make_published(factories.make_integration(acme, name="Printer sync", slug="printer-sync"))


@pytest.fixture
def devices(acme):
    return factories.make_bindings(acme)


def url(version) -> str:
    return f"/integrations/{version.integration.slug}/install/?version={version.number}"


def post_data(devices, **changes):
    data = {"organization": "acme", "name": "Plant 1 printers", "config.site": "Plant 1",
            "config.apiKey": "s3cret-api-key", "config.interval": "7",
            "bindings.my-printer": str(devices["my-printer"].pk), "bindings.erp": str(devices["erp"].pk)}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_the_form_has_the_schemas_fields_and_the_organizations_devices(client_of, member, version, devices, globex):
    other = factories.make_device(globex, ResourceKind.HTTP, name="Globex printer")
    response = client_of(member).get(url(version))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="config.site"' in html and 'name="config.apiKey"' in html and 'type="password"' in html
    assert 'name="config.interval"' in html and 'value="5"' in html  # the schema's default
    assert devices["my-printer"].name in html and devices["erp"].name in html
    assert other.name not in html
    assert "Test connection" in html
    # "Add a device" asks for one of the resource's kind and comes back here.
    assert '/devices/add/?kind=sql&amp;next=/integrations/printer-sync/install/%3Fversion%3D1">Add a device' in html


def test_install_writes_the_instance_and_lands_on_its_page(client_of, member, version, devices):
    response = client_of(member).post(url(version), post_data(devices))
    instance = Instance.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/instances/{instance.pk}/"
    assert instance.name == "Plant 1 printers" and instance.state == InstanceState.ACTIVE
    assert instance.config == {"site": "Plant 1", "interval": 7}
    assert instance.secret_config == {"apiKey": "s3cret-api-key"}
    assert {b.alias: b.device_id for b in instance.bindings.all()} == {
        "my-printer": devices["my-printer"].pk, "erp": devices["erp"].pk}


def test_schema_errors_land_on_their_fields_and_nothing_is_written(client_of, member, version, devices):
    response = client_of(member).post(url(version), post_data(devices, **{"config.site": None, "config.interval": "0",
                                                                           "config.apiKey": "typed-secret"}))
    assert response.status_code == 400
    form = response.context["form"]
    assert form.errors["config.site"] == ["this field is required"]
    assert "less than the minimum" in form.errors["config.interval"][0]
    assert "typed-secret" not in response.content.decode()  # never echoed back
    assert not Instance.objects.exists() and not ResourceBinding.objects.exists()


def test_a_value_that_is_not_its_type_is_refused_on_its_field(client_of, member, version, devices):
    response = client_of(member).post(url(version), post_data(devices, **{"config.interval": "often"}))
    assert response.status_code == 400
    assert response.context["form"].errors["config.interval"] == ["'often' is not a whole number"]
    assert not Instance.objects.exists()


def test_a_missing_or_foreign_binding_lands_on_its_picker(client_of, member, version, devices, globex):
    foreign = factories.make_device(globex, ResourceKind.SQL)
    response = client_of(member).post(url(version), post_data(devices, **{"bindings.my-printer": "",
                                                                           "bindings.erp": str(foreign.pk)}))
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert "must be bound to a http device" in errors["bindings.my-printer"][0]
    assert errors["bindings.erp"] == [f"device {foreign.pk} is not a device of Acme"]
    assert not Instance.objects.exists()


def test_a_taken_name_lands_on_the_name_field(client_of, member, version, devices, acme):
    factories.make_instance(version, acme, name="Plant 1 printers")
    response = client_of(member).post(url(version), post_data(devices))
    assert response.status_code == 400
    assert "already has an instance named" in response.context["form"].errors["name"][0]
    assert Instance.objects.count() == 1


def test_a_failing_install_handler_is_shown_and_nothing_is_left_bound(client_of, member, acme):
    version = make_runtime_version(
        {"setup": {"type": "lifecycle", "on": "install", "file": "main.lua", "function": "setup"}},
        {"main.lua": 'function setup(ctx, input) error("the printer refused the credentials") end\n'},
        integration=factories.make_integration(acme, slug="picky"), permissions=PERMISSIONS,
    )
    response = client_of(member).post(url(version), {"organization": "acme", "name": "Picky"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Nothing was installed" in html and "the printer refused the credentials" in html
    instance = Instance.objects.get()
    assert instance.state == InstanceState.FAILED and not instance.bindings.exists()


def test_walls(client_of, member, outsider, version, globex):
    private = factories.make_published(factories.make_integration(globex, slug="globex-only",
                                                                  visibility=Visibility.PRIVATE))
    assert client_of(member).get(url(private)).status_code == 404
    unavailable = factories.make_published(version.integration, available=False)
    assert client_of(member).get(url(unavailable)).status_code == 404
    assert client_of(member).get(f"/integrations/{version.integration.slug}/install/?version=99").status_code == 404
    anonymous = Client().get(url(version))
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]


def test_queries_do_not_grow_with_the_organizations_devices(client_of, member, version, acme,
                                                            django_assert_num_queries):
    client, path = client_of(member), url(version)
    factories.make_bindings(acme)
    # session, user, integration, version, organizations, devices, the navigation's organizations
    with django_assert_num_queries(7):
        assert client.get(path).status_code == 200
    for _ in range(20):
        factories.make_bindings(acme)
    with django_assert_num_queries(7):
        assert client.get(path).status_code == 200


def test_test_connection_keeps_the_page_and_installs_nothing(client_of, member, version, acme, device_server):
    printer = factories.make_device(acme, ResourceKind.HTTP, name="Front printer", base_url=device_server.url)
    erp = factories.make_device(acme, ResourceKind.SQL)
    data = post_data({"my-printer": printer, "erp": erp}, test="my-printer")
    response = client_of(member).post(url(version), data)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Front printer: connection works (the device answered HTTP 200)" in html
    assert 'value="Plant 1"' in html and "s3cret-api-key" not in html
    assert [r["method"] for r in device_server.requests] == ["HEAD"]
    assert not Instance.objects.exists()


def test_a_member_of_several_organizations_chooses_one_first(client_of, member, version, globex):
    factories.add_member(member, globex, "member")
    globex_printer = factories.make_device(globex, ResourceKind.HTTP, name="Globex printer")
    client = client_of(member)
    chooser = client.get(url(version)).content.decode()
    assert "For which organization?" in chooser and f"organization={globex.slug}" in chooser
    page = client.get(url(version) + f"&organization={globex.slug}").content.decode()
    assert "for Globex" in page and "Globex printer" in page
    erp = factories.make_device(globex, ResourceKind.SQL)
    response = client.post(url(version), {
        "organization": globex.slug, "config.site": "G", "config.apiKey": "k",
        "bindings.my-printer": str(globex_printer.pk), "bindings.erp": str(erp.pk),
    })
    assert response.status_code == 302
    assert Instance.objects.get().organization == globex


def test_config_and_binding_errors_are_shown_together(client_of, member, version, devices):
    response = client_of(member).post(url(version), post_data(devices, **{"config.site": None, "bindings.erp": ""}))
    errors = response.context["form"].errors
    assert errors["config.site"] == ["this field is required"]
    assert errors["bindings.erp"] == ["resource 'erp' must be bound to a sql device"]
    assert not Instance.objects.exists()
