"""``/api/v1/instances/``: install, read, change and uninstall over HTTP. Secret config
values never come back; an integration's publisher sees its customers' instances as
support fields only and changes none; another organization's instance is 404."""
from __future__ import annotations

import pytest

from marketplace.choices import InstanceState, ResourceKind
from marketplace.models import HandlerRun, Instance, ResourceBinding
from marketplace.validators import SECRET_MASK
from runtime.models import TimerSchedule

from .. import factories

pytestmark = pytest.mark.django_db

INSTANCES = "/api/v1/instances/"


def url(instance, tail: str = "") -> str:
    return f"{INSTANCES}{instance.pk}/{tail}"


@pytest.fixture
def version(publisher):
    """Printer sync v1 (factories.SAMPLE_MANIFEST), published by Alice's Acme."""
    integration = factories.make_integration(publisher.memberships.get().organization, slug="printer-sync")
    return factories.make_published(integration)


@pytest.fixture
def customer(globex):
    """Gina, a plain member of Globex: the customer who installs Acme's integration."""
    from marketplace.choices import Role

    user = factories.make_user("gina")
    factories.add_member(user, globex, Role.MEMBER)
    return user


def install_body(version, devices, **extra) -> dict:
    return {
        "integration": version.integration.slug, "version": version.number, "name": "Plant printers",
        "config": {"site": "Plant 1", "apiKey": extra.pop("api_key", "k-123")},
        "bindings": {alias: device.pk for alias, device in devices.items()}, **extra,
    }


def nothing_written():
    return not (Instance.objects.exists() or ResourceBinding.objects.exists() or TimerSchedule.objects.exists())


# --- Installing ---------------------------------------------------------------------------------

