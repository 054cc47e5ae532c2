"""Secrets at rest: secret config values and device credentials are stored encrypted, shown
masked, and only the runtime reads them back."""
from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from marketplace.crypto import decrypt_json, encrypt_json
from marketplace.models import Device, Instance
from marketplace.validators import SECRET_MASK, secret_fields

from . import factories

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
