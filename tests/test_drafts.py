"""The draft: create (empty or from the latest version), at most one, update, discard."""
from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError, transaction

from marketplace.exceptions import Conflict, ImmutableVersion, InvalidInput, PermissionDenied
from marketplace.models import IntegrationVersion
from marketplace.services.drafts import create_draft, discard_draft, get_or_create_draft, update_draft
from marketplace.services.publishing import publish_version

from . import factories
from .conftest import requires_postgres


@pytest.fixture
def integration(acme):
    return factories.make_integration(acme, name="Printer sync", slug="printer-sync", summary="Printers")


def test_first_draft_gets_a_starter_manifest(integration, publisher):
    draft = create_draft(integration=integration, user=publisher)

    assert draft.is_draft and draft.number is None and not draft.available
    assert draft.manifest["name"] == "printer-sync"
    assert draft.manifest["title"] == "Printer sync"
    assert draft.manifest["description"] == "Printers"
    assert draft.manifest["handlers"] == {} and draft.files == {}
    assert integration.draft == draft


def test_draft_copies_the_latest_published_version(integration, publisher):
    factories.make_published(integration, manifest={**factories.SAMPLE_MANIFEST, "title": "Version one"})
    v2 = factories.make_published(integration)

    draft = create_draft(integration=integration, user=publisher)

    assert draft.manifest == v2.manifest
    assert draft.files == v2.files
    assert draft.checksum == v2.checksum
    assert draft.pk != v2.pk


def test_draft_from_scratch_ignores_published_versions(integration, publisher):
    factories.make_published(integration)

    draft = create_draft(integration=integration, from_latest=False, user=publisher)

    assert draft.files == {}
    assert draft.manifest["handlers"] == {}


def test_editing_the_new_draft_leaves_the_published_version_alone(integration, publisher):
    v1 = factories.make_published(integration)
    draft = create_draft(integration=integration, user=publisher)

    draft.manifest["title"] = "Changed in the draft"
    draft.files["extra.lua"] = "-- new"
    draft.save()

    v1.refresh_from_db()
    assert v1.manifest == factories.SAMPLE_MANIFEST
    assert v1.files == factories.SAMPLE_FILES


def test_at_most_one_draft(integration, publisher):
    first = create_draft(integration=integration, user=publisher)

    with pytest.raises(Conflict) as exc:
        create_draft(integration=integration, user=publisher)

    assert exc.value.errors == {"integration": ["Printer sync already has a draft"]}
    assert get_or_create_draft(integration=integration, user=publisher) == first
    assert integration.versions.count() == 1


def test_get_or_create_draft_opens_one_when_there_is_none(integration, publisher):
    factories.make_published(integration)
    draft = get_or_create_draft(integration=integration, user=publisher)
    assert draft.is_draft and draft.files == factories.SAMPLE_FILES
    assert get_or_create_draft(integration=integration, user=publisher) == draft


def test_the_database_refuses_a_second_draft(integration):
    factories.make_draft(integration)
    with pytest.raises(IntegrityError), transaction.atomic():
        IntegrationVersion.objects.create(integration=integration)
    assert integration.versions.count() == 1


def test_update_draft_replaces_manifest_and_files(integration, publisher):
    draft = create_draft(integration=integration, user=publisher)
    before = draft.checksum

    updated = update_draft(
        draft=draft, manifest=factories.SAMPLE_MANIFEST, files={"main.lua": "-- x", "lib/util.lua": "-- y"},
        user=publisher,
    )

    updated.refresh_from_db()
    assert updated.manifest == factories.SAMPLE_MANIFEST
    assert updated.files == {"main.lua": "-- x", "lib/util.lua": "-- y"}
    assert updated.checksum != before


def test_update_draft_leaves_what_is_not_given(integration, publisher):
    draft = factories.make_draft(integration)
    update_draft(draft=draft, files={"main.lua": "-- only files"}, user=publisher)
    draft.refresh_from_db()
    assert draft.manifest == factories.SAMPLE_MANIFEST


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "../up.lua", "lib/../../up.lua", "lib\\win.lua", "./main.lua", "lib//main.lua", "lib/", ""],
)
def test_bundle_paths_must_be_plain_and_relative(integration, publisher, path):
    draft = factories.make_draft(integration)

    with pytest.raises(InvalidInput) as exc:
        update_draft(draft=draft, files={path: "-- x"}, user=publisher)

    assert exc.value.errors == {f"files.{path}": [f"{path!r} is not a plain relative path"]}
    draft.refresh_from_db()
    assert draft.files == factories.SAMPLE_FILES


def test_bundle_content_must_be_text_within_caps(integration, publisher, settings):
    draft = factories.make_draft(integration)
    settings.JUNCTION_BUNDLE_MAX_FILE_BYTES = 10
    settings.JUNCTION_BUNDLE_MAX_FILES = 2

    with pytest.raises(InvalidInput) as exc:
        update_draft(draft=draft, files={"main.lua": 42}, user=publisher)
    assert exc.value.errors == {"files.main.lua": ["file content must be text"]}

    with pytest.raises(InvalidInput) as exc:
        update_draft(draft=draft, files={"main.lua": "x" * 11}, user=publisher)
    assert exc.value.errors == {"files.main.lua": ["file is larger than 10 bytes"]}

    with pytest.raises(InvalidInput) as exc:
        update_draft(draft=draft, files={"a.lua": "", "b.lua": "", "c.lua": ""}, user=publisher)
    assert exc.value.errors == {"files": ["a bundle holds at most 2 files"]}

    with pytest.raises(InvalidInput) as exc:
        update_draft(draft=draft, files=["main.lua"], user=publisher)
    assert list(exc.value.errors) == ["files"]


