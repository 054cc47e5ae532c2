"""Who may call each domain operation: owners and publishers change their organization's
integrations; any member installs and manages its instances; outsiders neither. A refused
call raises PermissionDenied and writes nothing."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.contrib.auth.models import AnonymousUser

from marketplace import access
from marketplace.choices import Role, Visibility
from marketplace.exceptions import PermissionDenied
from marketplace.models import Attachment, Instance, Integration, IntegrationVersion, Organization, ResourceBinding
from marketplace.services.catalog import create_integration
from marketplace.services.deletion import delete_integration
from marketplace.services.drafts import create_draft, discard_draft, update_draft
from marketplace.services.forking import fork_integration
from marketplace.services.installs import (
    install_version,
    reconfigure_instance,
    set_instance_enabled,
    uninstall_instance,
    upgrade_instance,
)
from marketplace.services.media import add_attachment, clear_icon, remove_attachment, set_icon
from marketplace.services.publishing import publish_version, set_availability

from . import factories

PERSONAS = ["owner", "publisher", "member", "outsider", "admin_user"]
PUBLISHERS_OF_ACME = {"owner", "publisher", "admin_user"}
MEMBERS_OF_ACME = {"owner", "publisher", "member", "admin_user"}
PUBLISHERS_OF_GLOBEX = {"outsider", "admin_user"}


@pytest.fixture
def owner(acme):
    user = factories.make_user("olga")
    factories.add_member(user, acme, Role.OWNER)
    return user


@pytest.fixture
def world(acme, globex):
    """Acme's public integration with v1 and an Acme instance of it."""
    integration = factories.make_integration(acme, name="Acme sync")
    v1 = factories.make_published(integration)
    instance = factories.make_instance(v1, acme, name="Acme's own")
    return SimpleNamespace(acme=acme, globex=globex, integration=integration, v1=v1, instance=instance)


# Each operation: set up what it needs, then hand back the call to make as ``user``.
OPERATIONS: dict[str, tuple] = {}


def operation(allowed: set[str]):
    def register(prepare):
        OPERATIONS[prepare.__name__.rstrip("_")] = (prepare, allowed)
        return prepare

    return register


@operation(PUBLISHERS_OF_ACME)
def create_integration_(w):
    return lambda user: create_integration(organization=w.acme, name="New one", user=user)


@operation(PUBLISHERS_OF_ACME)
def create_draft_(w):
    return lambda user: create_draft(integration=w.integration, user=user)


@operation(PUBLISHERS_OF_ACME)
def update_draft_(w):
    draft = factories.make_draft(w.integration)
    return lambda user: update_draft(draft=draft, files={"main.lua": "-- changed"}, user=user)


@operation(PUBLISHERS_OF_ACME)
def discard_draft_(w):
    draft = factories.make_draft(w.integration)
    return lambda user: discard_draft(draft=draft, user=user)


@operation(PUBLISHERS_OF_ACME)
def publish_version_(w):
    draft = factories.make_draft(w.integration)
    return lambda user: publish_version(draft=draft, notes="Next", user=user)


@operation(PUBLISHERS_OF_ACME)
def set_availability_(w):
    return lambda user: set_availability(version=w.v1, available=False, user=user)


@operation(PUBLISHERS_OF_ACME)
def set_icon_(w):
    return lambda user: set_icon(integration=w.integration, upload=factories.png_upload(400), user=user)


@operation(PUBLISHERS_OF_ACME)
def clear_icon_(w):
    set_icon(integration=w.integration, upload=factories.png_upload(400))
    return lambda user: clear_icon(integration=w.integration, user=user)


@operation(PUBLISHERS_OF_ACME)
def add_attachment_(w):
    return lambda user: add_attachment(
        integration=w.integration, upload=factories.upload("a.pdf", factories.pdf_bytes()), user=user
    )


@operation(PUBLISHERS_OF_ACME)
def remove_attachment_(w):
    attachment = factories.make_attachment(w.integration)
    return lambda user: remove_attachment(attachment=attachment, user=user)


@operation(PUBLISHERS_OF_ACME)
def delete_integration_(w):
    return lambda user: delete_integration(integration=w.integration, user=user)


@operation(PUBLISHERS_OF_ACME)
def fork_into_acme(w):
    return lambda user: fork_integration(source=w.integration, organization=w.acme, name="Acme fork", user=user)


@operation(PUBLISHERS_OF_GLOBEX)
def fork_into_globex(w):
    return lambda user: fork_integration(source=w.integration, organization=w.globex, name="Globex fork", user=user)


