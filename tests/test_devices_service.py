"""services.devices: creating, editing and deleting devices. Any member of the device's
organization manages its devices (they are the customer's side, docs/access.md); another
organization's device is not found. Secrets are write-only, a masked DSN keeps its
password, Device.clean() speaks for every front door, and a bound device is not deleted."""
from __future__ import annotations

import pytest
from django.urls import reverse

from marketplace.choices import ResourceKind, Role
from marketplace.exceptions import Conflict, InvalidInput, NotFound, PermissionDenied
from marketplace.models import Device
from marketplace.services.devices import create_device, delete_device, update_device
from marketplace.validators import SECRET_MASK

from . import factories
from .admin_forms import change_form_data

DSN = "postgresql://svc:hunter2@db.example:5432/sales?sslmode=require"


@pytest.fixture
def owner(acme):
    user = factories.make_user("olga", staff=True)
    factories.add_member(user, acme, Role.OWNER)
    return user


@pytest.fixture
def printer(acme):
    return factories.make_device(acme, name="Printer", credentials={"token": "old"}, headers={"X-Key": "h"})


def bound_to(device, organization, *names):
    """Install one instance per name with ``device`` bound to its HTTP alias."""
    version = factories.make_published(factories.make_integration(organization))
    erp = factories.make_device(organization, ResourceKind.SQL)
    for name in names:
        factories.make_instance(version, organization, name=name, bindings={"my-printer": device, "erp": erp})


# --- who may ---------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["owner", "publisher", "member"])
def test_the_organizations_people_create_edit_and_delete_its_devices(request, acme, persona):
    user = request.getfixturevalue(persona)

    device = create_device(organization=acme, name="Printer", kind="http", base_url="http://printer.example/",
                           user=user)
    device = update_device(device=device, name="Label printer", user=user)
    assert Device.objects.get(pk=device.pk).name == "Label printer"

    delete_device(device=device, user=user)
    assert not Device.objects.filter(pk=device.pk).exists()


def test_an_outsider_neither_creates_nor_finds_another_organizations_devices(acme, outsider, printer):
    with pytest.raises(PermissionDenied):
        create_device(organization=acme, name="Mine", kind="http", base_url="http://printer.example/", user=outsider)
    with pytest.raises(NotFound):
        update_device(device=printer, name="Taken over", user=outsider)
    with pytest.raises(NotFound):
        delete_device(device=printer, user=outsider)
    assert Device.objects.get(pk=printer.pk).name == "Printer"
    assert not Device.objects.filter(name="Mine").exists()


# --- validation, keyed by field ----------------------------------------------------------------


def test_a_name_is_unique_within_the_organization(acme, globex, publisher, outsider, printer):
    with pytest.raises(InvalidInput) as caught:
        create_device(organization=acme, name="Printer", kind="http", base_url="http://printer.example/",
                      user=publisher)
    assert caught.value.errors == {"name": [f"{acme} already has a device named 'Printer'"]}
    # Another organization may use it.
    create_device(organization=globex, name="Printer", kind="http", base_url="http://printer.example/", user=outsider)


def test_the_models_rules_speak_through_the_service(acme, publisher, printer):
    """Device.clean() (egress, SQLite confinement) gives the same messages as in the console."""
    with pytest.raises(InvalidInput) as caught:
        create_device(organization=acme, name="Metadata", kind="http", base_url="http://169.254.169.254/latest/",
                      user=publisher)
    assert "closed to devices" in " ".join(caught.value.errors["base_url"])

    with pytest.raises(InvalidInput) as caught:
        update_device(device=printer, kind="sql", dsn="sqlite:////etc/passwd", user=publisher)
    assert "device folder" in " ".join(caught.value.errors["dsn"])

    with pytest.raises(InvalidInput) as caught:
        create_device(organization=acme, name="No URL", kind="http", user=publisher)
    assert caught.value.errors == {"base_url": ["an HTTP device needs a base URL"]}

    assert Device.objects.get(pk=printer.pk).kind == "http"


def test_a_sqlite_device_in_the_organizations_folder_is_accepted(acme, publisher):
    device = create_device(organization=acme, name="ERP", kind="sql", dsn="sqlite:///erp.sqlite3", user=publisher)
    assert Device.objects.get(pk=device.pk).dsn == "sqlite:///erp.sqlite3"


# --- write-only secrets ------------------------------------------------------------------------


