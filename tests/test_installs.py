"""install_version and what changes an instance after: reconfigure, upgrade, enable, uninstall."""
from __future__ import annotations

import copy
import threading

import pytest

from marketplace.choices import ResourceKind
from marketplace.exceptions import Conflict, InvalidInput, NotInstallable
from marketplace.models import CacheEntry, ContainerEntry, Device, HandlerRun, Instance, ResourceBinding
from marketplace.services.installs import (
    install_version,
    reconfigure_instance,
    set_instance_enabled,
    uninstall_instance,
    upgrade_instance,
)
from marketplace.services.publishing import set_availability
from marketplace.validators import SECRET_MASK
from runtime.models import TimerSchedule

from . import factories
from .conftest import requires_postgres


@pytest.fixture
def v1(acme):
    return factories.make_published(factories.make_integration(acme, name="Printer sync"), notes="First")


@pytest.fixture
def printer(globex):
    return factories.make_device(globex, ResourceKind.HTTP, name="Printer")


@pytest.fixture
def erp(globex):
    return factories.make_device(globex, ResourceKind.SQL, name="ERP")


@pytest.fixture
def bindings(printer, erp):
    return {"my-printer": printer, "erp": erp}


def install(version, organization, *, name="Printer", config=None, bindings=None, user=None):
    return install_version(
        version=version, organization=organization, name=name,
        config=dict(factories.SAMPLE_CONFIG) if config is None else config, bindings=bindings, user=user,
    )


def counts() -> tuple[int, int]:
    return Instance.objects.count(), ResourceBinding.objects.count()


def test_install_validates_splits_and_binds(v1, globex, outsider, bindings, printer, erp):
    instance = install(v1, globex, config={"site": "Plant 1", "apiKey": "k-123"}, bindings=bindings, user=outsider)

    instance = Instance.objects.get(pk=instance.pk)
    assert instance.organization == globex and instance.version == v1
    assert instance.config == {"site": "Plant 1", "interval": 5}  # default filled in
    assert instance.secret_config == {"apiKey": "k-123"}
    assert instance.masked_config() == {"site": "Plant 1", "interval": 5, "apiKey": SECRET_MASK}
    assert instance.runtime_config() == {"site": "Plant 1", "interval": 5, "apiKey": "k-123"}
    assert {b.alias: b.device for b in instance.bindings.all()} == {"my-printer": printer, "erp": erp}
    assert instance.enabled and instance.installed_by == outsider and instance.webhook_token


def test_devices_may_be_given_by_id(v1, globex, printer, erp):
    instance = install(v1, globex, bindings={"my-printer": printer.pk, "erp": str(erp.pk)})
    assert instance.bindings.count() == 2


def test_the_name_defaults_to_the_integration_name(v1, globex, bindings):
    assert install(v1, globex, name="  ", bindings=bindings).name == "Printer sync"


@pytest.mark.parametrize(
    "config, errors",
    [
        ({"apiKey": "k"}, {"config.site": ["this field is required"]}),
        ({"site": "Plant 1"}, {"config.apiKey": ["this field is required"]}),
        ({"site": "Plant 1", "apiKey": SECRET_MASK}, {"config.apiKey": ["this field is required"]}),
        ({"site": 42, "apiKey": "k"}, {"config.site": ["42 is not of type 'string'"]}),
        ({"site": "P", "apiKey": "k", "interval": "five"}, {"config.interval": ["'five' is not of type 'integer'"]}),
        ({"site": "P", "apiKey": "k", "interval": 0}, {"config.interval": ["0 is less than the minimum of 1"]}),
        ({}, {"config.site": ["this field is required"], "config.apiKey": ["this field is required"]}),
        (["site"], {"config": ["config must be a JSON object"]}),
    ],
)
def test_config_is_validated_against_the_config_schema(v1, globex, bindings, config, errors):
    before = counts()

    with pytest.raises(InvalidInput) as exc:
        install(v1, globex, config=config, bindings=bindings)

    assert exc.value.errors == errors
    assert counts() == before


def test_nul_characters_in_config_are_refused(v1, globex, bindings):
    with pytest.raises(InvalidInput) as exc:
        install(v1, globex, config={"site": "Plant\x001", "apiKey": "k"}, bindings=bindings)
    assert exc.value.errors == {
        "config": ["config is not plain JSON: at site: a string holds U+0000 (NUL), which cannot be stored"]
    }
    assert counts() == (0, 0)


