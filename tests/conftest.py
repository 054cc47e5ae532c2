"""Shared fixtures: personas (a superuser, a publisher of Acme, an outsider publishing for
Globex, a plain member) and isolated media storage."""
from __future__ import annotations

import os

import pytest
from django.db import connection

from marketplace.choices import Role

from . import factories

# Playwright's sync API runs an event loop in the test thread; Django's async-safety check
# would otherwise refuse the ORM calls that browser tests make between page actions.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session", autouse=True)
def connections_closed_before_the_test_database_goes(django_db_setup, django_db_blocker):
    """Set up after the test database and torn down before it is dropped. Django keeps a
    connection per context, and once Playwright's sync API has started, tests run in a
    greenlet context of their own whose connection this teardown cannot reach; on
    PostgreSQL it would keep the test database from being dropped. Ends every session on
    the test database but this one."""
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                               " WHERE datname = current_database() AND pid <> pg_backend_pid()")
        connection.close()


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Every test writes uploads to its own folder, so file assertions see only their files.
    The folder holds both storages: MEDIA_ROOT (``public``, icons) and the private root
    (``private``, attachments)."""
    settings.MEDIA_ROOT = tmp_path / "uploads" / "public"
    settings.JUNCTION_PRIVATE_MEDIA_ROOT = tmp_path / "uploads" / "private"
    return tmp_path / "uploads"


@pytest.fixture(autouse=True)
def device_sqlite_dir(settings, tmp_path):
    """SQLite devices' files: one folder per organization under a folder of the test's own."""
    settings.JUNCTION_DEVICE_SQLITE_DIR = tmp_path / "devices"
    return settings.JUNCTION_DEVICE_SQLITE_DIR


@pytest.fixture
def acme(db):
    return factories.make_org("Acme")


@pytest.fixture
def globex(db):
    return factories.make_org("Globex")


@pytest.fixture
def admin_user(db):
    return factories.make_user("root", superuser=True)


@pytest.fixture
def publisher(acme):
    """A staff publisher of Acme (not a superuser)."""
    user = factories.make_user("alice", staff=True)
    factories.add_member(user, acme, Role.PUBLISHER)
    return user


@pytest.fixture
def outsider(globex):
    """A staff publisher of Globex: sees Acme's public integrations, changes none."""
    user = factories.make_user("oscar", staff=True)
    factories.add_member(user, globex, Role.PUBLISHER)
    return user


@pytest.fixture
def member(acme):
    """A plain member of Acme: installs, does not publish."""
    user = factories.make_user("mike")
    factories.add_member(user, acme, Role.MEMBER)
    return user


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


requires_postgres = pytest.mark.skipif(
    os.environ.get("DATABASE_URL", "").split(":")[0] not in {"postgres", "postgresql"},
    reason="needs PostgreSQL: run with DATABASE_URL (the second pass of .ci/run does)",
)
