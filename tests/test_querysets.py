"""The named queries pages, API and admin start from: visible_to, editable_by, installable,
search, for_listing."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.contrib.auth.models import AnonymousUser

from marketplace.choices import Role, Visibility
from marketplace.models import Integration

from . import factories


@pytest.fixture
def catalog(acme, globex):
    """Acme: a public and a private integration, both installable. Globex: a public one with
    only a draft and a private one whose only version is unavailable. Initech: public, with
    an available v1 and an unavailable v2."""
    acme_public = factories.make_integration(acme, name="Acme public", summary="Label printers")
    factories.make_published(acme_public)
    acme_private = factories.make_integration(acme, name="Acme private", visibility=Visibility.PRIVATE)
    factories.make_published(acme_private)
    globex_public = factories.make_integration(globex, name="Globex public", description="Talks to the ERP")
    factories.make_draft(globex_public)
    globex_private = factories.make_integration(globex, name="Globex private", visibility=Visibility.PRIVATE)
    factories.make_published(globex_private, available=False)
    initech = factories.make_integration(factories.make_org("Initech"), name="Initech public")
    factories.make_published(initech)
    factories.make_published(initech, available=False)
    return SimpleNamespace(
        acme_public=acme_public, acme_private=acme_private, globex_public=globex_public,
        globex_private=globex_private, initech=initech,
    )


def names(queryset) -> list[str]:
    return sorted(queryset.values_list("name", flat=True))


PUBLIC = ["Acme public", "Globex public", "Initech public"]


@pytest.mark.parametrize(
    "persona, extra",
    [
        (None, []),
        ("member", ["Acme private"]),
        ("publisher", ["Acme private"]),
        ("outsider", ["Globex private"]),
        ("admin_user", ["Acme private", "Globex private"]),
    ],
)
def test_visible_to(request, catalog, persona, extra):
    user = request.getfixturevalue(persona) if persona else AnonymousUser()
    assert names(Integration.objects.visible_to(user)) == sorted(PUBLIC + extra)


def test_visible_to_lists_each_integration_once(catalog, acme, member):
    for _ in range(3):
        factories.add_member(factories.make_user(), acme, Role.MEMBER)
    visible = list(Integration.objects.visible_to(member).values_list("pk", flat=True))
    assert len(visible) == len(set(visible)) == 4


@pytest.mark.parametrize(
    "persona, expected",
    [
        ("member", []),
        ("publisher", ["Acme private", "Acme public"]),
        ("outsider", ["Globex private", "Globex public"]),
        ("admin_user", sorted(PUBLIC + ["Acme private", "Globex private"])),
    ],
)
def test_editable_by(request, catalog, persona, expected):
    assert names(Integration.objects.editable_by(request.getfixturevalue(persona))) == expected


def test_owners_edit_too(catalog, acme):
    owner = factories.make_user()
    factories.add_member(owner, acme, Role.OWNER)
    assert names(Integration.objects.editable_by(owner)) == ["Acme private", "Acme public"]


def test_editable_by_an_anonymous_user_is_empty(catalog):
    assert names(Integration.objects.editable_by(AnonymousUser())) == []


def test_installable(catalog):
    assert names(Integration.objects.installable()) == ["Acme private", "Acme public", "Initech public"]


def test_installable_follows_availability(catalog):
    catalog.acme_public.versions.update(available=False)
    assert names(Integration.objects.installable()) == ["Acme private", "Initech public"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("acme", ["Acme private", "Acme public"]),
        ("LABEL", ["Acme public"]),  # summary, any case
        ("erp", ["Globex public"]),  # description
        ("  public ", PUBLIC),  # trimmed
        ("", sorted(PUBLIC + ["Acme private", "Globex private"])),
        (None, sorted(PUBLIC + ["Acme private", "Globex private"])),
        ("nothing like it", []),
    ],
)
def test_search(catalog, text, expected):
    assert names(Integration.objects.search(text)) == sorted(expected)


def test_for_listing_annotates_latest_number_and_instances(catalog, globex):
    factories.make_instance(catalog.initech.versions.get(number=1), globex)
    factories.make_instance(catalog.initech.versions.get(number=1), factories.make_org())
    factories.make_published(catalog.acme_public)

    rows = {i.name: i for i in Integration.objects.for_listing()}

    assert rows["Initech public"].latest_number == 2  # unavailable, but published
    assert rows["Initech public"].instance_count == 2
    assert rows["Acme public"].latest_number == 2
    assert rows["Globex public"].latest_number is None
    assert rows["Globex public"].instance_count == 0


def test_installable_listing_still_reports_the_latest_published_number(catalog):
    row = Integration.objects.installable().for_listing().get(name="Initech public")
    assert row.latest_number == 2


@pytest.mark.parametrize("persona", [None, "outsider", "admin_user"])
def test_the_listing_is_one_query(request, catalog, django_assert_max_num_queries, persona):
    user = request.getfixturevalue(persona) if persona else AnonymousUser()
    for n in range(5):
        integration = factories.make_integration(factories.make_org(), category=factories.make_category(), name=f"Extra {n}")
        factories.make_published(integration)

    # One query: integrations with category and owner joined, numbers and counts annotated.
    with django_assert_max_num_queries(1):
        rows = [
            (i.name, i.category and i.category.name, i.owner.name, i.latest_number, i.instance_count)
            for i in Integration.objects.visible_to(user).for_listing().search("e").order_by("name")
        ]

    assert len(rows) >= 8


# --- Who sees and changes the rows of the customer's and the publisher's side ---------------


@pytest.fixture
def owner(acme):
    """An owner of Acme (publishes, like a publisher)."""
    user = factories.make_user("olga", staff=True)
    factories.add_member(user, acme, Role.OWNER)
    return user


@pytest.fixture
def world(acme, globex):
    """Acme publishes "Printer" (public) and installs it itself; Globex installs it too.
    Initech installs its own integration. Each instance has a run, a timer, a container
    entry, a cache entry and a seen item; each organization a tenant cache entry."""
    from django.utils import timezone

    from runtime.models import SeenItem, TimerSchedule

    printer = factories.make_integration(acme, name="Printer")
    version = factories.make_published(printer)
    initech = factories.make_org("Initech")
    instances = {
        "acme": factories.make_instance(version, acme, name="acme"),
        "globex": factories.make_instance(version, globex, name="globex"),
        "initech": factories.make_instance(factories.make_published(factories.make_integration(initech)), initech,
                                           name="initech"),
    }
    for name, instance in instances.items():
        factories.make_run(instance, handler=name)
        TimerSchedule.objects.create(instance=instance, handler=name, every_seconds=60, next_run_at=timezone.now())
        factories.make_container_entry(instance, key=name)
        factories.make_cache_entry(instance, key=name)
        factories.make_cache_entry(organization=instance.organization, key=f"{name} tenant")
        SeenItem.objects.create(instance=instance, handler=name, item_id=name, seen_at=timezone.now())
    return SimpleNamespace(printer=printer, instances=instances)


def user_of(request, persona):
    return request.getfixturevalue(persona) if persona else AnonymousUser()


ALL = ["acme", "globex", "initech"]

# What each persona sees (visible_to) and changes (changeable_by) of the instances and of
# everything that hangs off them; a publisher sees its customers' instances and runs
# (support fields only), never their storage, timers or seen items.
INSTANCE_RULES = [
    # persona, visible instances and runs, changeable (and storage, timers, seen items)
    (None, [], []),
    ("owner", ["acme", "globex"], ["acme"]),
    ("publisher", ["acme", "globex"], ["acme"]),
    ("member", ["acme"], ["acme"]),
    ("outsider", ["globex"], ["globex"]),
    ("admin_user", ALL, ALL),
]


@pytest.mark.parametrize("persona, visible, changeable", INSTANCE_RULES)
def test_instances_and_runs(request, world, persona, visible, changeable):
    from marketplace.models import HandlerRun, Instance

    user = user_of(request, persona)
    assert names(Instance.objects.visible_to(user)) == visible
    assert names(Instance.objects.changeable_by(user)) == changeable
    assert sorted(HandlerRun.objects.visible_to(user).values_list("handler", flat=True)) == visible
    assert sorted(HandlerRun.objects.changeable_by(user).values_list("handler", flat=True)) == changeable
    # Details (input, result, logs, error texts) show to the instance's organization only.
    assert sorted(HandlerRun.objects.with_details_for(user).values_list("handler", flat=True)) == changeable


@pytest.mark.parametrize("persona, _visible, own", INSTANCE_RULES)
def test_storage_timers_and_seen_items_are_the_instance_organizations_alone(request, world, persona, _visible, own):
    from marketplace.models import CacheEntry, ContainerEntry
    from runtime.models import SeenItem, TimerSchedule

    user = user_of(request, persona)
    for method in ("visible_to", "changeable_by"):
        timers = getattr(TimerSchedule.objects, method)(user).filter(handler__in=ALL)  # not the manifest's own
        assert sorted(timers.values_list("handler", flat=True)) == own
        assert sorted(getattr(SeenItem.objects, method)(user).values_list("item_id", flat=True)) == own
        assert sorted(getattr(ContainerEntry.objects, method)(user).values_list("key", flat=True)) == own
        cache = sorted(getattr(CacheEntry.objects, method)(user).values_list("key", flat=True))
        assert cache == sorted(own + [f"{name} tenant" for name in own])


@pytest.mark.parametrize("persona, _visible, own", INSTANCE_RULES)
def test_devices_are_their_organizations(request, world, persona, _visible, own):
    from marketplace.models import Device

    user = user_of(request, persona)
    expected = sorted(d.pk for name in own for d in Device.objects.filter(organization__instances__name=name))
    assert sorted(Device.objects.visible_to(user).values_list("pk", flat=True)) == expected
    assert sorted(Device.objects.changeable_by(user).values_list("pk", flat=True)) == expected


def test_roles_narrow_who_counts_as_the_organizations_own(world, member, publisher):
    """The console passes the publishing roles: a plain member is then nobody's own, and a
    publisher still sees its customers' instances."""
    from marketplace.models import Instance
    from marketplace.querysets import PUBLISHING_ROLES

    assert names(Instance.objects.visible_to(member, roles=PUBLISHING_ROLES)) == []
    assert names(Instance.objects.changeable_by(member, roles=PUBLISHING_ROLES)) == []
    assert names(Instance.objects.visible_to(publisher, roles=PUBLISHING_ROLES)) == ["acme", "globex"]