def test_config_nested_past_any_recursion_limit_is_refused_not_raised(v1, globex, bindings):
    deep: list = []
    node = deep
    for _ in range(50_000):
        node.append([])
        node = node[0]
    with pytest.raises(InvalidInput) as exc:
        install(v1, globex, config={"site": "HQ", "apiKey": "k", "extra": deep}, bindings=bindings)
    assert "nested deeper than" in exc.value.errors["config"][0]
    assert counts() == (0, 0)


def test_bindings_must_be_an_object(v1, globex, printer):
    with pytest.raises(InvalidInput) as exc:
        install(v1, globex, bindings=[printer.pk])
    assert exc.value.errors == {"bindings": ["bindings must map each resource alias to a device"]}
    assert counts() == (0, 0)


def test_every_declared_resource_must_be_bound(v1, globex, printer):
    before = counts()

    with pytest.raises(InvalidInput) as exc:
        install(v1, globex, bindings={"my-printer": printer})

    assert exc.value.errors == {"bindings.erp": ["resource 'erp' must be bound to a sql device"]}
    assert counts() == before


def test_unknown_aliases_are_refused(v1, globex, bindings, printer):
    with pytest.raises(InvalidInput) as exc:
        install(v1, globex, bindings={**bindings, "fax": printer})
    assert exc.value.errors == {"bindings.fax": ["'fax' is not a resource declared by version 1"]}
    assert counts() == (0, 0)


def test_devices_of_another_organization_are_refused(v1, globex, acme, printer):
    theirs = factories.make_device(acme, ResourceKind.SQL, name="Acme ERP")

    with pytest.raises(InvalidInput) as exc:
        install(v1, globex, bindings={"my-printer": printer, "erp": theirs})

    assert exc.value.errors == {"bindings.erp": [f"device {theirs.pk} is not a device of Globex"]}
    assert counts() == (0, 0)


def test_unknown_devices_are_refused(v1, globex, printer):
    with pytest.raises(InvalidInput) as exc:
        install(v1, globex, bindings={"my-printer": printer, "erp": 987654})
    assert exc.value.errors == {"bindings.erp": ["device 987654 is not a device of Globex"]}


@pytest.mark.parametrize(
    "value, message",
    [
        (True, "device True is not a device of Globex"),
        ("printer", "device 'printer' is not a device of Globex"),
        (1.0, "device 1.0 is not a device of Globex"),
        (None, "resource 'my-printer' must be bound to a http device"),
    ],
)
def test_only_devices_or_ids_bind(printer, v1, globex, erp, value, message):
    """JSON ``true`` equals 1 in Python; it must not bind whichever device has id 1 (on
    SQLite that is ``printer``, the first device this test makes)."""
    with pytest.raises(InvalidInput) as exc:
        install(v1, globex, bindings={"my-printer": value, "erp": erp})
    assert exc.value.errors == {"bindings.my-printer": [message]}
    assert counts() == (0, 0)


def test_devices_of_the_wrong_kind_are_refused(v1, globex, printer, erp):
    with pytest.raises(InvalidInput) as exc:
        install(v1, globex, bindings={"my-printer": erp, "erp": printer})

    assert exc.value.errors == {
        "bindings.my-printer": ["resource 'my-printer' needs a http device; 'ERP' is sql"],
        "bindings.erp": ["resource 'erp' needs a sql device; 'Printer' is http"],
    }
    assert counts() == (0, 0)


def test_instance_names_are_unique_per_organization(v1, globex, acme, bindings):
    install(v1, globex, name="Printer", bindings=bindings)
    before = counts()

    with pytest.raises(InvalidInput) as exc:
        install(v1, globex, name="Printer", bindings=bindings)

    assert exc.value.errors == {"name": ["Globex already has an instance named 'Printer'"]}
    assert counts() == before
    assert install(v1, acme, name="Printer", bindings=factories.make_bindings(acme)).organization == acme


def test_a_long_instance_name_is_refused(v1, globex, bindings, instance):
    with pytest.raises(InvalidInput) as exc:
        install(v1, globex, name="n" * 121, bindings=bindings)
    assert exc.value.errors == {"name": ["Ensure this value has at most 120 characters (it has 121)."]}

    with pytest.raises(InvalidInput) as exc:
        reconfigure_instance(instance=instance, name="n" * 121)
    assert list(exc.value.errors) == ["name"]
    assert counts() == (1, 2)
    assert Instance.objects.get().name == "Printer"


def test_config_and_bindings_errors_write_nothing(v1, globex, printer):
    with pytest.raises(InvalidInput):
        install(v1, globex, config={"site": "Plant 1"}, bindings={"my-printer": printer})
    assert counts() == (0, 0)


