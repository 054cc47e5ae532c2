"""Packages as domain operations: export a version as a .zip, import a package as a draft
(of an existing integration or a new one), and push it — import, validate, optionally
publish — in one atomic step for CI/CD."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, cast

from django.db import transaction

from .. import access
from ..exceptions import InvalidInput, NotPublishable, TooLarge
from ..models import ApiSchema, Integration, IntegrationVersion, Organization
from ..packaging.packages import Package, PackageRefused, build_zip, max_total_bytes, package_report, read_package
from ..packaging.report import Report
from ..packaging.validation import validate_version
from .apischemas import parse_api_document, upload_api_schema
from .catalog import create_integration, unique_slug
from .drafts import check_bundle, create_draft, update_draft
from .publishing import NOTES_REQUIRED, publish_version

if TYPE_CHECKING:
    from ..querysets import AnyUser


def export_filename(version: IntegrationVersion) -> str:
    return f"{version.integration.slug}-{version.label}.zip"


def export_version(*, version: IntegrationVersion, user: AnyUser = None) -> bytes:
    """The package of ``version`` as .zip bytes: manifest.json, the Lua bundle, the API
    documents uploaded for the integration and README.md (the integration's description).
    A draft is exported only to its publishers; a published version to whoever sees it."""
    if version.is_draft:
        access.require_can_publish(user, version.integration)
    else:
        access.require_visible(user, version.integration)
    documents = dict(ApiSchema.objects.filter(integration_id=version.integration_id).values_list("name", "source"))
    return build_zip(
        version.manifest if isinstance(version.manifest, dict) else {},
        version.files if isinstance(version.files, dict) else {},
        readme=version.integration.description or None,
        api_documents=documents,
    )


# Refusals for size: an upload past them answers 413 rather than 400 over HTTP.
TOO_LARGE_CODES = frozenset({"package_too_large", "package_file_too_large"})


def load_package(source: str | os.PathLike | bytes | BinaryIO) -> Package:
    """Read a package (folder, .zip path, bytes or file object). A refusal raises
    InvalidInput (TooLarge for the size limits) whose ``detail`` holds the one-error
    validation report, so callers can match on its code; so does a broken manifest."""
    try:
        package = read_package(source)
    except PackageRefused as exc:
        raise _refusal(exc) from None
    if package.manifest_error is not None:
        error = InvalidInput(package.manifest_error[1], field="manifest.json")
        error.detail = {"report": package_report(package).as_dict()}
        raise error
    return package


def check_upload_size(size: int) -> None:
    """Refuse, before reading a byte of it, an upload of ``size`` bytes past the package
    limit, as ``load_package`` would refuse it after reading (TooLarge)."""
    if size > max_total_bytes():
        raise _refusal(PackageRefused("package_too_large", f"the archive is larger than {max_total_bytes():,} bytes"))


def _refusal(exc: PackageRefused) -> InvalidInput:
    error_class = TooLarge if exc.code in TOO_LARGE_CODES else InvalidInput
    error = error_class(f"package refused: {exc.message}", field=exc.file or "package")
    error.detail = {"report": exc.as_report().as_dict()}
    return error


@transaction.atomic
def import_package(
    *, package: Package, integration: Integration | None = None, organization: Organization | None = None, user: AnyUser = None
) -> IntegrationVersion:
    """Make ``package`` the draft of ``integration`` (replacing the content of its draft if it
    has one), or of a new integration of ``organization`` named after the manifest (title,
    slug from ``name``, summary from ``description``, description from README.md). The
    package's API documents are uploaded (replacing documents of the same name). Returns the
    draft. Everything or nothing is written."""
    if package.manifest_error is not None:
        raise InvalidInput(package.manifest_error[1], field="manifest.json")
    # A dict whenever manifest_error is None (read_package).
    manifest = cast(dict, package.manifest)
    bundle = check_bundle(package.bundle)
    documents = package.api_documents
    for name, source in documents.items():  # refuse broken documents before writing anything
        try:
            parse_api_document(name=name, source=source)
        except InvalidInput as exc:
            raise InvalidInput(f"{name}: {exc.message}", field=name) from None
    if integration is None:
        if organization is None:
            raise InvalidInput("name the integration to import into, or the organization to create it in", field="integration")
        integration = _new_integration(manifest, organization=organization, readme=package.readme, user=user)
    else:
        access.require_can_publish(user, integration)
    for name, source in sorted(documents.items()):
        upload_api_schema(integration=integration, name=name, source=source, user=user)
    draft = integration.versions.drafts().first() or create_draft(integration=integration, user=user, from_latest=False)
    return update_draft(draft=draft, manifest=manifest, files=bundle, user=user)


def _new_integration(manifest: dict, *, organization: Organization, readme: str | None, user: AnyUser) -> Integration:
    slug = manifest.get("name") if isinstance(manifest.get("name"), str) else ""
    name = manifest.get("title") if isinstance(manifest.get("title"), str) and manifest["title"].strip() else slug
    if not name:
        raise InvalidInput("the manifest needs a name (or title) to create an integration", field="manifest.name")
    description = manifest.get("description")
    summary = description if isinstance(description, str) else ""
    free = bool(slug) and not Integration.objects.filter(slug=slug).exists()
    return create_integration(
        organization=organization, name=name, slug=slug if free else unique_slug(name),
        summary=summary[:240], description=readme or "", user=user,
    )


def find_push_target(manifest: dict, *, organization: Organization) -> Integration | None:
    """The integration of ``organization`` a package is pushed to when none is named: the
    one whose slug is the manifest's ``name``, else the one whose name is its ``title``."""
    owned = Integration.objects.filter(owner=organization)
    slug, title = manifest.get("name"), manifest.get("title")
    found = owned.filter(slug=slug).first() if isinstance(slug, str) and slug else None
    if found is None and isinstance(title, str) and title.strip():
        found = owned.filter(name=title.strip()).first()
    return found


@dataclass
class PushResult:
    integration: Integration
    version: IntegrationVersion
    created: bool      # a new integration was created
    published: bool    # ``version`` is the newly published version (else the draft)
    report: Report


@transaction.atomic
def push_package(
    *, package: Package, integration: Integration | None = None, organization: Organization | None = None,
    publish: bool = False, notes: str = "", user: AnyUser = None,
) -> PushResult:
    """Import ``package`` as the draft (see ``import_package``; without ``integration`` the
    organization's integration matching the manifest is used, else a new one is created),
    validate it and, with ``publish``, publish it with ``notes``. A publish refused (invalid
    package, missing notes) raises InvalidInput carrying the report's errors, and nothing at
    all is written — not even the draft."""
    if package.manifest_error is not None:
        raise InvalidInput(package.manifest_error[1], field="manifest.json")
    if publish and not (notes or "").strip():
        raise InvalidInput(NOTES_REQUIRED, field="notes")
    created = False
    if integration is None and organization is not None:
        integration = find_push_target(cast(dict, package.manifest), organization=organization)
        created = integration is None
    draft = import_package(package=package, integration=integration, organization=organization, user=user)
    report = validate_version(draft)
    if publish:
        if not report.valid:
            raise NotPublishable(errors=report.error_dict(), report=report)
        version = publish_version(draft=draft, notes=notes, user=user)
        return PushResult(integration=version.integration, version=version, created=created, published=True, report=report)
    return PushResult(integration=draft.integration, version=draft, created=created, published=False, report=report)