def test_a_customer_who_also_publishes_sees_each_row_once(world, globex, publisher):
    """Publisher of Acme (the integration) and member of Globex (a customer): both paths
    lead to Globex's instance and run, which still come once each."""
    from marketplace.models import HandlerRun, Instance

    factories.add_member(publisher, globex, Role.MEMBER)
    for _ in range(3):
        factories.add_member(factories.make_user(), globex, Role.MEMBER)
    assert list(Instance.objects.visible_to(publisher).order_by("name").values_list("name", flat=True)) == [
        "acme", "globex"]
    assert HandlerRun.objects.visible_to(publisher).count() == 2
    assert names(Instance.objects.changeable_by(publisher)) == ["acme", "globex"]


@pytest.mark.parametrize(
    "persona, visible, changeable",
    [
        (None, ["Printer"], []),
        ("member", ["Printer"], []),
        ("owner", ["Printer"], ["Printer"]),
        ("publisher", ["Printer"], ["Printer"]),
        ("outsider", ["Globex private", "Printer"], ["Globex private"]),
        ("admin_user", ["Globex private", "Printer"], ["Globex private", "Printer"]),
    ],
)
def test_api_documents_and_attachments_follow_their_integration(request, acme, globex, persona, visible, changeable):
    from marketplace.models import ApiEndpoint, ApiSchema, Attachment

    for integration in (factories.make_integration(acme, name="Printer"),
                        factories.make_integration(globex, name="Globex private", visibility=Visibility.PRIVATE)):
        schema = factories.make_api_schema(integration, name=f"{integration.name}.json")
        ApiEndpoint.objects.create(schema=schema, method="GET", path=f"/{integration.slug}")
        factories.make_attachment(integration, title=integration.name)
    user = user_of(request, persona)
    for method, expected in (("visible_to", visible), ("changeable_by", changeable)):
        assert sorted(getattr(ApiSchema.objects, method)(user).values_list("integration__name", flat=True)) == expected
        assert sorted(getattr(Attachment.objects, method)(user).values_list("title", flat=True)) == expected
        endpoints = getattr(ApiEndpoint.objects, method)(user).values_list("schema__integration__name", flat=True)
        assert sorted(endpoints) == expected


