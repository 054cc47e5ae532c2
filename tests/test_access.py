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


# --- Fetch and check in one call: another organization's object is not found -------------


@pytest.fixture
def reach(acme, globex):
    """Acme publishes a public and a private integration; Acme and Globex each install the
    public one (a device and a run each)."""
    public = factories.make_integration(acme, name="Public printer")
    version = factories.make_published(public)
    private = factories.make_integration(acme, name="Private tool", visibility=Visibility.PRIVATE)
    factories.make_published(private)
    rows = {"public": public, "private": private, "version": version}
    for key, org in (("acme", acme), ("globex", globex)):
        instance = factories.make_instance(version, org, name=key)
        rows[f"{key}_instance"] = instance
        rows[f"{key}_device"] = instance.bindings.first().device
        rows[f"{key}_run"] = factories.make_run(instance)
    return SimpleNamespace(**rows)


def fetch(reach, what: str, user, write: bool):
    """Each helper with the key a front door has in hand (a slug, a number, an id)."""
    if what in {"public", "private"}:
        return access.get_integration_for(user, getattr(reach, what).slug, write=write)
    if what == "private_v1":
        return access.get_version_for(user, reach.private.slug, 1, write=write)
    if what == "public_v1":
        return access.get_version_for(user, reach.public.slug, 1, write=write)
    kind = what.split("_")[1]
    getter = {"instance": access.get_instance_for, "device": access.get_device_for, "run": access.get_run_for}[kind]
    return getter(user, getattr(reach, what).pk, write=write)


OBJECTS = ["public", "private", "public_v1", "private_v1", "acme_instance", "globex_instance", "acme_device",
           "globex_device", "acme_run", "globex_run"]

# What each persona reaches, reading and writing; everything else raises NotFound.
REACH = {
    None: ({"public", "public_v1"}, set()),
    "member": ({"public", "private", "public_v1", "private_v1", "acme_instance", "acme_device", "acme_run"},
               {"acme_instance", "acme_device", "acme_run"}),
    "publisher": ({"public", "private", "public_v1", "private_v1", "acme_instance", "globex_instance", "acme_device",
                   "acme_run", "globex_run"},
                  {"public", "private", "public_v1", "private_v1", "acme_instance", "acme_device", "acme_run"}),
    "outsider": ({"public", "public_v1", "globex_instance", "globex_device", "globex_run"},
                 {"globex_instance", "globex_device", "globex_run"}),
    "admin_user": (set(OBJECTS), set(OBJECTS)),
}


@pytest.mark.parametrize("write", [False, True], ids=["read", "write"])
@pytest.mark.parametrize("persona", list(REACH), ids=lambda p: p or "anonymous")
def test_get_for_reaches_what_the_user_may_and_nothing_else(request, reach, persona, write):
    from marketplace.exceptions import NotFound

    user = request.getfixturevalue(persona) if persona else AnonymousUser()
    reached = set()
    for what in OBJECTS:
        try:
            fetch(reach, what, user, write)
        except NotFound:
            continue
        reached.add(what)
    assert reached == REACH[persona][write]


def test_get_for_answers_a_missing_and_a_foreign_object_alike(reach, outsider):
    """Same error, same status and the same words but for the key: nothing tells an
    object of another organization from one that does not exist."""
    from marketplace.exceptions import NotFound

    errors = []
    for pk in (reach.acme_instance.pk, 10**9, "not-a-number"):
        with pytest.raises(NotFound) as caught:
            access.get_instance_for(outsider, pk)
        errors.append(caught.value)
    assert {e.status_code for e in errors} == {404}
    assert [e.message.replace(str(pk), "<id>") for e, pk in zip(errors, (reach.acme_instance.pk, 10**9, "not-a-number"))] \
        == ["no instance <id> among those you may reach"] * 3
    with pytest.raises(NotFound):
        access.get_integration_for(outsider, "no-such-slug")
    with pytest.raises(NotFound):
        access.get_version_for(outsider, reach.private.slug, 1)


def test_get_for_with_no_user_is_a_trusted_caller(reach):
    assert access.get_instance_for(None, reach.globex_instance.pk, write=True) == reach.globex_instance
    assert access.get_integration_for(None, reach.private.slug, write=True) == reach.private


def test_a_draft_has_no_number_to_fetch(reach, publisher):
    from marketplace.exceptions import NotFound

    factories.make_draft(reach.public)
    assert access.get_version_for(publisher, reach.public.slug, 1).number == 1
    with pytest.raises(NotFound):
        access.get_version_for(publisher, reach.public.slug, 2)


def test_the_api_answers_not_found_with_404(reach, outsider):
    from marketplace.api.errors import exception_handler
    from marketplace.exceptions import NotFound

    with pytest.raises(NotFound) as caught:
        access.get_run_for(outsider, reach.acme_run.pk)
    response = exception_handler(caught.value, {})
    assert response.status_code == 404
    assert response.data == {"error": {"code": "not_found", "message": caught.value.message}}


@pytest.mark.parametrize("persona, status", [(None, 404), ("outsider", 404), ("member", 200)])
def test_the_marketplace_page_of_a_private_integration_is_not_found_for_others(
    request, client, reach, persona, status
):
    if persona:
        client.force_login(request.getfixturevalue(persona))
    assert client.get(reach.private.get_absolute_url()).status_code == status
