"""publish_version and set_availability; published versions are immutable."""
from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError, connection, transaction

from marketplace.choices import VersionState
from marketplace.exceptions import Conflict, ImmutableVersion, InvalidInput, NotInstallable, PermissionDenied
from marketplace.models import IntegrationVersion
from marketplace.models.versions import content_checksum
from marketplace.services.drafts import create_draft, update_draft
from marketplace.services.installs import install_version
from marketplace.services.publishing import publish_version, set_availability

from . import factories
from .conftest import requires_postgres


@pytest.fixture
def integration(acme):
    return factories.make_integration(acme, name="Printer sync")


def test_publishing_turns_the_draft_into_version_1(integration, publisher):
    draft = factories.make_draft(integration)

    version = publish_version(draft=draft, notes="  First release ", user=publisher)

    version.refresh_from_db()
    assert version.pk == draft.pk
    assert (version.state, version.number, version.notes) == (VersionState.PUBLISHED, 1, "First release")
    assert version.available is True
    assert version.published_by == publisher
    assert version.published_at is not None
    assert version.checksum == content_checksum(factories.SAMPLE_MANIFEST, factories.SAMPLE_FILES)
    assert integration.draft is None


def test_numbers_count_up_per_integration(integration, publisher, acme):
    numbers = []
    for n in range(3):
        draft = create_draft(integration=integration, user=publisher)
        update_draft(draft=draft, manifest=factories.SAMPLE_MANIFEST, files=factories.SAMPLE_FILES, user=publisher)
        numbers.append(publish_version(draft=draft, notes=f"Release {n}", user=publisher).number)
    other = factories.make_published(factories.make_integration(acme))

    assert numbers == [1, 2, 3]
    assert other.number == 1
    assert integration.latest_published().number == 3


@pytest.mark.parametrize("notes", ["", "   ", None])
def test_notes_are_required(integration, publisher, notes):
    draft = factories.make_draft(integration)

    with pytest.raises(InvalidInput) as exc:
        publish_version(draft=draft, notes=notes, user=publisher)

    assert exc.value.errors == {"notes": ["notes are required to publish: say what changed"]}
    draft.refresh_from_db()
    assert draft.is_draft and draft.number is None


def test_handlers_must_name_files_of_the_bundle(integration, publisher):
    draft = factories.make_draft(integration, files={"other.lua": "-- x"})

    with pytest.raises(InvalidInput) as exc:
        publish_version(draft=draft, notes="Broken", user=publisher)

    # The message names the missing file; the full package validation decides the wording.
    assert any("main.lua" in message for messages in exc.value.errors.values() for message in messages)
    draft.refresh_from_db()
    assert draft.is_draft


def test_an_empty_manifest_cannot_be_published(integration, publisher):
    draft = factories.make_draft(integration, manifest={})
    with pytest.raises(InvalidInput) as exc:
        publish_version(draft=draft, notes="Empty", user=publisher)
    assert exc.value.errors == {"manifest": ["the draft has no manifest"]}


def test_publishing_twice_is_a_conflict(integration, publisher):
    draft = factories.make_draft(integration)
    publish_version(draft=draft, notes="First", user=publisher)

    with pytest.raises(Conflict) as exc:
        publish_version(draft=draft, notes="Again", user=publisher)

    assert exc.value.errors == {"draft": ["this draft was already published as version 1"]}
    assert integration.versions.count() == 1


def test_a_discarded_draft_cannot_be_published(integration, publisher):
    draft = factories.make_draft(integration)
    IntegrationVersion.objects.filter(pk=draft.pk).delete()
    with pytest.raises(Conflict):
        publish_version(draft=draft, notes="Gone", user=publisher)


@pytest.mark.parametrize("persona", ["member", "outsider"])
def test_only_publishers_publish(request, integration, persona):
    draft = factories.make_draft(integration)
    with pytest.raises(PermissionDenied):
        publish_version(draft=draft, notes="Nope", user=request.getfixturevalue(persona))
    draft.refresh_from_db()
    assert draft.is_draft


# --- Immutability ------------------------------------------------------------------------------

@pytest.fixture
def v1(integration):
    return factories.make_published(integration, notes="First")