def test_a_manifest_nested_past_any_recursion_limit_is_refused_not_raised(integration, publisher):
    """A manifest handed in by code (the API, a script) is checked without recursing."""
    draft = factories.make_draft(integration)
    deep: dict = {}
    node = deep
    for _ in range(50_000):
        node["a"] = {}
        node = node["a"]

    with pytest.raises(InvalidInput) as exc:
        update_draft(draft=draft, manifest={"name": "x", "deep": deep}, user=publisher)

    [message] = exc.value.errors["manifest"]
    assert "nested deeper than" in message
    draft.refresh_from_db()
    assert "deep" not in draft.manifest


def test_nul_characters_are_refused(integration, publisher):
    """PostgreSQL stores no U+0000 in jsonb: refused as input, not a failed save."""
    draft = factories.make_draft(integration)

    with pytest.raises(InvalidInput) as exc:
        update_draft(draft=draft, files={"main.lua": "a\x00b"}, user=publisher)
    assert exc.value.errors == {"files.main.lua": ["file content must be text: it contains a NUL character"]}

    with pytest.raises(InvalidInput) as exc:
        update_draft(draft=draft, files={"ma\x00in.lua": "-- x"}, user=publisher)
    assert list(exc.value.errors) == ["files.ma\x00in.lua"]

    with pytest.raises(InvalidInput) as exc:
        update_draft(draft=draft, manifest={"handlers": {"sync": {"file": ["main\x00.lua"]}}}, user=publisher)
    assert exc.value.errors == {
        "manifest": ["manifest is not plain JSON: at handlers.sync.file[0]: a string holds U+0000 (NUL), which cannot be stored"]
    }

    # The two characters backslash-zero, or an escape in Lua source, are ordinary text.
    update_draft(draft=draft, files={"main.lua": 'local nul = "\\0" -- \\u0000'}, user=publisher)
    draft.refresh_from_db()
    assert draft.files == {"main.lua": 'local nul = "\\0" -- \\u0000'}


def test_manifest_must_be_an_object(integration, publisher):
    draft = factories.make_draft(integration)
    with pytest.raises(InvalidInput) as exc:
        update_draft(draft=draft, manifest=["not", "an", "object"], user=publisher)
    assert exc.value.errors == {"manifest": ["manifest must be a JSON object"]}


def test_published_versions_are_not_drafts(integration, publisher):
    version = factories.make_published(integration)

    with pytest.raises(ImmutableVersion):
        update_draft(draft=version, files={"main.lua": "-- changed"}, user=publisher)
    with pytest.raises(ImmutableVersion):
        discard_draft(draft=version, user=publisher)

    version.refresh_from_db()
    assert version.files == factories.SAMPLE_FILES


def test_stale_draft_object_cannot_be_edited_after_publishing(integration, publisher):
    """The caller still holds the draft it published: update_draft reads the row again."""
    draft = factories.make_draft(integration)
    publish_version(draft=draft, notes="First", user=publisher)

    with pytest.raises(ImmutableVersion):
        update_draft(draft=draft, files={"main.lua": "-- sneaky"}, user=publisher)


def test_stale_draft_object_cannot_be_discarded_after_publishing(integration, publisher):
    draft = factories.make_draft(integration)
    publish_version(draft=draft, notes="First", user=publisher)

    with pytest.raises(ImmutableVersion):
        discard_draft(draft=draft, user=publisher)
    assert integration.versions.published().count() == 1


def test_discard_draft(integration, publisher):
    factories.make_published(integration)
    draft = create_draft(integration=integration, user=publisher)

    discard_draft(draft=draft, user=publisher)

    assert integration.versions.drafts().count() == 0
    assert integration.versions.published().count() == 1
    assert create_draft(integration=integration, user=publisher).is_draft


@pytest.mark.parametrize("persona", ["member", "outsider"])
def test_only_publishers_touch_drafts(request, integration, persona):
    user = request.getfixturevalue(persona)
    draft = factories.make_draft(integration)

    with pytest.raises(PermissionDenied):
        create_draft(integration=factories.make_integration(integration.owner), user=user)
    with pytest.raises(PermissionDenied):
        update_draft(draft=draft, files={}, user=user)
    with pytest.raises(PermissionDenied):
        discard_draft(draft=draft, user=user)
    draft.refresh_from_db()
    assert draft.files == factories.SAMPLE_FILES


@requires_postgres
@pytest.mark.postgres
def test_racing_create_draft_gives_one_draft(transactional_db):
    integration = factories.make_integration(factories.make_org())
    factories.make_published(integration)
    barrier = threading.Barrier(2)

    def create():
        barrier.wait(timeout=10)
        return create_draft(integration=integration)

    results = factories.in_threads(create, create)

    assert sorted(type(r).__name__ for r in results) == ["Conflict", "IntegrationVersion"], results
    assert integration.versions.drafts().count() == 1


@requires_postgres
@pytest.mark.postgres
@pytest.mark.parametrize("attempt", range(3))
def test_discard_racing_publish_never_loses_a_published_version(transactional_db, attempt):
    integration = factories.make_integration(factories.make_org())
    draft = factories.make_draft(integration)
    barrier = threading.Barrier(2)

    def publish():
        barrier.wait(timeout=10)
        return publish_version(draft=draft, notes="Race")

    def discard():
        barrier.wait(timeout=10)
        return discard_draft(draft=draft)

    published, discarded = factories.in_threads(publish, discard)

    if isinstance(published, IntegrationVersion):
        assert isinstance(discarded, ImmutableVersion), discarded
        assert list(integration.versions.values_list("number", flat=True)) == [1]
    else:
        assert isinstance(published, Conflict) and discarded is None, (published, discarded)
        assert not integration.versions.exists()
