"""Publishing refuses a draft with validation errors, reporting each where it is."""
from __future__ import annotations

import pytest

from marketplace.exceptions import InvalidInput
from marketplace.services.publishing import check_publishable, publish_version
from tests import factories

from .helpers import MINI_LUA, MINI_MANIFEST


@pytest.fixture
def integration(acme):
    return factories.make_integration(acme, name="Mini", slug="mini")


def test_a_valid_draft_publishes(integration, publisher):
    draft = factories.make_draft(integration, manifest=MINI_MANIFEST, files={"main.lua": MINI_LUA})
    version = publish_version(draft=draft, notes="First", user=publisher)
    assert version.number == 1


def test_warnings_do_not_block_publishing(integration, publisher):
    manifest = {**MINI_MANIFEST, "permissions": ["log", "tenant.cache"]}
    draft = factories.make_draft(integration, manifest=manifest, files={"main.lua": MINI_LUA})
    assert publish_version(draft=draft, notes="First", user=publisher).is_published


def test_errors_block_publishing_keyed_by_manifest_path_and_file_line(integration, publisher):
    manifest = {
        **MINI_MANIFEST,
        "permissions": ["log", "root"],
        "handlers": {"sync": {"type": "timer", "file": "main.lua", "function": "sync", "schedule": {"every": "1s"}}},
    }
    files = {"main.lua": 'function sync(ctx, input)\n  ctx.log.info("tick")\n  os.execute("reboot")\nend\n'}
    draft = factories.make_draft(integration, manifest=manifest, files=files)

    with pytest.raises(InvalidInput) as exc:
        publish_version(draft=draft, notes="Broken", user=publisher)

    assert exc.value.errors == {
        "manifest.permissions.1": [
            "'root' is not one of: device.http, device.sql.read, device.sql.write, integration.cache, "
            "integration.containers, tenant.cache, tenant.sql, log, callback"
        ],
        "manifest.handlers.sync.schedule.every": ["every 1s is more often than the platform minimum of 10 seconds"],
        "main.lua:3": ["os.execute is not available in the sandbox"],
    }
    draft.refresh_from_db()
    assert draft.is_draft and draft.number is None


def test_the_platform_minimum_comes_from_settings(integration, settings):
    settings.JUNCTION_MIN_TIMER_SECONDS = 600
    draft = factories.make_draft(integration, manifest=MINI_MANIFEST, files={"main.lua": MINI_LUA})

    with pytest.raises(InvalidInput) as exc:
        check_publishable(draft)

    assert list(exc.value.errors) == ["manifest.handlers.sync.schedule.every"]


def test_a_lua_syntax_error_is_keyed_by_file_and_line(integration):
    draft = factories.make_draft(integration, manifest=MINI_MANIFEST, files={"main.lua": "function sync(ctx)\n  return (\nend\n"})

    with pytest.raises(InvalidInput) as exc:
        check_publishable(draft)

    assert list(exc.value.errors) == ["main.lua:3"]
    assert exc.value.errors["main.lua:3"][0].startswith("main.lua:3: unexpected symbol near 'end'")


def test_validating_a_version_costs_two_queries(integration, django_assert_num_queries):
    from marketplace.packaging.validation import validate_version
    from marketplace.services.apischemas import upload_api_schema

    from .helpers import FIXTURES

    upload_api_schema(integration=integration, name="petstore.yaml", source=(FIXTURES / "petstore.yaml").read_text())
    upload_api_schema(integration=integration, name="other.yaml", source=(FIXTURES / "petstore.yaml").read_text())
    draft = factories.make_draft(integration, manifest=MINI_MANIFEST, files={"main.lua": MINI_LUA})

    with django_assert_num_queries(2):  # the API schemas, their endpoints
        assert validate_version(draft).valid


def test_validating_a_package_touches_no_database(db, django_assert_num_queries):
    from marketplace.packaging.packages import validate_path

    from .helpers import GOOD

    with django_assert_num_queries(0):
        assert validate_path(GOOD).valid