@pytest.mark.parametrize(
    "persona, expected",
    [
        (None, ["Printer v1"]),
        ("member", ["Printer v1"]),
        ("publisher", ["Printer draft", "Printer v1"]),
        ("outsider", ["Printer v1"]),
    ],
)
def test_versions_visible_to_show_drafts_to_their_publishers_only(request, acme, persona, expected):
    from marketplace.models import IntegrationVersion

    printer = factories.make_integration(acme, name="Printer")
    factories.make_published(printer)
    factories.make_draft(printer)
    hidden = factories.make_integration(acme, name="Hidden", visibility=Visibility.PRIVATE)
    factories.make_published(hidden)
    versions = IntegrationVersion.objects.visible_to(user_of(request, persona)).filter(integration=printer)
    assert sorted(f"{v.integration.name} {v.label}" for v in versions) == expected
    member_or_publisher = persona in {"member", "publisher"}
    assert IntegrationVersion.objects.visible_to(user_of(request, persona)).filter(
        integration=hidden).exists() == member_or_publisher


def test_for_listing_preloads_what_a_row_names(world, django_assert_num_queries):
    from marketplace.models import CacheEntry, ContainerEntry, HandlerRun, Instance
    from runtime.models import SeenItem, TimerSchedule

    # One query each: the rows with instance, version and integration joined (their __str__).
    for queryset, row in [
        (Instance.objects.for_listing(), lambda i: (str(i), i.organization.name)),
        (HandlerRun.objects.for_listing(), lambda r: str(r.instance)),
        (ContainerEntry.objects.for_listing(), lambda e: str(e.instance)),
        (CacheEntry.objects.for_listing(), lambda e: (str(e.instance), e.organization.name)),
        (TimerSchedule.objects.for_listing(), lambda t: (str(t.instance), t.instance.organization.name)),
        (SeenItem.objects.for_listing(), lambda s: str(s.instance)),
    ]:
        with django_assert_num_queries(1):
            rows = [row(obj) for obj in queryset]
        assert len(rows) >= 3
