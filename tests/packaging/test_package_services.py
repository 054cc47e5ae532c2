"""Export a version as a .zip and import packages as drafts."""
from __future__ import annotations

import io
import json
import zipfile

import pytest

from marketplace.exceptions import InvalidInput, PermissionDenied
from marketplace.models import ApiSchema, Integration
from marketplace.services.apischemas import upload_api_schema
from marketplace.services.packages import export_filename, export_version, import_package, load_package
from tests import factories

from . import helpers


@pytest.fixture
def published(acme):
    integration = factories.make_integration(acme, name="Printer sync", slug="printer-sync", description="# Printer sync\n")
    package = load_package(helpers.GOOD)
    upload_api_schema(integration=integration, name="openapi.json", source=package.files["openapi.json"])
    return factories.make_published(integration, manifest=package.manifest, files=package.bundle)


def test_export_holds_manifest_bundle_documents_and_readme(published, publisher):
    data = export_version(version=published, user=publisher)

    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.namelist() == ["manifest.json", "openapi.json", "lifecycle.lua", "main.lua", "README.md"]
    assert json.loads(archive.read("manifest.json")) == published.manifest
    assert archive.read("main.lua").decode() == published.files["main.lua"]
    assert archive.read("README.md") == b"# Printer sync\n"
    assert export_filename(published) == "printer-sync-v1.zip"


def test_export_is_reproducible(published):
    assert export_version(version=published) == export_version(version=published)


def test_exported_packages_import_and_validate_unchanged(published, acme, publisher):
    package = load_package(export_version(version=published))

    draft = import_package(package=package, integration=published.integration, user=publisher)

    assert (draft.manifest, draft.files) == (published.manifest, published.files)
    assert draft.checksum == published.checksum


def test_drafts_are_exported_only_to_publishers(acme, outsider, publisher):
    draft = factories.make_draft(factories.make_integration(acme))
    with pytest.raises(PermissionDenied):
        export_version(version=draft, user=outsider)
    assert export_version(version=draft, user=publisher)


def test_import_as_a_new_integration(acme, publisher):
    draft = import_package(package=load_package(helpers.GOOD), organization=acme, user=publisher)

    integration = draft.integration
    assert (integration.slug, integration.name, integration.owner) == ("printer-sync", "Printer sync", acme)
    assert draft.is_draft and set(draft.files) == {"main.lua", "lifecycle.lua"}
    assert list(integration.api_schemas.values_list("name", flat=True)) == ["openapi.json"]


def test_import_takes_a_fresh_slug_when_the_manifest_name_is_taken(acme, globex, publisher):
    factories.make_integration(globex, name="Someone else's", slug="printer-sync")
    draft = import_package(package=load_package(helpers.GOOD), organization=acme, user=publisher)
    assert draft.integration.slug == "printer-sync-2"


def test_import_replaces_the_content_of_an_existing_draft(acme, publisher):
    integration = factories.make_integration(acme)
    existing = factories.make_draft(integration)

    draft = import_package(package=load_package(helpers.make_zip()), integration=integration, user=publisher)

    assert draft.pk == existing.pk
    assert (draft.manifest, draft.files) == (helpers.MINI_MANIFEST, {"main.lua": helpers.MINI_LUA})


def test_import_with_a_broken_api_document_writes_nothing(acme, publisher):
    entries = {"manifest.json": json.dumps(helpers.MINI_MANIFEST), "main.lua": helpers.MINI_LUA,
               "api.json": json.dumps({"openapi": "3.0.3", "paths": {}})}

    with pytest.raises(InvalidInput) as exc:
        import_package(package=load_package(helpers.make_zip(entries)), organization=acme, user=publisher)

    assert list(exc.value.errors) == ["api.json"]
    assert not Integration.objects.exists() and not ApiSchema.objects.exists()


def test_import_needs_a_manifest(acme):
    with pytest.raises(InvalidInput) as exc:
        load_package(helpers.make_zip({"main.lua": helpers.MINI_LUA}))
    assert exc.value.errors == {"manifest.json": ["the package has no manifest.json at its root"]}


def test_outsiders_cannot_import_into_someone_elses_integration(acme, outsider):
    integration = factories.make_integration(acme)
    with pytest.raises(PermissionDenied):
        import_package(package=load_package(helpers.make_zip()), integration=integration, user=outsider)
