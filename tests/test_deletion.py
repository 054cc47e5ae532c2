"""delete_integration: everything the integration owns goes, rows and files; forks and devices stay."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from marketplace.exceptions import PermissionDenied
from marketplace.models import (
    ApiSchema,
    Attachment,
    CacheEntry,
    ContainerEntry,
    Device,
    HandlerRun,
    Instance,
    Integration,
    IntegrationVersion,
    ResourceBinding,
)
from marketplace.services.deletion import delete_integration, deletion_summary
from marketplace.services.forking import fork_integration
from marketplace.services.media import set_icon
from runtime.models import TimerSchedule

from . import factories


def files_under(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def doomed(acme, globex):
    """Acme's integration with two versions and a draft, an icon, two attachments, an API
    schema, and an instance in each of Globex and Acme with bindings, storage, cache and runs."""
    integration = factories.make_integration(acme, name="Doomed")
    v1 = factories.make_published(integration)
    v2 = factories.make_published(integration)
    factories.make_draft(integration)
    set_icon(integration=integration, upload=factories.png_upload(400))
    factories.make_attachment(integration, title="Manual")
    factories.make_attachment(integration, name="datasheet.pdf", title="Data sheet")
    factories.make_api_schema(integration)
    for organization, name, version in [(globex, "Zeta", v2), (acme, "Alpha", v1)]:
        instance = factories.make_instance(version, organization, name=name)
        first = factories.make_run(instance)
        factories.make_run(instance, first_run=first, attempt=2)
        factories.make_container_entry(instance)
        factories.make_cache_entry(instance)
    return integration


def test_summary_lists_instances_first_and_counts_right(doomed, acme, globex):
    summary = deletion_summary(doomed)

    assert [(i.organization, i.name) for i in summary.instances] == [(acme, "Alpha"), (globex, "Zeta")]
    expected = {
        "installed instances": 2,
        "versions": 3,
        "attachments": 2,
        "API schemas": 1,
        "resource bindings": 4,
        "container entries": 2,
        "cache entries": 2,
        "handler runs": 4,
        "timer schedules": 2,  # the "sync" timer of each instance
    }
    assert {label: summary.counts[label] for label in expected} == expected
    assert list(summary.counts)[0] == "installed instances"
    assert summary.lines[0] == "2 installed instances"


def test_summary_queries_do_not_grow_with_instances(doomed, acme):
    def queries_for_summary() -> int:
        with CaptureQueriesContext(connection) as captured:
            summary = deletion_summary(doomed)
            [(i.organization.name, i.version.label) for i in summary.instances]  # what the confirmation page shows
        return len(captured)

    before = queries_for_summary()
    for _ in range(3):
        factories.make_instance(doomed.latest_published(), factories.make_org())
    # One query for the instances (organization and version joined), one count per line.
    assert queries_for_summary() == before


def test_summary_leaves_out_what_is_not_there(acme):
    summary = deletion_summary(factories.make_integration(acme))
    assert summary.instances == [] and summary.lines == []


def test_delete_removes_every_row_and_file(doomed, acme, globex, publisher, media_root, django_capture_on_commit_callbacks):
    other = factories.make_integration(acme, name="Bystander")
    tenant_cache = factories.make_cache_entry(organization=globex, key="tenant")
    devices = set(Device.objects.values_list("pk", flat=True))
    assert TimerSchedule.objects.count() == 2
    assert len(files_under(media_root)) == 4  # icon, thumbnail, two attachments

    with django_capture_on_commit_callbacks(execute=True):
        summary = delete_integration(integration=doomed, user=publisher)

    assert summary.counts["installed instances"] == 2
    assert list(Integration.objects.all()) == [other]
    for model in (
        IntegrationVersion, Attachment, ApiSchema, Instance, ResourceBinding, ContainerEntry, HandlerRun, TimerSchedule,
    ):
        assert not model.objects.exists(), model.__name__
    assert list(CacheEntry.objects.all()) == [tenant_cache]
    assert set(Device.objects.values_list("pk", flat=True)) == devices
    assert files_under(media_root) == []


def test_a_fork_survives_with_forked_from_cleared(doomed, globex, outsider, publisher, media_root, django_capture_on_commit_callbacks):
    fork = fork_integration(source=doomed, organization=globex, name="Saved copy", user=outsider)
    stored = [fork.icon, fork.icon_thumbnail, *(a.file for a in fork.attachments.all())]
    fork_files = sorted(str(Path(f.path).relative_to(media_root)) for f in stored)

    with django_capture_on_commit_callbacks(execute=True):
        delete_integration(integration=doomed, user=publisher)

    fork.refresh_from_db()
    assert fork.forked_from is None
    assert fork.versions.count() == 1 and fork.attachments.count() == 2
    assert files_under(media_root) == fork_files


def test_a_bulk_delete_removes_files_too(doomed, media_root, django_capture_on_commit_callbacks):
    """The admin's "delete selected" deletes through a queryset: the files still go."""
    with django_capture_on_commit_callbacks(execute=True):
        Integration.objects.filter(pk=doomed.pk).delete()

    assert not Attachment.objects.exists()
    assert files_under(media_root) == []


def test_a_rolled_back_delete_keeps_rows_and_files(doomed, publisher, media_root, django_capture_on_commit_callbacks):
    files = files_under(media_root)

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        with transaction.atomic():
            delete_integration(integration=doomed, user=publisher)
            raise RuntimeError("changed my mind")

    assert Integration.objects.filter(pk=doomed.pk).exists()
    assert Instance.objects.count() == 2
    assert files_under(media_root) == files


@pytest.mark.parametrize("persona", ["member", "outsider"])
def test_only_publishers_delete(request, doomed, persona):
    with pytest.raises(PermissionDenied):
        delete_integration(integration=doomed, user=request.getfixturevalue(persona))
    assert Integration.objects.filter(pk=doomed.pk).exists()


def test_superuser_deletes(doomed, admin_user):
    delete_integration(integration=doomed, user=admin_user)
    assert not Integration.objects.filter(pk=doomed.pk).exists()
