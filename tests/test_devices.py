"""The Device model's rules: a SQLite device names a file in its own organization's device
folder, and every front door (model validation, the console) refuses anything else; an
HTTP device has a plain http(s) base URL."""
from __future__ import annotations

import sqlite3

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from marketplace.choices import ResourceKind
from marketplace.models import Device
from marketplace.validators import sqlite_device_folder

from .admin_forms import change_form_data


@pytest.fixture
def acme_erp(acme):
    """Acme's ERP file, in Acme's device folder."""
    path = sqlite_device_folder(acme.pk) / "erp.sqlite3"
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    return path


def sql_device(organization, dsn: str) -> Device:
    return Device(organization=organization, name="ERP", kind=ResourceKind.SQL, dsn=dsn)


def dsn_error(device: Device) -> str:
    with pytest.raises(ValidationError) as caught:
        device.full_clean()
    return " ".join(caught.value.message_dict["dsn"])


def test_a_device_cannot_name_another_organizations_file(globex, acme_erp):
    message = dsn_error(sql_device(globex, f"sqlite:///{acme_erp}"))

    assert str(sqlite_device_folder(globex.pk).resolve()) in message
    assert "device folder" in message


@pytest.mark.parametrize("path", [
    "../{acme}/erp.sqlite3",                 # up and over into a neighbour's folder
    "sub/../../{acme}/erp.sqlite3",
    "{root}/{globex}/../{acme}/erp.sqlite3",  # absolute, through the own folder
    "/etc/passwd",
    "",                                       # the folder itself
])
def test_paths_that_leave_the_folder_are_refused(globex, acme, acme_erp, path):
    root = sqlite_device_folder(globex.pk).parent
    dsn = "sqlite:///" + path.format(acme=acme.pk, globex=globex.pk, root=root)
    assert "device folder" in dsn_error(sql_device(globex, dsn))


def test_a_symlink_out_of_the_folder_is_refused(globex, acme_erp):
    folder = sqlite_device_folder(globex.pk)
    folder.mkdir(parents=True)
    (folder / "erp.sqlite3").symlink_to(acme_erp)

    assert "device folder" in dsn_error(sql_device(globex, "sqlite:///erp.sqlite3"))


def test_the_platforms_data_folder_is_refused(globex, settings):
    demo_file = settings.DATA_DIR / "demo" / "erp.sqlite3"
    assert "device folder" in dsn_error(sql_device(globex, f"sqlite:///{demo_file}"))


@pytest.mark.parametrize("path", ["erp.sqlite3", "plant 1/erp.sqlite3", "{folder}/erp.sqlite3"])
def test_files_in_the_own_folder_are_accepted(globex, path):
    folder = sqlite_device_folder(globex.pk)
    sql_device(globex, "sqlite:///" + path.format(folder=folder)).full_clean()


def test_postgresql_dsns_are_not_paths(globex):
    sql_device(globex, "postgresql://svc:pw@db.example/erp").full_clean()


def test_a_dsn_needs_a_known_scheme(globex):
    assert "must start with" in dsn_error(sql_device(globex, "mysql://db/erp"))


@pytest.mark.parametrize("dsn", ["sqlite:///erp\x00.sqlite3", "postgresql://db/erp\x00"])
def test_a_dsn_with_a_nul_character_is_refused(globex, dsn):
    assert "NUL" in dsn_error(sql_device(globex, dsn))


def test_the_console_refuses_another_organizations_file(client, outsider, globex, acme_erp):
    client.force_login(outsider)
    page = client.get(reverse("admin:marketplace_device_add"))

    response = client.post(reverse("admin:marketplace_device_add"), change_form_data(
        page, organization=globex.pk, name="Stolen ERP", kind="sql", dsn=f"sqlite:///{acme_erp}"))

    assert response.status_code == 200
    assert "device folder" in str(response.context["adminform"].form.errors["dsn"])
    assert not Device.objects.filter(name="Stolen ERP").exists()


@pytest.mark.parametrize("url, message", [
    ("ftp://files.example/", "http:// or https://"),
    ("http://svc:hunter2@printer.example/", "put them in the credentials"),
])
def test_an_http_device_needs_a_plain_http_base_url(globex, url, message):
    device = Device(organization=globex, name="Printer", kind=ResourceKind.HTTP, base_url=url)
    with pytest.raises(ValidationError) as caught:
        device.full_clean()
    assert message in " ".join(caught.value.message_dict["base_url"])


def test_an_http_device_with_a_base_path_is_accepted(globex):
    Device(organization=globex, name="Printer", kind=ResourceKind.HTTP, base_url="https://printer.example:8443/api/v1/").full_clean()