@pytest.mark.parametrize(
    "field, value",
    [
        ("manifest", {"name": "changed"}),
        ("files", {"main.lua": "-- changed"}),
        ("notes", "Rewritten history"),
        ("number", 7),
    ],
)
def test_published_content_cannot_change_through_save(v1, field, value):
    version = IntegrationVersion.objects.get(pk=v1.pk)
    setattr(version, field, value)

    with pytest.raises(ImmutableVersion) as exc:
        version.save()

    assert list(exc.value.errors) == [field]
    fresh = IntegrationVersion.objects.get(pk=v1.pk)
    assert (fresh.manifest, fresh.files, fresh.notes, fresh.number) == (
        factories.SAMPLE_MANIFEST, factories.SAMPLE_FILES, "First", 1
    )


def test_a_published_version_cannot_move_to_another_integration(v1, acme):
    version = IntegrationVersion.objects.get(pk=v1.pk)
    version.integration = factories.make_integration(acme)
    with pytest.raises(ImmutableVersion) as exc:
        version.save()
    assert list(exc.value.errors) == ["integration_id"]
    assert IntegrationVersion.objects.get(pk=v1.pk).integration_id == v1.integration_id


def test_changes_made_in_place_are_caught(v1):
    version = IntegrationVersion.objects.get(pk=v1.pk)
    version.manifest["title"] = "Changed in place"
    version.files["main.lua"] += "-- appended"

    with pytest.raises(ImmutableVersion):
        version.save()

    assert IntegrationVersion.objects.get(pk=v1.pk).manifest == factories.SAMPLE_MANIFEST


def test_a_published_version_cannot_go_back_to_draft(v1):
    version = IntegrationVersion.objects.get(pk=v1.pk)
    version.state = VersionState.DRAFT
    with pytest.raises(ImmutableVersion) as exc:
        version.save()
    assert list(exc.value.errors) == ["state"]


def test_the_draft_object_the_caller_kept_cannot_rewrite_the_published_version(integration, publisher):
    draft = factories.make_draft(integration)
    publish_version(draft=draft, notes="First", user=publisher)

    draft.files = {"main.lua": "-- rewritten"}
    with pytest.raises(ImmutableVersion):
        draft.save()

    fresh = IntegrationVersion.objects.get(pk=draft.pk)
    assert fresh.is_published and fresh.files == factories.SAMPLE_FILES


def test_update_draft_refuses_a_published_version(v1, publisher):
    with pytest.raises(ImmutableVersion):
        update_draft(draft=v1, manifest={"name": "changed"}, user=publisher)


def test_a_published_version_cannot_be_deleted(v1):
    with pytest.raises(ImmutableVersion):
        v1.delete()
    with pytest.raises(ImmutableVersion):
        IntegrationVersion.objects.get(pk=v1.pk).delete()
    assert IntegrationVersion.objects.filter(pk=v1.pk).exists()


def test_only_available_toggles_and_the_checksum_is_stable(v1):
    checksum = v1.checksum
    version = IntegrationVersion.objects.get(pk=v1.pk)
    version.available = False
    version.checksum = "0" * 64  # ignored: the checksum follows the frozen content
    version.save()

    fresh = IntegrationVersion.objects.get(pk=v1.pk)
    assert fresh.available is False
    assert fresh.checksum == checksum == content_checksum(fresh.manifest, fresh.files)


@pytest.mark.parametrize(
    "change",
    [
        {"files": {"main.lua": "-- rewritten"}},
        {"manifest": {"name": "changed"}},
        {"notes": "Rewritten history"},
        {"number": 9},
        {"checksum": "0" * 64},
        {"state": VersionState.DRAFT, "number": None},
    ],
    ids=lambda change: ",".join(change),
)
def test_the_database_refuses_changes_that_bypass_the_model(v1, change):
    """QuerySet.update() skips save(): a trigger (migration 0003) holds the line there."""
    with pytest.raises(IntegrityError, match="published version cannot be changed"), transaction.atomic():
        IntegrationVersion.objects.filter(pk=v1.pk).update(**change)
    fresh = IntegrationVersion.objects.get(pk=v1.pk)
    assert (fresh.files, fresh.notes, fresh.number, fresh.checksum) == (
        factories.SAMPLE_FILES, "First", 1, v1.checksum
    )


