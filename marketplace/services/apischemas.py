"""Uploading an OpenAPI / Swagger document for an integration and indexing it."""
from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction

from .. import access
from ..exceptions import Conflict, InvalidInput
from ..models import ApiEndpoint, ApiField, ApiModel, ApiSchema, Integration
from ..packaging.openapi import IndexedDocument, OpenApiError, check_document, index_document, load_document

if TYPE_CHECKING:
    from ..querysets import AnyUser

DOCUMENT_SUFFIXES = (".json", ".yaml", ".yml")


def check_document_name(name: str) -> str:
    """A relative file name as the manifest's ``apiSchema`` writes it: ``openapi.json`` or
    ``apis/erp.yaml``."""
    name = (name or "").strip()
    pure = PurePosixPath(name)
    if (not name or "\\" in name or "\x00" in name or pure.is_absolute() or name != str(pure)
            or any(part in ("..", ".") or part.startswith(".") for part in pure.parts) or len(name) > 200):
        raise InvalidInput("name the document with a relative file name such as openapi.json", field="name")
    if not name.lower().endswith(DOCUMENT_SUFFIXES) or name == "manifest.json":
        raise InvalidInput("an API document is named *.json, *.yaml or *.yml (not manifest.json)", field="name")
    return name


def parse_api_document(*, name: str, source: str) -> dict:
    """Parse and validate a document; InvalidInput (field ``source``) with the validator's
    message when it is broken. Writes nothing."""
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("the document is not UTF-8 text", field="source") from None
    if not isinstance(source, str) or not source.strip():
        raise InvalidInput("the document is empty", field="source")
    if len(source.encode()) > settings.JUNCTION_APISCHEMA_MAX_BYTES:
        raise InvalidInput(f"the document is larger than {settings.JUNCTION_APISCHEMA_MAX_BYTES:,} bytes", field="source")
    try:
        document = load_document(source, name)
        check_document(document)
    except OpenApiError as exc:
        raise InvalidInput(f"invalid OpenAPI document: {exc}", field="source") from None
    # JSON's "\u0000" and YAML's "\0" decode to NUL, which PostgreSQL's text and jsonb refuse.
    if "\x00" in source or "\\u0000" in json.dumps(document):
        raise InvalidInput("the document contains NUL characters (\\u0000), which cannot be stored", field="source")
    return document


@transaction.atomic
def upload_api_schema(*, integration: Integration, name: str, source: str, user: AnyUser = None) -> ApiSchema:
    """Store an OpenAPI 3.x or Swagger 2.0 document (JSON or YAML) under ``name`` for
    ``integration`` and index its endpoints, models and fields. A document of the same name
    is replaced, index included. Broken documents raise InvalidInput; nothing is written."""
    access.require_can_publish(user, integration)
    name = check_document_name(name)
    document = parse_api_document(name=name, source=source)
    indexed = index_document(document)
    Integration.objects.select_for_update().get(pk=integration.pk)
    schema = ApiSchema.objects.filter(integration=integration, name=name).first() or ApiSchema(
        integration=integration, name=name
    )
    schema.source = source if isinstance(source, str) else source.decode("utf-8")
    schema.document = document
    schema.title = indexed.title
    schema.api_version = indexed.api_version
    if user is not None and user.is_authenticated:
        schema.uploaded_by = user
    try:
        with transaction.atomic():
            schema.save()
    except IntegrityError:
        raise Conflict(f"another upload of {name} happened at the same moment; try again", field="name") from None
    reindex(schema, indexed)
    return schema


def reindex(schema: ApiSchema, indexed: IndexedDocument | None = None) -> ApiSchema:
    """Replace the index rows of ``schema`` from its stored document."""
    indexed = indexed or index_document(schema.document or {})
    schema.endpoints.all().delete()
    schema.models.all().delete()
    seen = set()
    endpoints = []
    for endpoint in indexed.endpoints:
        key = (endpoint.method, endpoint.path[:500])
        if key in seen:
            continue
        seen.add(key)
        endpoints.append(ApiEndpoint(
            schema=schema, method=endpoint.method, path=endpoint.path[:500], operation_id=endpoint.operation_id,
            summary=endpoint.summary, parameters=endpoint.parameters,
        ))
    ApiEndpoint.objects.bulk_create(endpoints)
    models = ApiModel.objects.bulk_create(
        [ApiModel(schema=schema, name=m.name[:200], description=m.description) for m in indexed.models]
    )
    fields = [
        ApiField(model=row, name=f.name[:200], type=f.type, required=f.required, description=f.description)
        for row, model in zip(models, indexed.models)
        for f in {f.name[:200]: f for f in model.fields}.values()
    ]
    ApiField.objects.bulk_create(fields)
    return schema


def naming_versions(schema: ApiSchema) -> list[tuple[str, str]]:
    """(version label, manifest path) of each version of the schema's integration, draft
    included, whose resources name it in ``apiSchema``."""
    named = []
    for version in schema.integration.versions.order_by("number"):
        for alias, spec in version.resources.items():
            if isinstance(spec, dict) and spec.get("apiSchema") == schema.name:
                named.append((version.label, f"resources.{alias}.apiSchema"))
    return named


@transaction.atomic
def delete_api_schema(*, schema: ApiSchema, user: AnyUser = None) -> None:
    """Delete an uploaded document no version names. Published versions keep theirs (they
    cannot change, and their API is documented by it) and the draft would stop validating:
    both refuse the delete; uploading a document of the same name replaces it."""
    access.require_can_publish(user, schema.integration)
    Integration.objects.select_for_update().get(pk=schema.integration_id)  # no publish in between
    named = naming_versions(schema)
    if named:
        where = ", ".join(f"{label} ({path})" for label, path in named)
        raise Conflict(
            f"{schema.name} is named by {where}; upload a new document under the same name to replace it",
            field="schema",
        )
    schema.delete()
