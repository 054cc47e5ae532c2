"""The console's access rules: a staff publisher works on their own organization's rows
only, through membership roles (no Django model permissions granted); a superuser sees
everything. Personas: ``publisher`` publishes for Acme, ``outsider`` for Globex."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from marketplace.choices import Role
from marketplace.models import Integration

from . import factories


@pytest.fixture
def catalog(acme, globex):
    """Acme's and Globex's integrations, each with a published version, an instance, a
    device, an attachment and a run."""
    rows = {}
    for key, org in (("acme", acme), ("globex", globex)):
        integration = factories.make_integration(org, name=f"{org.name} Printer sync", description=f"{key} sync")
        version = factories.make_published(integration)
        instance = factories.make_instance(version, org, name=f"{org.name} plant")
        rows[key] = {
            "integration": integration, "version": version, "instance": instance,
            "device": instance.bindings.first().device, "attachment": factories.make_attachment(integration),
            "run": factories.make_run(instance), "schema": factories.make_api_schema(integration),
            "entry": factories.make_container_entry(instance),
        }
    return rows


def url(name: str, *args) -> str:
    return reverse(f"admin:marketplace_{name}", args=args)


def changelist_ids(client, model: str) -> set[int]:
    response = client.get(url(f"{model}_changelist"))
    assert response.status_code == 200
    return {obj.pk for obj in response.context["cl"].result_list}


def test_publisher_uses_the_console_without_model_permissions(client, publisher):
    assert not publisher.user_permissions.exists() and not publisher.groups.exists()
    client.force_login(publisher)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 200
    models = {m["object_name"] for app in response.context["app_list"] for m in app["models"]}
    assert {"Integration", "IntegrationVersion", "Instance", "Device", "HandlerRun", "Organization"} <= models


def test_staff_without_a_publishing_membership_sees_no_models(client, member):
    member.is_staff = True
    member.save()
    client.force_login(member)
    response = client.get(reverse("admin:index"))
    assert response.context["app_list"] == []
    assert client.get(url("integration_changelist")).status_code == 403


@pytest.mark.parametrize(
    "model, key",
    [
        ("integration", "integration"), ("integrationversion", "version"), ("attachment", "attachment"),
        ("apischema", "schema"), ("device", "device"), ("instance", "instance"), ("handlerrun", "run"),
        ("containerentry", "entry"),
    ],
)
def test_publisher_lists_only_their_organizations_rows(client, publisher, catalog, model, key):
    client.force_login(publisher)
    ids = changelist_ids(client, model)
    assert catalog["acme"][key].pk in ids
    assert catalog["globex"][key].pk not in ids


@pytest.mark.parametrize(
    "model, key", [("integration", "integration"), ("device", "device"), ("instance", "instance"), ("attachment", "attachment")]
)
def test_another_organizations_change_and_delete_pages_are_not_found(client, publisher, catalog, model, key):
    client.force_login(publisher)
    obj = catalog["globex"][key]
    assert client.get(url(f"{model}_change", obj.pk)).status_code == 404
    assert client.post(url(f"{model}_change", obj.pk), {"name": "Hijacked"}).status_code == 404
    assert client.get(url(f"{model}_delete", obj.pk)).status_code == 404
    assert client.post(url(f"{model}_delete", obj.pk), {"post": "yes"}).status_code == 404
    assert type(obj).objects.filter(pk=obj.pk).exists()


def test_another_organizations_operations_are_not_found(client, publisher, catalog):
    client.force_login(publisher)
    integration, version = catalog["globex"]["integration"], catalog["globex"]["version"]
    assert client.get(url("integration_fork", integration.pk)).status_code == 404
    assert client.post(url("integration_create_draft", integration.pk)).status_code == 404
    assert client.post(url("integrationversion_availability", version.pk) + "?available=0").status_code == 404
    version.refresh_from_db()
    assert version.available and not integration.versions.drafts().exists()


def test_actions_on_forged_ids_of_another_organization_do_nothing(client, publisher, catalog):
    client.force_login(publisher)
    theirs = catalog["globex"]["integration"]
    client.post(url("integration_changelist"), {"action": "delete_integrations", "_selected_action": [theirs.pk], "post": "yes"})
    assert Integration.objects.filter(pk=theirs.pk).exists()


def test_a_member_of_both_sides_sees_instances_of_their_integration_but_changes_only_their_own(
    client, publisher, catalog, globex
):
    """Globex installed Acme's integration: Acme's publisher sees that instance (it runs
    their version) but cannot reconfigure or uninstall it."""
    version = catalog["acme"]["version"]
    theirs = factories.make_instance(version, globex, name="Globex runs Acme's")
    client.force_login(publisher)
    assert theirs.pk in changelist_ids(client, "instance")
    page = client.get(url("instance_change", theirs.pk))
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert client.post(url("instance_change", theirs.pk), {"name": "Renamed"}).status_code == 403
    assert client.post(url("instance_delete", theirs.pk), {"post": "yes"}).status_code == 403
    client.post(url("instance_enabled", theirs.pk) + "?enabled=0")
    client.post(url("instance_changelist"), {"action": "disable", "_selected_action": [theirs.pk]})
    theirs.refresh_from_db()
    assert theirs.name == "Globex runs Acme's" and theirs.enabled


def test_foreign_key_choices_are_limited_to_the_publishers_organizations(client, publisher, catalog, acme, globex):
    client.force_login(publisher)
    form = client.get(url("integration_add")).context["adminform"].form
    assert list(form.fields["owner"].queryset) == [acme]
    form = client.get(url("device_add")).context["adminform"].form
    assert list(form.fields["organization"].queryset) == [acme]
    form = client.get(url("attachment_add")).context["adminform"].form
    assert set(form.fields["integration"].queryset) == {catalog["acme"]["integration"]}


def test_creating_for_another_organization_is_refused(client, publisher, globex):
    client.force_login(publisher)
    response = client.post(url("integration_add"), {
        "owner": globex.pk, "name": "Sneaky", "summary": "", "description": "", "visibility": "public",
        "attachments-TOTAL_FORMS": 0, "attachments-INITIAL_FORMS": 0,
    })
    assert response.status_code == 200
    assert "owner" in response.context["adminform"].form.errors
    assert not Integration.objects.filter(name="Sneaky").exists()


def test_publisher_sees_their_organization_read_only_and_categories(client, publisher, acme, globex):
    category = factories.make_category("ERP")
    client.force_login(publisher)
    assert changelist_ids(client, "organization") == {acme.pk}
    assert client.get(url("organization_change", acme.pk)).context["has_change_permission"] is False
    assert client.get(url("organization_change", globex.pk)).status_code == 404
    assert changelist_ids(client, "category") == {category.pk}
    assert client.get(url("category_add")).status_code == 403


def test_a_plain_member_of_another_org_does_not_widen_the_scope(client, publisher, catalog, globex):
    factories.add_member(publisher, globex, Role.MEMBER)
    client.force_login(publisher)
    assert catalog["globex"]["integration"].pk not in changelist_ids(client, "integration")


def test_superuser_sees_everything(client, admin_user, catalog):
    client.force_login(admin_user)
    for model, key in [("integration", "integration"), ("instance", "instance"), ("device", "device")]:
        ids = changelist_ids(client, model)
        assert {catalog["acme"][key].pk, catalog["globex"][key].pk} <= ids
    assert client.get(url("integration_change", catalog["globex"]["integration"].pk)).status_code == 200


def test_integration_changelist_query_count_does_not_grow_with_rows(client, publisher, acme, django_assert_max_num_queries):
    def make(n):
        for _ in range(n):
            factories.make_published(factories.make_integration(acme))

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url("integration_changelist")).status_code == 200
        return len(queries)

    client.force_login(publisher)
    make(1)
    few = count()
    make(8)
    assert count() == few
    # session, user, publishing orgs, category and owner filter choices, two counts,
    # the rows (latest version, instances and draft flag annotated), permission lookups
    # of other apps' admins in the sidebar.
    with django_assert_max_num_queries(10):
        client.get(url("integration_changelist"))


def test_superuser_manages_categories_and_memberships(client, admin_user, acme, publisher):
    client.force_login(admin_user)
    assert client.post(url("category_add"), {"name": "ERP", "slug": "erp", "ordering": 1}).status_code == 302
    page = client.get(url("organization_change", acme.pk))
    assert page.context["has_change_permission"] is True
    membership_formset = page.context["inline_admin_formsets"][0].formset
    assert [form.instance.user for form in membership_formset.initial_forms] == [publisher]


def test_the_console_counts_publishing_memberships_only(client, outsider, acme, catalog):
    """Oscar publishes for Globex and is a plain member of Acme: the domain lets him see
    and change Acme's instance (members install and run), the console, being the
    publishers' tool, still shows him none of Acme's customer-side rows."""
    from marketplace.models import Instance

    factories.add_member(outsider, acme, Role.MEMBER)
    assert catalog["acme"]["instance"] in Instance.objects.changeable_by(outsider)

    client.force_login(outsider)
    for model, key in (("instance", "instance"), ("device", "device"), ("handlerrun", "run"),
                       ("containerentry", "entry")):
        assert catalog["acme"][key].pk not in changelist_ids(client, model), model
        assert client.get(url(f"{model}_change", catalog["acme"][key].pk)).status_code == 404, model


def test_the_publisher_of_an_integration_lists_its_customers_instances_and_runs(client, publisher, acme, globex):
    """What ``Instance.objects.visible_to`` says, the console lists: Globex's instance of
    Acme's integration is on Acme's publisher's lists, and not changeable there."""
    version = factories.make_published(factories.make_integration(acme, name="Shared"))
    customer = factories.make_instance(version, globex, name="Globex of Shared")
    run = factories.make_run(customer)

    client.force_login(publisher)
    assert customer.pk in changelist_ids(client, "instance")
    assert run.pk in changelist_ids(client, "handlerrun")
    response = client.get(url("instance_change", customer.pk))
    assert response.status_code == 200
    assert not response.context["has_change_permission"]
