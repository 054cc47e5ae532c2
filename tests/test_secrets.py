"""Secrets at rest: secret config values, device credentials and DSNs are stored encrypted,
shown masked, and only the runtime reads them back."""
from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from marketplace.crypto import decrypt_json, encrypt_json
from marketplace.models import Device, Instance
from marketplace.validators import SECRET_MASK, masked_dsn, secret_fields

from . import factories
from .admin_forms import change_form_data

SECRET = factories.SAMPLE_CONFIG["apiKey"]


def raw_row(table: str, pk: int, *columns: str) -> list[str]:
    """The columns as the database holds them, read past the ORM."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE id = %s", [pk])
        row = cursor.fetchone()
    return [value if isinstance(value, str) else json.dumps(value) for value in row]


@pytest.fixture
def instance(acme, globex):
    version = factories.make_published(factories.make_integration(acme))
    return factories.make_instance(version, globex, config={"site": "Plant 1", "apiKey": SECRET})


def test_secret_config_is_encrypted_at_rest(instance):
    secret_config, config = raw_row("marketplace_instance", instance.pk, "secret_config", "config")

    assert SECRET not in secret_config and "apiKey" not in secret_config
    assert SECRET not in config
    assert decrypt_json(secret_config) == {"apiKey": SECRET}
    assert json.loads(config) == {"site": "Plant 1", "interval": 5}


def test_secrets_are_masked_on_read_and_whole_for_the_runtime(instance):
    instance = Instance.objects.get(pk=instance.pk)

    assert instance.masked_config() == {"site": "Plant 1", "interval": 5, "apiKey": SECRET_MASK}
    assert SECRET not in json.dumps(instance.masked_config())
    assert instance.runtime_config()["apiKey"] == SECRET


def test_write_only_fields_are_secrets_too():
    schema = {
        "type": "object",
        "properties": {"token": {"type": "string", "writeOnly": True}, "pw": {"format": "password"}, "site": {}},
    }
    assert secret_fields(schema) == {"token", "pw"}
    assert secret_fields(None) == set()


def test_an_empty_secret_config_is_ciphertext_too(acme, globex):
    manifest = {**factories.SAMPLE_MANIFEST, "configSchema": {"type": "object", "properties": {}}}
    version = factories.make_published(factories.make_integration(acme), manifest=manifest)
    instance = factories.make_instance(version, globex, config={})

    [stored] = raw_row("marketplace_instance", instance.pk, "secret_config")

    assert stored != "{}" and decrypt_json(stored) == {}


def test_device_credentials_and_headers_are_encrypted_at_rest(acme):
    device = factories.make_device(
        acme, credentials={"username": "svc", "password": "hunter2"}, headers={"Authorization": "Bearer tok-42"}
    )

    credentials, headers = raw_row("marketplace_device", device.pk, "credentials", "headers")

    assert "hunter2" not in credentials and "tok-42" not in headers
    assert Device.objects.get(pk=device.pk).credentials == {"username": "svc", "password": "hunter2"}
    assert Device.objects.get(pk=device.pk).headers == {"Authorization": "Bearer tok-42"}


def test_equal_secrets_give_different_ciphertexts():
    assert encrypt_json({"a": 1}) != encrypt_json({"a": 1})


def test_old_keys_still_decrypt_after_rotation(instance, settings):
    old_key = settings.JUNCTION_SECRETS_KEYS[0]
    new_key = Fernet.generate_key().decode()
    settings.JUNCTION_SECRETS_KEYS = [new_key, old_key]

    assert Instance.objects.get(pk=instance.pk).secret_config == {"apiKey": SECRET}

    fresh = encrypt_json({"apiKey": "new"})
    settings.JUNCTION_SECRETS_KEYS = [new_key]
    assert decrypt_json(fresh) == {"apiKey": "new"}


def test_a_wrong_key_refuses_to_decrypt(instance, settings):
    settings.JUNCTION_SECRETS_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ValueError, match="cannot be decrypted"):
        Instance.objects.get(pk=instance.pk)


# --- DSNs ------------------------------------------------------------------------------------

DSN = "postgresql://svc:hunter2@db.example:5432/erp?sslmode=require"


def test_a_dsn_is_encrypted_at_rest(acme):
    device = factories.make_device(acme, "sql", dsn=DSN)

    [stored] = raw_row("marketplace_device", device.pk, "dsn")

    assert "hunter2" not in stored and "db.example" not in stored
    assert decrypt_json(stored) == DSN
    assert Device.objects.get(pk=device.pk).dsn == DSN


def test_an_http_device_stores_no_dsn(acme):
    device = factories.make_device(acme)
    assert raw_row("marketplace_device", device.pk, "dsn") == [""]


@pytest.mark.parametrize("dsn, shown", [
    (DSN, f"postgresql://svc:{SECRET_MASK}@db.example:5432/erp?sslmode=require"),
    ("postgres://svc@db/erp?password=hunter2&sslmode=require", f"postgres://svc@db/erp?password={SECRET_MASK}&sslmode=require"),
    ("postgresql://svc:p%40ss@[::1]:5432/erp", f"postgresql://svc:{SECRET_MASK}@[::1]:5432/erp"),
    ("postgresql://svc@db/erp", "postgresql://svc@db/erp"),
    ("sqlite:///erp.sqlite3", "sqlite:///erp.sqlite3"),
])
def test_a_dsn_is_shown_without_its_password(dsn, shown):
    assert masked_dsn(dsn) == shown


@pytest.fixture
def console(client, publisher):
    client.force_login(publisher)
    return client


def device_page(client, device):
    return client.get(reverse("admin:marketplace_device_change", args=[device.pk]))


def test_the_console_never_shows_a_dsns_password(console, acme):
    device = factories.make_device(acme, "sql", dsn=DSN)
    version = factories.make_published(factories.make_integration(acme))
    instance = factories.make_instance(version, acme, bindings={"my-printer": factories.make_device(acme), "erp": device})

    pages = [
        device_page(console, device),
        console.get(reverse("admin:marketplace_device_changelist")),
        console.get(reverse("admin:marketplace_instance_change", args=[instance.pk])),
    ]

    assert all(page.status_code == 200 for page in pages)
    assert all(b"hunter2" not in page.content for page in pages)
    assert masked_dsn(DSN).encode() in pages[0].content and masked_dsn(DSN).encode() in pages[2].content


def test_a_dsn_left_masked_keeps_its_password(console, acme):
    device = factories.make_device(acme, "sql", dsn=DSN)
    page = device_page(console, device)

    response = console.post(page.request["PATH_INFO"], change_form_data(
        page, dsn=f"postgresql://svc:{SECRET_MASK}@db.example:5432/sales?sslmode=require"))

    assert response.status_code == 302
    assert Device.objects.get(pk=device.pk).dsn == "postgresql://svc:hunter2@db.example:5432/sales?sslmode=require"


def test_a_masked_password_is_not_sent_to_another_server(console, acme):
    device = factories.make_device(acme, "sql", dsn=DSN)
    page = device_page(console, device)

    response = console.post(page.request["PATH_INFO"], change_form_data(
        page, dsn=f"postgresql://svc:{SECRET_MASK}@evil.example:5432/erp"))

    assert response.status_code == 200
    assert "type the password again" in str(response.context["adminform"].form.errors["dsn"])
    assert Device.objects.get(pk=device.pk).dsn == DSN


def test_a_new_password_replaces_the_stored_one(console, acme):
    device = factories.make_device(acme, "sql", dsn=DSN)
    page = device_page(console, device)

    console.post(page.request["PATH_INFO"], change_form_data(page, dsn="postgresql://svc:s3cond@other.example/erp"))

    assert Device.objects.get(pk=device.pk).dsn == "postgresql://svc:s3cond@other.example/erp"


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_the_dsns_already_stored(acme):
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate([("marketplace", "0004_attachments_private_storage")])
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO marketplace_device (organization_id, name, kind, base_url, dsn, credentials, headers, created_at)"
            " VALUES (%s, 'Old ERP', 'sql', '', %s, %s, %s, CURRENT_TIMESTAMP)",
            [acme.pk, DSN, encrypt_json({}), encrypt_json({})],
        )

    executor = MigrationExecutor(connection)
    executor.migrate(latest)

    device = Device.objects.get(name="Old ERP")
    [stored] = raw_row("marketplace_device", device.pk, "dsn")
    assert "hunter2" not in stored and device.dsn == DSN