@operation(MEMBERS_OF_ACME)
def install_into_acme(w):
    bindings = factories.make_bindings(w.acme)
    return lambda user: install_version(
        version=w.v1, organization=w.acme, name="Second", config=factories.SAMPLE_CONFIG, bindings=bindings, user=user
    )


@operation(PUBLISHERS_OF_GLOBEX)
def install_into_globex(w):
    bindings = factories.make_bindings(w.globex)
    return lambda user: install_version(
        version=w.v1, organization=w.globex, name="Theirs", config=factories.SAMPLE_CONFIG, bindings=bindings, user=user
    )


@operation(MEMBERS_OF_ACME)
def reconfigure_instance_(w):
    return lambda user: reconfigure_instance(instance=w.instance, config={"site": "Elsewhere"}, user=user)


@operation(MEMBERS_OF_ACME)
def upgrade_instance_(w):
    v2 = factories.make_published(w.integration)
    return lambda user: upgrade_instance(instance=w.instance, version=v2, user=user)


@operation(MEMBERS_OF_ACME)
def disable_instance(w):
    return lambda user: set_instance_enabled(instance=w.instance, enabled=False, user=user)


@operation(MEMBERS_OF_ACME)
def uninstall_instance_(w):
    return lambda user: uninstall_instance(instance=w.instance, user=user)


def snapshot() -> list:
    """Every row an operation could write, minus timestamps."""
    rows = []
    for model in (Organization, Integration, IntegrationVersion, Attachment, Instance, ResourceBinding):
        rows.append([{k: v for k, v in row.items() if not k.endswith("_at")} for row in model.objects.order_by("pk").values()])
    return rows


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("name", list(OPERATIONS))
def test_who_may_call_each_operation(request, world, media_root, name, persona):
    prepare, allowed = OPERATIONS[name]
    user = request.getfixturevalue(persona)
    call = prepare(world)
    before, files_before = snapshot(), sorted(media_root.rglob("*"))

    if persona in allowed:
        call(user)
        assert snapshot() != before or sorted(media_root.rglob("*")) != files_before
    else:
        with pytest.raises(PermissionDenied):
            call(user)
        assert snapshot() == before
        assert sorted(media_root.rglob("*")) == files_before


def test_every_operation_admits_someone_and_refuses_someone():
    for name, (_, allowed) in OPERATIONS.items():
        assert allowed and set(PERSONAS) - allowed, name


def test_an_outsider_cannot_install_a_private_integration(world, globex, outsider):
    world.integration.visibility = Visibility.PRIVATE
    world.integration.save()
    with pytest.raises(PermissionDenied):
        install_version(
            version=world.v1, organization=globex, name="Theirs", config=factories.SAMPLE_CONFIG,
            bindings=factories.make_bindings(globex), user=outsider,
        )
    assert Instance.objects.filter(organization=globex).count() == 0


def test_trusted_callers_pass_none(world):
    """Management commands and tasks act without a user."""
    assert create_integration(organization=world.acme, name="By a command").owner == world.acme


def test_has_role_and_organizations_of(acme, globex, publisher, member, outsider, admin_user):
    assert access.has_role(publisher, acme, access.PUBLISHING_ROLES)
    assert not access.has_role(member, acme, access.PUBLISHING_ROLES)
    assert access.has_role(member, acme)
    assert not access.has_role(outsider, acme)
    assert access.has_role(admin_user, globex, access.PUBLISHING_ROLES)
    assert not access.has_role(None, acme)
    assert list(access.organizations_of(outsider)) == [globex]
    assert list(access.organizations_of(member, access.PUBLISHING_ROLES)) == []
    assert list(access.organizations_of(admin_user)) == [acme, globex]
    assert list(access.organizations_of(AnonymousUser())) == []


def test_require_visible(world, outsider):
    access.require_visible(outsider, world.integration)
    access.require_visible(AnonymousUser(), world.integration)
    world.integration.visibility = Visibility.PRIVATE
    world.integration.save()
    with pytest.raises(PermissionDenied):
        access.require_visible(outsider, world.integration)
    with pytest.raises(PermissionDenied):
        access.require_visible(AnonymousUser(), world.integration)


def test_an_anonymous_user_is_refused_not_crashed(acme):
    with pytest.raises(PermissionDenied):
        create_integration(organization=acme, name="Anonymous", user=AnonymousUser())