def test_the_database_still_lets_availability_change_and_drafts_be_edited(v1, integration):
    assert IntegrationVersion.objects.filter(pk=v1.pk).update(available=False) == 1
    draft = create_draft(integration=integration)
    assert IntegrationVersion.objects.filter(pk=draft.pk).update(files={"main.lua": "-- new"}) == 1
    with connection.cursor() as cursor:  # and raw SQL is held to the same rule
        with pytest.raises(IntegrityError), transaction.atomic():
            cursor.execute(f"UPDATE {IntegrationVersion._meta.db_table} SET notes = 'x' WHERE id = %s", [v1.pk])


def test_equal_content_has_an_equal_checksum(v1, integration):
    draft = create_draft(integration=integration)
    assert draft.checksum == v1.checksum
    draft.files = {**draft.files, "extra.lua": "-- x"}
    draft.save()
    assert draft.checksum != v1.checksum


# --- Availability ----------------------------------------------------------------------------

def test_availability_toggles(v1, publisher):
    assert set_availability(version=v1, available=False, user=publisher).available is False
    assert IntegrationVersion.objects.available().count() == 0
    assert set_availability(version=v1, available=True, user=publisher).available is True
    v1.refresh_from_db()
    assert v1.available and v1.notes == "First" and v1.number == 1


def test_an_unavailable_version_cannot_be_installed(v1, publisher, acme):
    set_availability(version=v1, available=False, user=publisher)

    with pytest.raises(NotInstallable) as exc:
        factories.make_instance(v1, acme)

    assert exc.value.errors == {"version": ["version 1 is marked unavailable and cannot be installed"]}


def test_a_draft_cannot_be_installed_nor_made_available(integration, publisher, acme):
    draft = factories.make_draft(integration)

    with pytest.raises(NotInstallable) as exc:
        install_version(version=draft, organization=acme, name="Draft", config=factories.SAMPLE_CONFIG)
    assert exc.value.errors == {"version": ["a draft cannot be installed; publish it first"]}

    with pytest.raises(InvalidInput):
        set_availability(version=draft, available=True, user=publisher)


@pytest.mark.parametrize("persona", ["member", "outsider"])
def test_only_publishers_toggle_availability(request, v1, persona):
    with pytest.raises(PermissionDenied):
        set_availability(version=v1, available=False, user=request.getfixturevalue(persona))
    v1.refresh_from_db()
    assert v1.available


# --- Races (PostgreSQL: SQLite serializes whole transactions) ----------------------------------

@requires_postgres
@pytest.mark.postgres
@pytest.mark.parametrize("attempt", range(3))
def test_racing_publishes_of_one_draft(transactional_db, attempt):
    integration = factories.make_integration(factories.make_org())
    factories.make_published(integration)
    draft = factories.make_draft(integration)
    barrier = threading.Barrier(2)

    def publish():
        barrier.wait(timeout=10)
        return publish_version(draft=IntegrationVersion.objects.get(pk=draft.pk), notes="Race")

    results = factories.in_threads(publish, publish)

    published = [r for r in results if isinstance(r, IntegrationVersion)]
    conflicts = [r for r in results if isinstance(r, Conflict)]
    assert len(published) == 1 and len(conflicts) == 1, results
    assert published[0].number == 2
    numbers = list(integration.versions.order_by("number").values_list("number", flat=True))
    assert numbers == [1, 2]


@requires_postgres
@pytest.mark.postgres
def test_two_integrations_publish_at_once_without_waiting_for_each_other(transactional_db):
    """A holds its publish transaction open until B has published: if B's publish waited on
    A's locks, B could never finish and A's wait would run out."""
    org = factories.make_org()
    one, two = factories.make_integration(org), factories.make_integration(org)
    factories.make_published(one)
    draft_one, draft_two = factories.make_draft(one), factories.make_draft(two)
    a_holds_locks, b_done = threading.Event(), threading.Event()

    def publish_a():
        from django.db import transaction

        with transaction.atomic():
            version = publish_version(draft=draft_one, notes="A")
            a_holds_locks.set()
            return version, b_done.wait(timeout=10)

    def publish_b():
        assert a_holds_locks.wait(timeout=10)
        version = publish_version(draft=draft_two, notes="B")
        b_done.set()
        return version

    (version_a, b_finished_first), version_b = factories.in_threads(publish_a, publish_b)

    assert b_finished_first
    assert (version_a.number, version_b.number) == (2, 1)
    assert list(one.versions.values_list("number", flat=True).order_by("number")) == [1, 2]
    assert list(two.versions.values_list("number", flat=True)) == [1]
