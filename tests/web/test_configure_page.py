"""Reconfigure and rebind an instance: the install form prefilled from the instance,
secrets never sent back (kept when left empty, replaced when typed), bindings changed to
another device of the organization, the service's refusals on their fields with nothing
changed, 404 walls, and a constant number of queries."""
from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from marketplace.choices import ResourceKind
from marketplace.models import Instance
from tests import factories


@pytest.fixture
def client_of():
    def client_of(user):
        client = Client()
        client.force_login(user)
        return client
    return client_of


@pytest.fixture
def devices(acme):
    return factories.make_bindings(acme)


@pytest.fixture
def instance(acme, devices):
    version = factories.make_published(factories.make_integration(acme, name="Printer sync", slug="printer-sync"))
    return factories.make_instance(version, acme, name="Plant 1 printers",
                                   config={"site": "Plant 1", "apiKey": "s3cret-api-key", "interval": 7},
                                   bindings=devices)


def url(instance) -> str:
    return f"/instances/{instance.pk}/configure/"


def post_data(instance, devices, **changes):
    data = {"name": instance.name, "config.site": "Plant 1", "config.apiKey": "", "config.interval": "7",
            "bindings.my-printer": str(devices["my-printer"].pk), "bindings.erp": str(devices["erp"].pk)}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def state(instance) -> tuple:
    instance = Instance.objects.get(pk=instance.pk)
    return (instance.name, instance.config, instance.secret_config,
            {b.alias: b.device_id for b in instance.bindings.all()})


def test_the_form_is_prefilled_and_never_shows_the_secret(client_of, member, instance, devices):
    response = client_of(member).get(url(instance))
    html = response.content.decode()
    assert response.status_code == 200
    form = response.context["form"]
    assert form["name"].value() == "Plant 1 printers"
    assert form["config.site"].value() == "Plant 1" and form["config.interval"].value() == 7
    assert form["bindings.my-printer"].value() == str(devices["my-printer"].pk)
    assert form["bindings.erp"].value() == str(devices["erp"].pk)
    assert 'value="Plant 1"' in html and 'value="7"' in html
    assert f'<option value="{devices["erp"].pk}" selected>' in html
    assert 'name="config.apiKey"' in html and 's3cret-api-key' not in html
    assert form.fields["config.apiKey"].help_text == "A value is stored: leave empty to keep it."
    # Every control has its label.
    for name in ("name", "config.site", "config.apiKey", "config.interval", "bindings.my-printer", "bindings.erp"):
        assert f'for="id_{name}"' in html


def test_the_instance_page_links_here(client_of, member, instance):
    html = client_of(member).get(f"/instances/{instance.pk}/").content.decode()
    assert f'href="{url(instance)}"' in html
    assert f'href="{url(instance)}"' in client_of(member).get("/instances/").content.decode()


def test_a_secret_left_empty_is_kept(client_of, member, instance, devices):
    response = client_of(member).post(url(instance), post_data(instance, devices, **{"config.site": "Plant 2"}))
    assert response.status_code == 302 and response["Location"] == f"/instances/{instance.pk}/"
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["Plant 1 printers is saved."]
    name, config, secrets, _ = state(instance)
    assert config == {"site": "Plant 2", "interval": 7} and secrets == {"apiKey": "s3cret-api-key"}


def test_a_typed_secret_replaces_the_stored_one(client_of, member, instance, devices):
    response = client_of(member).post(url(instance), post_data(instance, devices, **{"config.apiKey": "new-key"}))
    assert response.status_code == 302
    assert state(instance)[2] == {"apiKey": "new-key"}


def test_rebinding_to_another_device_of_the_organization(client_of, member, instance, devices, acme):
    other = factories.make_device(acme, ResourceKind.HTTP, name="Back printer")
    response = client_of(member).post(url(instance), post_data(instance, devices, **{
        "bindings.my-printer": str(other.pk), "name": "Renamed"}))
    assert response.status_code == 302
    name, _, _, bindings = state(instance)
    assert name == "Renamed" and bindings == {"my-printer": other.pk, "erp": devices["erp"].pk}


def test_a_device_of_another_organization_is_refused_on_its_picker(client_of, member, instance, devices, globex):
    before = state(instance)
    foreign = factories.make_device(globex, ResourceKind.SQL, name="Globex ERP")
    response = client_of(member).post(url(instance), post_data(instance, devices, **{
        "bindings.erp": str(foreign.pk), "config.site": "Elsewhere", "config.apiKey": "typed-secret"}))
    assert response.status_code == 400
    assert response.context["form"].errors["bindings.erp"] == [f"device {foreign.pk} is not a device of Acme"]
    html = response.content.decode()
    assert "Nothing was changed" in html and "typed-secret" not in html and "Globex ERP" not in html
    assert state(instance) == before


def test_a_schema_error_lands_on_its_field_and_nothing_changes(client_of, member, instance, devices, acme):
    before = state(instance)
    other = factories.make_device(acme, ResourceKind.HTTP)
    response = client_of(member).post(url(instance), post_data(instance, devices, **{
        "config.interval": "0", "config.site": "Elsewhere", "bindings.my-printer": str(other.pk)}))
    assert response.status_code == 400
    assert "less than the minimum" in response.context["form"].errors["config.interval"][0]
    assert state(instance) == before


def test_a_value_that_is_not_its_type_and_an_empty_name(client_of, member, instance, devices):
    before = state(instance)
    response = client_of(member).post(url(instance), post_data(instance, devices, **{"config.interval": "often"}))
    assert response.context["form"].errors["config.interval"] == ["'often' is not a whole number"]
    response = client_of(member).post(url(instance), post_data(instance, devices, name=""))
    assert response.status_code == 400 and response.context["form"].errors["name"] == ["a name is required"]
    assert state(instance) == before


def test_walls(client_of, outsider, instance, devices, globex, acme):
    # Another organization's member (a staff publisher included) gets a 404, on GET and POST.
    assert client_of(outsider).get(url(instance)).status_code == 404
    assert client_of(outsider).post(url(instance), post_data(instance, devices, name="Taken")).status_code == 404
    assert state(instance)[0] == "Plant 1 printers"
    assert Client().get(url(instance)).status_code == 302  # to the login page
    assert client_of(outsider).get("/instances/999999/configure/").status_code == 404
    # A superuser outside Acme has the console, not this page (as on the instance page).
    root = factories.make_user("root", staff=True, superuser=True)
    assert client_of(root).get(url(instance)).status_code == 404
    assert client_of(root).get(f"/instances/{instance.pk}/").status_code == 404


def test_queries_do_not_grow_with_the_organizations_devices(client_of, member, instance, acme,
                                                            django_assert_num_queries):
    client, path = client_of(member), url(instance)
    # session, user, instance (with organization, version, integration), devices, bindings,
    # the navigation's organizations
    with django_assert_num_queries(6):
        assert client.get(path).status_code == 200
    for _ in range(20):
        factories.make_bindings(acme)
    with django_assert_num_queries(6):
        assert client.get(path).status_code == 200