def test_install_answers_201_with_the_instance_and_never_its_secret(api, customer, globex, version, secret):
    api_key = secret("apikey-9d2f-live")
    devices = factories.make_bindings(globex)
    response = api(customer).post(INSTANCES, install_body(version, devices, api_key=api_key), format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    instance = Instance.objects.get()
    assert body == {
        "id": instance.pk, "name": "Plant printers", "organization": globex.slug, "integration": "printer-sync",
        "version": 1, "config": {"site": "Plant 1", "apiKey": SECRET_MASK, "interval": 5},
        "bindings": {"erp": devices["erp"].pk, "my-printer": devices["my-printer"].pk}, "enabled": True,
        "state": "active", "last_error": "", "installed_at": body["installed_at"], "last_run_at": None,
    }
    assert instance.runtime_config()["apiKey"] == api_key
    assert TimerSchedule.objects.filter(instance=instance).count() == 1


@pytest.mark.parametrize("change, fields", [
    ({"config": {"site": "Plant 1"}}, {"config.apiKey"}),
    ({"config": {"site": 7, "apiKey": "k"}}, {"config.site"}),
    ({"config": {"site": "x", "apiKey": "k", "interval": 0}}, {"config.interval"}),
    ({"config": "nope"}, {"config"}),
    ({"bindings": {}}, {"bindings.erp", "bindings.my-printer"}),
    ({"integration": "no-such-thing"}, {"integration"}),
    ({"version": 9}, {"version"}),
    ({"name": "x" * 121}, {"name"}),
])
def test_a_refused_install_is_400_with_the_fields_and_leaves_nothing(api, customer, globex, version, change, fields):
    body = {**install_body(version, factories.make_bindings(globex)), **change}
    response = api(customer).post(INSTANCES, body, format="json")
    assert response.status_code == 400, response.json()
    assert set(response.json()["error"]["fields"]) == fields
    assert nothing_written()


def test_a_device_of_another_organization_is_refused_without_saying_it_exists(api, customer, globex, acme, version,
                                                                             secret):
    theirs = factories.make_device(acme, ResourceKind.SQL, name="Acme secret ERP")
    devices = {**factories.make_bindings(globex), "erp": theirs}
    response = api(customer).post(INSTANCES, install_body(version, devices), format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["fields"] == {"bindings.erp": [f"device {theirs.pk} is not a device of {globex}"]}
    body = install_body(version, devices)
    missing = api(customer).post(INSTANCES, {**body, "bindings": {**body["bindings"], "erp": 99999}}, format="json")
    assert missing.json()["error"]["fields"]["bindings.erp"] == ["device 99999 is not a device of " + str(globex)]
    assert "Acme secret ERP" not in response.content.decode()
    assert nothing_written()


def test_an_unavailable_version_is_409_and_leaves_nothing(api, customer, globex, version):
    version.available = False
    version.save()
    response = api(customer).post(INSTANCES, install_body(version, factories.make_bindings(globex)), format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_installable"
    assert nothing_written()


def test_a_private_integration_of_another_organization_reads_as_missing(api, customer, globex, publisher):
    hidden = factories.make_integration(publisher.memberships.get().organization, slug="hidden", visibility="private")
    factories.make_published(hidden)
    response = api(customer).post(INSTANCES, {"integration": "hidden", "version": 1}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"integration": ["no integration 'hidden' among those you may install"]}
    assert nothing_written()


def test_a_failing_install_handler_is_409_naming_its_run(api, customer, globex):
    from tests.runtime.helpers import make_runtime_version

    handlers = {"install": {"type": "lifecycle", "on": "install", "file": "main.lua", "function": "boom"}}
    version = make_runtime_version(handlers, {"main.lua": 'function boom(ctx, input) error("no printer") end'})
    response = api(customer).post(
        INSTANCES, {"integration": version.integration.slug, "version": 1, "name": "failing"}, format="json")
    assert response.status_code == 409, response.json()
    error = response.json()["error"]
    run = HandlerRun.objects.get()
    assert (error["code"], error["run"]) == ("lua_error", run.pk)
    assert "no printer" in error["message"]
    assert Instance.objects.get().state == InstanceState.FAILED


# --- Reading ------------------------------------------------------------------------------------

def test_a_publisher_sees_its_customers_instances_as_support_fields_only(api, publisher, customer, globex, version,
                                                                         secret):
    instance = factories.make_instance(version, globex, name="Plant printers",
                                       config={"site": "Secret Plant 1", "apiKey": secret("k-ab12")})
    Instance.objects.filter(pk=instance.pk).update(last_error="device said: token t-991 refused")
    client = api(publisher)

    detail = client.get(url(instance)).json()
    assert detail == {
        "id": instance.pk, "name": "Plant printers", "organization": globex.slug, "integration": "printer-sync",
        "version": 1, "config": None, "bindings": None, "enabled": True, "state": "active", "last_error": None,
        "installed_at": detail["installed_at"], "last_run_at": None,
    }
    listed = client.get(INSTANCES)
    assert listed.json()["results"] == [detail]
    assert "Secret Plant 1" not in listed.content.decode() and "t-991" not in listed.content.decode()
    own = api(customer).get(url(instance)).json()
    assert own["config"]["site"] == "Secret Plant 1" and own["last_error"].startswith("device said")


def test_the_publisher_changes_nothing_of_its_customers_instances(api, publisher, globex, version):
    instance = factories.make_instance(version, globex, name="theirs")
    client = api(publisher)
    for method, tail, body in [
        ("patch", "", {"name": "mine"}), ("delete", "", None), ("post", "upgrade/", {"version": 1}),
        ("post", "ping/", None), ("post", "rpc/status/", {}), ("post", "events/x/", {}), ("get", "storage/", None),
    ]:
        response = getattr(client, method)(url(instance, tail), body, format="json")
        assert response.status_code == 404, (method, tail, response.status_code)
    instance.refresh_from_db()
    assert instance.name == "theirs" and not HandlerRun.objects.exists()


def test_another_organizations_instance_is_404_on_every_method(api, outsider, acme, version):
    instance = factories.make_instance(version, acme, name="acme's")
    client = api(outsider)  # Oscar publishes for Globex, not this integration
    for method, tail, body in [
        ("get", "", None), ("patch", "", {"name": "mine"}), ("delete", "", None), ("post", "upgrade/", {"version": 1}),
        ("post", "ping/", None), ("post", "rpc/status/", {}), ("post", "events/x/", {}), ("get", "storage/", None),
    ]:
        response = getattr(client, method)(url(instance, tail), body, format="json")
        assert response.status_code == 404, (method, tail, response.status_code)
        assert response.json()["error"]["code"] == "not_found"
    assert client.get(INSTANCES).json()["count"] == 0
    assert Instance.objects.get().name == "acme's"


def test_anonymous_callers_get_401(anon, acme, version):
    instance = factories.make_instance(version, acme)
    assert anon.get(INSTANCES).status_code == 401
    assert anon.get(url(instance)).status_code == 401
    assert anon.post(url(instance, "ping/")).status_code == 401


@pytest.mark.parametrize("rows", [3, 30])
def test_the_list_runs_a_fixed_number_of_queries(api, publisher, customer, globex, acme, version, rows,
                                                 django_assert_max_num_queries):
    for n in range(rows):
        factories.make_instance(version, globex if n % 2 else acme, name=f"instance {n:02}")
    for user, seen in ((customer, rows // 2), (publisher, rows)):
        client = api(user)
        # token lookup + last-used stamp, count, page, bindings
        with django_assert_max_num_queries(6):
            response = client.get(INSTANCES, {"page_size": 50})
        assert len(response.json()["results"]) == seen
    order = [(row["organization"], row["name"]) for row in response.json()["results"]]
    assert order == sorted(order)


# --- Changing -----------------------------------------------------------------------------------

def test_patch_renames_reconfigures_keeping_a_masked_secret_and_disables(api, customer, globex, version, secret):
    instance = factories.make_instance(version, globex, config={"site": "A", "apiKey": secret("k-keep-55")})
    response = api(customer).patch(url(instance), {
        "name": "Renamed", "config": {"site": "B", "apiKey": SECRET_MASK}, "enabled": False,
    }, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["name"], response.json()["config"]["site"], response.json()["enabled"]) == ("Renamed", "B",
                                                                                                        False)
    instance.refresh_from_db()
    assert instance.runtime_config()["apiKey"] == "k-keep-55"
    assert not instance.timer_schedules.filter(enabled=True).exists()


def test_a_refused_patch_changes_nothing(api, customer, globex, acme, version):
    instance = factories.make_instance(version, globex, name="kept")
    before = dict(instance.bindings.values_list("alias", "device_id"))
    theirs = factories.make_device(acme, ResourceKind.HTTP)
    response = api(customer).patch(url(instance), {
        "enabled": False, "name": "changed", "bindings": {**before, "my-printer": theirs.pk},
    }, format="json")
    assert response.status_code == 400 and "bindings.my-printer" in response.json()["error"]["fields"]
    instance.refresh_from_db()
    assert (instance.name, instance.enabled) == ("kept", True)
    assert dict(instance.bindings.values_list("alias", "device_id")) == before


def test_delete_uninstalls(api, customer, globex, version):
    instance = factories.make_instance(version, globex)
    assert api(customer).delete(url(instance)).status_code == 204
    assert nothing_written()


def test_upgrade_moves_to_another_available_version(api, customer, globex, version):
    instance = factories.make_instance(version, globex)
    v2 = factories.make_published(version.integration)
    v3 = factories.make_published(version.integration, available=False)
    client = api(customer)

    assert client.post(url(instance, "upgrade/"), {"version": v3.number}, format="json").status_code == 409
    assert client.post(url(instance, "upgrade/"), {"version": 7}, format="json").json()["error"]["fields"] == {
        "version": ["printer-sync has no published version 7"]}
    response = client.post(url(instance, "upgrade/"), {"version": v2.number}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["version"] == 2
    again = client.post(url(instance, "upgrade/"), {"version": v2.number}, format="json")
    assert again.status_code == 409


def test_the_list_filters_by_organization_integration_state_and_enabled(api, publisher, globex, acme, version):
    factories.make_instance(version, globex, name="g")
    off = factories.make_instance(version, acme, name="a-off")
    other = factories.make_published(factories.make_integration(acme, slug="other"))
    factories.make_instance(other, acme, name="a-other")
    Instance.objects.filter(pk=off.pk).update(enabled=False, state=InstanceState.FAILING)
    client = api(publisher)

    def names(**query):
        response = client.get(INSTANCES, query)
        assert response.status_code == 200, response.json()
        return [row["name"] for row in response.json()["results"]]

    assert names(organization=globex.slug) == ["g"]
    assert names(integration="other") == ["a-other"]
    assert names(state="failing") == ["a-off"]
    assert names(enabled="false") == ["a-off"]
    assert client.get(INSTANCES, {"state": "sleepy"}).status_code == 400


def test_a_superuser_sees_every_instance_in_full(api, admin_user, globex, version):
    instance = factories.make_instance(version, globex)
    body = api(admin_user).get(url(instance)).json()
    assert body["config"]["site"] == factories.SAMPLE_CONFIG["site"] and body["bindings"]


def test_a_failing_upgrade_handler_is_409_naming_its_run_and_keeps_the_version(api, member, acme):
    from tests.runtime.helpers import make_runtime_version

    lua = {"main.lua": 'function boom(ctx, input) error("schema migration failed") end'}
    v1 = make_runtime_version({}, lua)
    instance = factories.make_instance(v1, acme, config={}, bindings={})
    make_runtime_version({"up": {"type": "lifecycle", "on": "upgrade", "file": "main.lua", "function": "boom"}}, lua,
                         integration=v1.integration)
    response = api(member).post(url(instance, "upgrade/"), {"version": 2}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["run"] == HandlerRun.objects.get(handler="up").pk
    instance.refresh_from_db()
    assert instance.version == v1 and "schema migration failed" in instance.last_error
