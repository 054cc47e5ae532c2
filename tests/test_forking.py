"""fork_integration: a new integration of the forking organization, content copied as a draft."""
from __future__ import annotations

from pathlib import Path

import pytest

from marketplace.choices import Visibility
from marketplace.exceptions import InvalidInput, PermissionDenied
from marketplace.models import Attachment, Integration
from marketplace.services.deletion import delete_integration
from marketplace.services.forking import fork_integration
from marketplace.services.media import set_icon

from . import factories


@pytest.fixture
def source(acme):
    """A public Acme integration with two versions, a newer draft, an icon and an attachment."""
    integration = factories.make_integration(
        acme, name="Printer sync", slug="printer-sync", summary="Printers", description="The original",
        category=factories.make_category("Printing"),
    )
    factories.make_published(integration, manifest={**factories.SAMPLE_MANIFEST, "title": "Version one"})
    factories.make_published(integration)
    factories.make_draft(integration, files={"main.lua": "-- unpublished work"})
    set_icon(integration=integration, upload=factories.png_upload(400))
    factories.make_attachment(integration, title="Manual")
    return integration


def read(field_file) -> bytes:
    return Path(field_file.path).read_bytes()


def test_fork_copies_the_latest_published_content_as_a_draft(source, globex, outsider):
    fork = fork_integration(source=source, organization=globex, name="My printer sync", description="Ours", user=outsider)

    fork = Integration.objects.get(pk=fork.pk)
    assert fork.owner == globex
    assert (fork.name, fork.slug, fork.description, fork.summary) == ("My printer sync", "my-printer-sync", "Ours", "Printers")
    assert fork.category == source.category
    assert fork.visibility == Visibility.PRIVATE
    assert fork.forked_from == source
    [draft] = fork.versions.all()
    assert draft.is_draft
    assert (draft.manifest, draft.files) == (factories.SAMPLE_MANIFEST, factories.SAMPLE_FILES)
    assert source.versions.count() == 3


def test_fork_copies_icon_and_attachments_as_new_files(source, globex, outsider):
    fork = fork_integration(source=source, organization=globex, name="My printer sync", user=outsider)

    assert fork.icon.name != source.icon.name and read(fork.icon) == read(source.icon)
    assert fork.icon_thumbnail.name != source.icon_thumbnail.name
    assert read(fork.icon_thumbnail) == read(source.icon_thumbnail)
    [original] = source.attachments.all()
    [copy] = fork.attachments.all()
    assert copy.file.name != original.file.name and read(copy.file) == read(original.file)
    assert (copy.title, copy.content_type, copy.size, copy.filename) == ("Manual", "application/pdf", original.size, "manual.pdf")
    assert copy.uploaded_by == outsider


def test_fork_survives_the_deletion_of_its_source(source, globex, outsider, publisher, django_capture_on_commit_callbacks):
    fork = fork_integration(source=source, organization=globex, name="My printer sync", user=outsider)
    fork_files = [fork.icon.path, fork.icon_thumbnail.path, fork.attachments.get().file.path]
    source_files = [source.icon.path, source.icon_thumbnail.path, source.attachments.get().file.path]

    with django_capture_on_commit_callbacks(execute=True):
        delete_integration(integration=source, user=publisher)

    fork = Integration.objects.get(pk=fork.pk)
    assert fork.forked_from is None
    assert fork.versions.count() == 1 and fork.attachments.count() == 1
    assert all(Path(p).exists() for p in fork_files)
    assert not any(Path(p).exists() for p in source_files)


def test_description_defaults_to_the_source(source, globex, outsider):
    fork = fork_integration(source=source, organization=globex, name="Copy", user=outsider)
    assert fork.description == "The original"


def test_a_source_without_published_versions_gives_its_draft_to_its_own_publishers(acme, publisher):
    source = factories.make_integration(acme)
    factories.make_draft(source, files={"main.lua": "-- draft only"})

    fork = fork_integration(source=source, organization=acme, name="Copy", user=publisher)

    assert fork.versions.get().files == {"main.lua": "-- draft only"}


def test_an_outsider_never_gets_the_unpublished_draft(acme, globex, outsider):
    source = factories.make_integration(acme)
    factories.make_draft(source, files={"main.lua": "-- unpublished work"})

    fork = fork_integration(source=source, organization=globex, name="Copy", user=outsider)

    assert fork.versions.count() == 0


def test_a_source_without_content_gives_an_empty_fork(acme, globex, outsider):
    fork = fork_integration(source=factories.make_integration(acme), organization=globex, name="Copy", user=outsider)
    assert fork.versions.count() == 0 and not fork.icon and fork.attachments.count() == 0


def test_the_same_name_in_the_same_organization_is_refused(source, acme, publisher):
    with pytest.raises(InvalidInput) as exc:
        fork_integration(source=source, organization=acme, name="Printer sync", user=publisher)

    assert exc.value.errors == {"name": ["Acme already has an integration named 'Printer sync'"]}
    assert Integration.objects.count() == 1


def test_forking_within_the_organization_under_a_new_name(source, acme, publisher):
    fork = fork_integration(source=source, organization=acme, name="Printer sync (beta)", user=publisher)
    assert fork.owner == acme and fork.slug == "printer-sync-beta"


def test_a_private_source_cannot_be_forked_by_an_outsider(source, globex, outsider, media_root):
    source.visibility = Visibility.PRIVATE
    source.save()
    files_before = sorted(p for p in media_root.rglob("*") if p.is_file())

    with pytest.raises(PermissionDenied):
        fork_integration(source=source, organization=globex, name="Stolen", user=outsider)

    assert Integration.objects.count() == 1
    assert Attachment.objects.count() == 1
    assert sorted(p for p in media_root.rglob("*") if p.is_file()) == files_before


@pytest.mark.parametrize("persona", ["member", "outsider"])
def test_only_publishers_of_the_target_organization_fork_into_it(request, source, acme, persona):
    with pytest.raises(PermissionDenied):
        fork_integration(source=source, organization=acme, name="Into Acme", user=request.getfixturevalue(persona))
    assert Integration.objects.count() == 1