# --- Reconfigure ------------------------------------------------------------------------------

@pytest.fixture
def instance(v1, globex, bindings):
    return install(v1, globex, bindings=bindings)


def test_reconfigure_keeps_a_masked_secret(instance):
    shown = instance.masked_config()
    shown["site"] = "Plant 2"

    reconfigure_instance(instance=instance, config=shown)

    instance = Instance.objects.get(pk=instance.pk)
    assert instance.config == {"site": "Plant 2", "interval": 5}
    assert instance.secret_config == {"apiKey": factories.SAMPLE_CONFIG["apiKey"]}


def test_reconfigure_keeps_a_secret_left_out_and_replaces_a_new_one(instance):
    reconfigure_instance(instance=instance, config={"site": "Plant 2"})
    assert Instance.objects.get(pk=instance.pk).secret_config == {"apiKey": factories.SAMPLE_CONFIG["apiKey"]}

    reconfigure_instance(instance=instance, config={"site": "Plant 2", "apiKey": "rotated"})
    assert Instance.objects.get(pk=instance.pk).secret_config == {"apiKey": "rotated"}


def test_reconfigure_validates_and_writes_nothing_on_refusal(instance):
    with pytest.raises(InvalidInput) as exc:
        reconfigure_instance(instance=instance, config={"site": "Plant 2", "interval": -1})
    assert list(exc.value.errors) == ["config.interval"]
    assert Instance.objects.get(pk=instance.pk).config == {"site": "Plant 1", "interval": 5}


def test_reconfigure_renames_and_rebinds(instance, v1, globex, bindings):
    install(v1, globex, name="Taken", bindings=bindings)
    other_printer = factories.make_device(globex, ResourceKind.HTTP, name="Printer 2")

    with pytest.raises(InvalidInput) as exc:
        reconfigure_instance(instance=instance, name="Taken")
    assert list(exc.value.errors) == ["name"]

    reconfigure_instance(instance=instance, name="Renamed", bindings={**bindings, "my-printer": other_printer})

    instance = Instance.objects.get(pk=instance.pk)
    assert instance.name == "Renamed"
    assert instance.bindings.get(alias="my-printer").device == other_printer
    assert instance.bindings.count() == 2


def test_a_rename_needs_a_name(instance):
    with pytest.raises(InvalidInput) as exc:
        reconfigure_instance(instance=instance, name="   ")
    assert exc.value.errors == {"name": ["a name is required"]}


def test_rebinding_is_validated(instance, acme, erp):
    with pytest.raises(InvalidInput) as exc:
        reconfigure_instance(instance=instance, bindings={"my-printer": factories.make_device(acme), "erp": erp})
    assert list(exc.value.errors) == ["bindings.my-printer"]
    assert instance.bindings.get(alias="my-printer").device.organization_id == instance.organization_id


# --- Upgrade ------------------------------------------------------------------------------------

def manifest_v2() -> dict:
    manifest = copy.deepcopy(factories.SAMPLE_MANIFEST)
    manifest["configSchema"]["properties"]["region"] = {"type": "string", "enum": ["eu", "us"]}
    manifest["configSchema"]["required"].append("region")
    del manifest["resources"]["erp"]
    manifest["resources"]["label-printer"] = {"kind": "http"}
    return manifest


@pytest.fixture
def v2(v1):
    return factories.make_published(v1.integration, manifest=manifest_v2(), notes="Second")


def test_upgrade_revalidates_config_against_the_new_schema(instance, v2, printer):
    with pytest.raises(InvalidInput) as exc:
        upgrade_instance(instance=instance, version=v2, bindings={"label-printer": printer})
    assert exc.value.errors == {"config.region": ["this field is required"]}
    assert Instance.objects.get(pk=instance.pk).version_id == instance.version_id

    upgraded = upgrade_instance(
        instance=instance, version=v2, config={"site": "Plant 1", "region": "eu"}, bindings={"label-printer": printer}
    )

    upgraded = Instance.objects.get(pk=upgraded.pk)
    assert upgraded.version == v2
    assert upgraded.config == {"site": "Plant 1", "region": "eu", "interval": 5}
    assert upgraded.secret_config == {"apiKey": factories.SAMPLE_CONFIG["apiKey"]}  # carried over
    assert sorted(upgraded.bindings.values_list("alias", flat=True)) == ["label-printer", "my-printer"]


def test_upgrade_needs_bindings_for_new_resources(instance, v2):
    with pytest.raises(InvalidInput) as exc:
        upgrade_instance(instance=instance, version=v2, config={"site": "P", "region": "us"})
    assert exc.value.errors == {"bindings.label-printer": ["resource 'label-printer' must be bound to a http device"]}
    assert instance.bindings.count() == 2


