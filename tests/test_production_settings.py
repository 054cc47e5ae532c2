"""The production profile refuses to start with settings that would fail later: a secrets key
that is not a Fernet key (it used to pass the check and fail on the first secret saved), or
no ALLOWED_HOSTS. Each case runs ``manage.py check --deploy`` in a fresh process, as an
operator would, since settings are read once per process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
GOOD_KEY = Fernet.generate_key().decode()
# What the test run itself sets (conftest allows async-unsafe calls for Playwright) or CI
# points elsewhere; the checked process gets none of it.
OWN_VARIABLES = {"DATABASE_URL", "CELERY_BROKER_URL", "DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE", "MEDIA_ROOT", "STATIC_ROOT"}


def check_deploy(tmp_path, **overrides) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in OWN_VARIABLES}
    env.update({
        "JUNCTION_PROFILE": "production",
        "SECRET_KEY": "a-production-secret-key-long-and-random-enough-" + "k2P9xQ7wZr4LmT8v",
        "JUNCTION_SECRETS_KEYS": GOOD_KEY,
        "ALLOWED_HOSTS": "junction.example.com",
        "JUNCTION_DATA_DIR": str(tmp_path),
    })
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )


def test_good_production_settings_pass_the_deploy_check(tmp_path):
    done = check_deploy(tmp_path, JUNCTION_SECRETS_KEYS=f"{GOOD_KEY},{Fernet.generate_key().decode()}")
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout


BAD_KEY = "short-Xq7Zw"


@pytest.mark.parametrize(
    "keys, number",
    [(BAD_KEY, "1 of 1"), (f"{GOOD_KEY},{BAD_KEY}", "2 of 2"), (GOOD_KEY[:-2], "1 of 1")],
    ids=["short", "good-then-short", "truncated"],  # fixed ids: GOOD_KEY is made per process
)
def test_a_bad_secrets_key_stops_start_up_with_how_to_make_one(tmp_path, keys, number):
    done = check_deploy(tmp_path, JUNCTION_SECRETS_KEYS=keys)
    assert done.returncode != 0
    assert f"JUNCTION_SECRETS_KEYS: key {number} is not a Fernet key" in done.stderr
    assert "Fernet.generate_key()" in done.stderr
    assert keys.split(",")[-1] not in done.stderr  # a key is a secret: never echoed


def test_a_missing_secrets_key_stops_start_up(tmp_path):
    done = check_deploy(tmp_path, JUNCTION_SECRETS_KEYS=None)
    assert done.returncode != 0
    assert "JUNCTION_SECRETS_KEYS is required when JUNCTION_PROFILE=production" in done.stderr


@pytest.mark.parametrize("hosts", [None, "", " , "])
def test_production_requires_allowed_hosts(tmp_path, hosts):
    done = check_deploy(tmp_path, ALLOWED_HOSTS=hosts)
    assert done.returncode != 0
    assert "ALLOWED_HOSTS is required when JUNCTION_PROFILE=production" in done.stderr


def test_a_bad_secrets_key_is_refused_in_development_too(tmp_path):
    done = check_deploy(tmp_path, JUNCTION_PROFILE="development", JUNCTION_SECRETS_KEYS=BAD_KEY, ALLOWED_HOSTS=None)
    assert done.returncode != 0
    assert "JUNCTION_SECRETS_KEYS: key 1 of 1 is not a Fernet key" in done.stderr


def test_production_closes_private_networks_to_devices(tmp_path):
    """In production loopback and private addresses are the platform's own network."""
    env = {k: v for k, v in os.environ.items() if k not in OWN_VARIABLES}
    env.update({"JUNCTION_PROFILE": "production", "SECRET_KEY": "k" * 60, "JUNCTION_SECRETS_KEYS": GOOD_KEY,
                "ALLOWED_HOSTS": "junction.example.com", "JUNCTION_DATA_DIR": str(tmp_path)})
    code = ("from django.core.exceptions import ValidationError\n"
            "from marketplace.validators import validate_device_base_url\n"
            "for url in ('http://127.0.0.1:8000/', 'http://10.0.0.5/', 'http://erp.example/'):\n"
            "    try:\n        validate_device_base_url(url); print(url, 'ok')\n"
            "    except ValidationError as exc:\n        print(url, exc.messages[0])\n")
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "http://127.0.0.1:8000/ address 127.0.0.1 is private to the platform's network" in done.stdout
    assert "http://10.0.0.5/ address 10.0.0.5 is private to the platform's network" in done.stdout
    assert "http://erp.example/ ok" in done.stdout


@pytest.mark.parametrize("name, value", [
    ("JUNCTION_DEVICE_DENY_NETWORKS", "169.254.0.0/16,metadata"),
    ("JUNCTION_DEVICE_ALLOW_NETWORKS", "10.20.0.0/33"),
    ("JUNCTION_DEVICE_DENY_SERVICES", "app-server"),
])
def test_a_mistyped_device_network_setting_stops_start_up(tmp_path, name, value):
    done = check_deploy(tmp_path, **{name: value})
    assert done.returncode != 0
    assert name in done.stderr