def test_secrets_are_kept_replaced_or_cleared(printer, publisher):
    update_device(device=printer, name="Printer 2", user=publisher)
    stored = Device.objects.get(pk=printer.pk)
    assert (stored.credentials, stored.headers) == ({"token": "old"}, {"X-Key": "h"})

    update_device(device=printer, credentials={"token": "new"}, headers={}, user=publisher)
    stored = Device.objects.get(pk=printer.pk)
    assert (stored.credentials, stored.headers) == ({"token": "new"}, {})


def test_secrets_must_be_json_objects(printer, publisher):
    with pytest.raises(InvalidInput) as caught:
        update_device(device=printer, credentials=["token"], user=publisher)
    assert list(caught.value.errors) == ["credentials"]
    assert Device.objects.get(pk=printer.pk).credentials == {"token": "old"}


def test_a_dsn_sent_back_masked_keeps_its_password_for_the_same_server_only(acme, publisher):
    device = factories.make_device(acme, "sql", name="Sales", dsn=DSN)

    update_device(device=device, dsn=f"postgresql://svc:{SECRET_MASK}@db.example:5432/sales", user=publisher)
    assert Device.objects.get(pk=device.pk).dsn == "postgresql://svc:hunter2@db.example:5432/sales"

    with pytest.raises(InvalidInput) as caught:
        update_device(device=device, dsn=f"postgresql://svc:{SECRET_MASK}@elsewhere.example:5432/sales",
                      user=publisher)
    assert "the server changed" in caught.value.errors["dsn"][0]
    assert Device.objects.get(pk=device.pk).dsn == "postgresql://svc:hunter2@db.example:5432/sales"


# --- bound devices -----------------------------------------------------------------------------


def test_a_bound_device_is_not_deleted_and_the_instances_are_named(acme, publisher, printer):
    bound_to(printer, acme, "Plant 2", "Plant 1")

    with pytest.raises(Conflict) as caught:
        delete_device(device=printer, user=publisher)

    message = caught.value.errors["__all__"][0]
    assert "bound to 2 instances (Plant 1, Plant 2)" in message
    assert caught.value.status_code == 409
    assert Device.objects.filter(pk=printer.pk).exists()


def test_a_bound_device_stays_in_its_organization(acme, globex, admin_user, printer):
    bound_to(printer, acme, "Plant 1")
    with pytest.raises(Conflict) as caught:
        update_device(device=printer, organization=globex, user=admin_user)
    assert "(Plant 1)" in caught.value.errors["organization"][0]
    assert Device.objects.get(pk=printer.pk).organization == acme


# --- the console calls the same service ----------------------------------------------------


@pytest.fixture
def console(client, publisher):
    client.force_login(publisher)
    return client


def test_the_console_refuses_to_delete_a_bound_device_and_names_the_instances(console, acme, printer):
    bound_to(printer, acme, "Plant 1")
    url = reverse("admin:marketplace_device_delete", args=[printer.pk])

    response = console.post(url, {"post": "yes"}, follow=True)

    assert response.redirect_chain[-1][0] == reverse("admin:marketplace_device_change", args=[printer.pk])
    texts = [str(m) for m in response.context["messages"]]
    assert any("bound to 1 instance (Plant 1)" in text for text in texts), texts
    assert Device.objects.filter(pk=printer.pk).exists()


def test_the_consoles_bulk_delete_keeps_bound_devices_and_deletes_the_rest(console, acme, printer):
    spare = factories.make_device(acme, name="Spare")
    bound_to(printer, acme, "Plant 1")

    response = console.post(reverse("admin:marketplace_device_changelist"), {
        "action": "delete_selected", "_selected_action": [printer.pk, spare.pk], "post": "yes",
    }, follow=True)

    texts = [str(m) for m in response.context["messages"]]
    assert any(text.startswith("Printer (http): ") and "(Plant 1)" in text for text in texts), texts
    assert list(Device.objects.filter(pk__in=[printer.pk, spare.pk])) == [printer]


def test_the_console_deletes_an_unbound_device(console, printer):
    response = console.post(reverse("admin:marketplace_device_delete", args=[printer.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Device.objects.filter(pk=printer.pk).exists()


def test_the_console_creates_devices_through_the_service(console, acme, printer):
    page = console.get(reverse("admin:marketplace_device_add"))

    response = console.post(reverse("admin:marketplace_device_add"), change_form_data(
        page, organization=acme.pk, name="Scanner", kind="http", base_url="http://scanner.example/",
        new_credentials='{"token": "t"}'))

    assert response.status_code == 302
    assert Device.objects.get(organization=acme, name="Scanner").credentials == {"token": "t"}