def test_downgrade_to_an_earlier_available_version(instance, v1, v2, printer):
    upgrade_instance(instance=instance, version=v2, config={"site": "P", "region": "us"}, bindings={"label-printer": printer})
    erp = factories.make_device(instance.organization, ResourceKind.SQL, name="ERP again")

    back = upgrade_instance(instance=instance, version=v1, config={"site": "P", "apiKey": SECRET_MASK}, bindings={"erp": erp})

    assert Instance.objects.get(pk=back.pk).version == v1
    assert back.secret_config == {"apiKey": factories.SAMPLE_CONFIG["apiKey"]}


def test_upgrade_to_an_unavailable_version_is_refused(instance, v2, printer, publisher):
    set_availability(version=v2, available=False, user=publisher)
    with pytest.raises(NotInstallable):
        upgrade_instance(instance=instance, version=v2, config={"site": "P", "region": "eu"}, bindings={"label-printer": printer})
    assert Instance.objects.get(pk=instance.pk).version_id == instance.version_id


def test_upgrade_to_a_draft_is_refused(instance, v1):
    draft = factories.make_draft(v1.integration)
    with pytest.raises(NotInstallable):
        upgrade_instance(instance=instance, version=draft)


def test_upgrade_to_another_integrations_version_is_refused(instance, acme):
    foreign = factories.make_published(factories.make_integration(acme))
    with pytest.raises(InvalidInput) as exc:
        upgrade_instance(instance=instance, version=foreign)
    assert exc.value.errors == {"version": ["an instance can only move to a version of its own integration"]}


def test_upgrade_to_the_same_version_is_a_conflict(instance, v1):
    with pytest.raises(Conflict):
        upgrade_instance(instance=instance, version=v1)


# --- Enable, disable, uninstall ---------------------------------------------------------------------

def test_disable_and_enable(instance):
    assert set_instance_enabled(instance=instance, enabled=False).enabled is False
    assert Instance.objects.enabled().count() == 0
    assert Instance.objects.get(pk=instance.pk).config == {"site": "Plant 1", "interval": 5}
    set_instance_enabled(instance=instance, enabled=True)
    assert Instance.objects.get(pk=instance.pk).enabled is True


def test_uninstall_removes_the_instance_and_what_it_owns(instance, globex):
    factories.make_run(instance)
    factories.make_container_entry(instance)
    factories.make_cache_entry(instance)
    tenant_cache = factories.make_cache_entry(organization=globex, key="tenant")

    assert TimerSchedule.objects.filter(instance=instance).count() == 1  # the "sync" timer

    uninstall_instance(instance=instance)

    assert not Instance.objects.exists()
    assert not TimerSchedule.objects.exists()
    assert not ResourceBinding.objects.exists()
    assert not HandlerRun.objects.exists()
    assert not ContainerEntry.objects.exists()
    assert list(CacheEntry.objects.all()) == [tenant_cache]
    assert Device.objects.filter(organization=globex).count() == 2


# --- Races (PostgreSQL) -----------------------------------------------------------------------

@requires_postgres
@pytest.mark.postgres
def test_racing_installs_under_one_name_give_one_instance(transactional_db):
    version = factories.make_published(factories.make_integration(factories.make_org()))
    organization = factories.make_org()
    bindings = factories.make_bindings(organization)
    barrier = threading.Barrier(2)

    def install_one():
        barrier.wait(timeout=10)
        return install_version(
            version=version, organization=organization, name="Printer", config=factories.SAMPLE_CONFIG, bindings=bindings
        )

    results = factories.in_threads(install_one, install_one)

    instances = [r for r in results if isinstance(r, Instance)]
    refusals = [r for r in results if isinstance(r, InvalidInput)]
    assert len(instances) == 1 and len(refusals) == 1, results
    assert list(refusals[0].errors) == ["name"]
    assert Instance.objects.count() == 1 and ResourceBinding.objects.count() == 2



def test_a_broken_config_schema_is_a_clear_error_not_a_crash(acme, member):
    version = factories.make_published(factories.make_integration(acme))
    # Written around the publish checks, as a version from before them would be.
    factories.rewrite_published(version, manifest={"configSchema": {"type": "no-such-type"}})
    version.refresh_from_db()

    with pytest.raises(InvalidInput) as exc:
        install_version(version=version, organization=acme, name="Broken", config={}, user=member)

    assert "configSchema is not valid JSON Schema" in exc.value.errors["config"][0]
