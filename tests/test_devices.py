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
from .conftest import requires_postgres


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


# --- where devices may connect (marketplace.egress) -----------------------------------------

def http_device(organization, url: str) -> Device:
    return Device(organization=organization, name="Printer", kind=ResourceKind.HTTP, base_url=url)


def base_url_error(device: Device) -> str:
    with pytest.raises(ValidationError) as caught:
        device.full_clean()
    return " ".join(caught.value.message_dict["base_url"])


@pytest.fixture
def production_network(settings):
    """Production's rule: loopback and private networks are the platform's own."""
    settings.JUNCTION_DEVICE_ALLOW_PRIVATE = False
    settings.JUNCTION_DEVICE_ALLOW_NETWORKS = []


@pytest.fixture
def broker_on_loopback(settings):
    """The platform's broker on this machine's loopback, as a Redis broker would be."""
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"


# Every way of writing this machine's loopback address that a resolver accepts.
LOOPBACK_SPELLINGS = ["localhost", "127.0.0.1", "127.1", "0x7f000001", "2130706433", "0177.0.0.1", "[::1]",
                      "[::ffff:127.0.0.1]", "api.localhost"]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS + ["10.0.0.5", "192.168.1.20", "[fd12::1]"])
def test_private_addresses_are_refused_when_private_networks_are_closed(globex, production_network, host):
    assert "private to the platform's network" in base_url_error(http_device(globex, f"http://{host}:8080/api/"))


@pytest.mark.parametrize("host", ["169.254.169.254", "[fe80::1]", "[::ffff:169.254.169.254]", "224.0.0.1",
                                  "0.0.0.0", "[fd00:ec2::254]"])
def test_metadata_and_other_closed_networks_are_refused_even_when_private_ones_are_open(globex, settings, host):
    settings.JUNCTION_DEVICE_ALLOW_PRIVATE = True
    message = base_url_error(http_device(globex, f"http://{host}/latest/meta-data/"))
    assert "closed to devices" in message or "not a device's address" in message


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS + ["0.0.0.0"])
def test_the_platforms_broker_is_refused_in_every_spelling(globex, settings, broker_on_loopback, host):
    settings.JUNCTION_DEVICE_ALLOW_PRIVATE = True  # development: loopback devices are fine, the broker is not
    message = base_url_error(http_device(globex, f"http://{host}:6379/"))
    assert "the platform's own broker and cannot be a device" in message or "not a device's address" in message
    # Another port of the same machine is a device like any other in development.
    http_device(globex, "http://127.0.0.1:8000/demo/printer/").full_clean()


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_a_postgresql_device_cannot_name_the_platforms_own_server(globex, settings, host):
    settings.JUNCTION_DEVICE_DENY_SERVICES = ["localhost:5432"]
    assert "the platform's own " in dsn_error(sql_device(globex, f"postgresql://svc:pw@{host}/junction"))  # database on PostgreSQL


def test_a_platform_service_is_refused_by_its_name_too(globex, settings):
    """Names are resolved only at run time, but the platform's own host names are known."""
    settings.JUNCTION_DEVICE_DENY_SERVICES = ["db.internal:5432"]
    assert "host DB.internal. is the platform's own service" in dsn_error(
        sql_device(globex, "postgresql://svc@DB.internal./erp"))
    sql_device(globex, "postgresql://svc@db.internal:6543/erp").full_clean()


@pytest.mark.parametrize("dsn, message", [
    ("postgresql:///junction", "Unix sockets are refused"),
    ("postgresql://%2Fvar%2Frun%2Fpostgresql/junction", "Unix sockets are refused"),
    ("postgresql://svc@erp.example/erp?host=/tmp", "Unix sockets are refused"),
    ("postgresql://svc@erp.example,db.example/erp", "several hosts"),
    ("postgresql://svc@erp.example/erp?hostaddr=127.0.0.1", "cannot set hostaddr"),
    ("postgresql://svc@erp.example/erp?service=platform", "cannot set service"),
])
def test_a_postgresql_dsn_names_one_server_by_host(globex, dsn, message):
    assert message in dsn_error(sql_device(globex, dsn))


@requires_postgres
def test_the_platforms_own_database_is_refused_as_a_device(globex, settings):
    from django.db import connection

    s = connection.settings_dict
    settings.JUNCTION_DEVICE_ALLOW_PRIVATE = True
    message = dsn_error(sql_device(globex, f"postgresql://{s['USER']}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/junction"))
    assert "the platform's own database and cannot be a device" in message


def test_public_addresses_and_names_are_accepted(globex, production_network):
    for url in ("https://printer.example:8443/api/", "http://93.184.215.14/", "http://[2606:4700::6810:84e5]/"):
        http_device(globex, url).full_clean()
    sql_device(globex, "postgresql://svc:pw@erp.example:5432/erp").full_clean()


def test_private_addresses_are_accepted_when_open_or_allow_listed(globex, settings):
    settings.JUNCTION_DEVICE_ALLOW_PRIVATE = True
    http_device(globex, "http://127.0.0.1:8000/demo/printer/").full_clean()
    settings.JUNCTION_DEVICE_ALLOW_PRIVATE = False
    settings.JUNCTION_DEVICE_ALLOW_NETWORKS = ["10.20.0.0/16"]
    http_device(globex, "http://10.20.3.4/").full_clean()
    sql_device(globex, "postgresql://svc@10.20.3.5/erp").full_clean()
    assert "private to the platform's network" in base_url_error(http_device(globex, "http://10.21.0.1/"))


def test_the_allow_list_does_not_open_the_platforms_own_services(globex, settings, broker_on_loopback):
    settings.JUNCTION_DEVICE_ALLOW_NETWORKS = ["127.0.0.0/8"]
    assert "the platform's own broker" in base_url_error(http_device(globex, "http://127.0.0.1:6379/"))


def test_the_console_refuses_a_device_at_the_metadata_address(client, outsider, globex):
    client.force_login(outsider)
    page = client.get(reverse("admin:marketplace_device_add"))

    response = client.post(reverse("admin:marketplace_device_add"), change_form_data(
        page, organization=globex.pk, name="Metadata", kind="http", base_url="http://169.254.169.254/latest/"))

    assert response.status_code == 200
    assert "closed to devices" in str(response.context["adminform"].form.errors["base_url"])
    assert not Device.objects.filter(name="Metadata").exists()


def test_the_platforms_services_are_refused_at_this_machines_own_addresses(globex, settings, broker_on_loopback):
    """A broker on loopback may listen on every interface: the machine's network address
    on the broker's port is the broker too."""
    from marketplace.egress import own_addresses

    addresses = sorted(own_addresses(), key=str)
    if not addresses:
        pytest.skip("this machine has no address besides loopback")
    settings.JUNCTION_DEVICE_ALLOW_PRIVATE = True
    for address in addresses:
        host = f"[{address}]" if address.version == 6 else str(address)
        assert "the platform's own broker" in base_url_error(http_device(globex, f"http://{host}:6379/"))
