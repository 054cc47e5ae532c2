"""Limit defaults are declared once, in marketplace/settings.py: the runtime and package
validation read the setting and keep no second copy of the number to fall back on."""
from __future__ import annotations

import pytest

from marketplace.packaging import manifest, packages, validation
from runtime import limits


@pytest.mark.parametrize("name", limits._SETTINGS)
def test_the_runtime_limits_have_no_fallback_of_their_own(settings, name):
    delattr(settings, name)
    with pytest.raises(AttributeError):
        limits.platform_limits()


@pytest.mark.parametrize("read, name", [
    (lambda: manifest.limit_maximum("timeoutMs"), "JUNCTION_RUNTIME_MAX_TIMEOUT_MS"),
    (lambda: manifest.limit_maximum("attempts", manifest.RETRY_SETTINGS), "JUNCTION_RETRY_MAX_ATTEMPTS"),
    (lambda: manifest.cap("timers"), "JUNCTION_MANIFEST_MAX_TIMERS"),
    (manifest.min_timer_seconds, "JUNCTION_MIN_TIMER_SECONDS"),
    (validation.static_budget, "JUNCTION_LUA_STATIC_MAX_BYTES"),
    (validation.max_bundle_files, "JUNCTION_BUNDLE_MAX_FILES"),
    (packages.max_entries, "JUNCTION_PACKAGE_MAX_FILES"),
    (packages.max_ratio, "JUNCTION_PACKAGE_MAX_RATIO"),
])
def test_package_validation_reads_its_limits_from_settings_alone(settings, read, name):
    assert read() == getattr(settings, name)
    delattr(settings, name)
    with pytest.raises(AttributeError):
        read()
