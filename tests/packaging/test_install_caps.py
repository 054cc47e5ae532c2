"""A version published before a cap was lowered is refused at install and upgrade, with
validation's own message (``validation.cap_report``), and nothing is written."""
from __future__ import annotations

import pytest

from marketplace.exceptions import NotInstallable
from marketplace.models import Instance
from marketplace.packaging.validation import validate_version
from marketplace.services.installs import install_version, upgrade_instance
from runtime.models import TimerSchedule
from tests import factories

from .helpers import MINI_LUA, MINI_MANIFEST

THREE_TIMERS = {**MINI_MANIFEST, "handlers": {
    name: {"type": "timer", "file": "main.lua", "function": "sync", "schedule": {"every": every}}
    for name, every in (("sync", "5m"), ("hourly", "1h"), ("daily", "1d"))
}}


@pytest.fixture
def published(acme):
    integration = factories.make_integration(acme, name="Mini", slug="mini")
    small = factories.make_published(integration, manifest=MINI_MANIFEST, files={"main.lua": MINI_LUA})
    large = factories.make_published(integration, manifest=THREE_TIMERS, files={"main.lua": MINI_LUA})
    return small, large


def test_a_version_over_the_timer_cap_is_not_installed(published, globex, outsider, settings):
    _, large = published
    settings.JUNCTION_MANIFEST_MAX_TIMERS = 2
    [expected] = validate_version(large).errors

    with pytest.raises(NotInstallable) as exc:
        install_version(version=large, organization=globex, name="Mini", config={}, bindings={}, user=outsider)

    assert expected.code == "manifest_too_many_timers"
    assert exc.value.errors == {"version": [expected.message]}
    assert not Instance.objects.exists() and not TimerSchedule.objects.exists()


def test_an_upgrade_to_a_version_over_the_caps_is_refused(published, globex, outsider, settings):
    small, large = published
    instance = install_version(version=small, organization=globex, name="Mini", config={}, bindings={}, user=outsider)
    settings.JUNCTION_MANIFEST_MAX_HANDLERS = 2

    with pytest.raises(NotInstallable) as exc:
        upgrade_instance(instance=instance, version=large, user=outsider)

    assert exc.value.errors == {"version": ["3 handlers are declared; at most 2 are allowed (JUNCTION_MANIFEST_MAX_HANDLERS)"]}
    instance.refresh_from_db()
    assert instance.version == small


def test_a_bundle_over_the_file_cap_is_not_installed(published, globex, outsider, settings):
    small, _ = published
    settings.JUNCTION_BUNDLE_MAX_FILES = 0

    with pytest.raises(NotInstallable) as exc:
        install_version(version=small, organization=globex, name="Mini", config={}, bindings={}, user=outsider)

    assert exc.value.errors == {"version": ["the bundle holds 1 Lua files; at most 0 are allowed (JUNCTION_BUNDLE_MAX_FILES)"]}


def test_versions_within_the_caps_install(published, globex, outsider):
    _, large = published
    instance = install_version(version=large, organization=globex, name="Mini", config={}, bindings={}, user=outsider)
    assert TimerSchedule.objects.filter(instance=instance).count() == 3
