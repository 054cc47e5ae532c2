"""``/api/v1/integrations/{slug}/draft/…``: the one editable version of an integration —
read and write it (JSON or a package .zip), validate it, publish it. All of it belongs to the
owning organization's publishers: another organization answers 404, even for a public
integration, and a member who does not publish gets 403."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import generics, parsers, serializers, status
from rest_framework.response import Response

from .. import access
from ..exceptions import NotFound
from ..models import Integration, IntegrationVersion
from ..packaging.report import CODES
from ..packaging.validation import validate_version
from ..services.drafts import save_draft
from ..services.packages import check_upload_size, import_package, load_package
from ..services.publishing import publish_version
from .errors import ErrorBody
from .parsers import JSONParser
from .schema import ERRORS, error_responses
from .versions import SLUG, FilesField, VersionDetailSerializer

EXAMPLE_MANIFEST = {
    "name": "printer-sync",
    "title": "Printer sync",
    "permissions": ["log"],
    "handlers": {"sync": {"type": "timer", "file": "main.lua", "function": "sync", "schedule": {"every": "5m"}}},
}
MULTIPART_ENVELOPE = 64 * 1024  # boundaries, part headers, other form fields
EXAMPLE_FILES = {"main.lua": 'function sync(ctx, input)\n  ctx.log.info("tick")\n  return { ok = true }\nend\n'}


class DraftSerializer(serializers.ModelSerializer):
    manifest = serializers.DictField(help_text="manifest.json (docs/validation.md describes the format).")
    files = FilesField(help_text='The bundle: relative path → Lua source, e.g. {"main.lua": "function sync(ctx) … end"}.')

    class Meta:
        model = IntegrationVersion
        fields = ["state", "manifest", "files", "checksum", "created_at", "updated_at"]
        read_only_fields = ["state", "checksum", "created_at", "updated_at"]


class PackageUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A package .zip: manifest.json, Lua files, API documents, README.md.")


class ReportItemSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=sorted(CODES), help_text="Stable: docs/validation.md lists every code.")
    message = serializers.CharField()
    file = serializers.CharField(allow_null=True, help_text="The bundle file (or package entry) at fault.")
    line = serializers.IntegerField(allow_null=True)
    path = serializers.CharField(allow_null=True, help_text="The manifest place, e.g. handlers.sync.schedule.every.")


class ReportSerializer(serializers.Serializer):
    """The validation report, as `manage.py validate_integration --json` prints it."""

    valid = serializers.BooleanField(help_text="True when there are no errors (warnings allowed).")
    errors = ReportItemSerializer(many=True)
    warnings = ReportItemSerializer(many=True)


class PublishSerializer(serializers.Serializer):
    notes = serializers.CharField(allow_blank=True, help_text="What changed; required (not blank) to publish.")


class ErrorWithReportBody(ErrorBody):
    report = ReportSerializer(required=False, help_text="The validation report that refused it.")


class ErrorWithReport(serializers.Serializer):
    """The error shape, with the validation report behind the refusal."""

    error = ErrorWithReportBody()


def _with_report(code: int, text: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorWithReport, description=f"{ERRORS.get(str(code), '')} {text}".strip())


def _draft_of(integration: Integration) -> IntegrationVersion:
    draft = integration.versions.drafts().first()
    if draft is None:
        raise NotFound(f"{integration.slug} has no draft: PUT one (or its package) to open it")
    return draft


class _DraftWriteView(generics.GenericAPIView):
    """A view that writes an integration's draft. OPTIONS describes the PUT through DRF's
    metadata, which asks the view for its object first (a view without one was a 500)."""

    def get_object(self) -> Integration:
        return access.get_integration_to_publish(self.request.user, self.kwargs["slug"])


class DraftView(_DraftWriteView):
    serializer_class = DraftSerializer
    parser_classes = [JSONParser]

    @extend_schema(summary="The draft", parameters=[SLUG],
                   responses={200: DraftSerializer, **error_responses(403)})
    def get(self, request, slug: str):
        integration = access.get_integration_to_publish(request.user, slug)
        return Response(DraftSerializer(_draft_of(integration)).data)

    @extend_schema(
        summary="Write the draft (opened on the first PUT)",
        description="Replaces the draft's manifest and bundle. Answers 201 when this PUT opened the draft, "
                    "200 when it replaced it. A draft may be invalid: validation is what publishing needs.",
        parameters=[SLUG], request=DraftSerializer,
        responses={200: DraftSerializer, 201: DraftSerializer, **error_responses(403, 409)},
        examples=[OpenApiExample("draft", request_only=True, value={"manifest": EXAMPLE_MANIFEST, "files": EXAMPLE_FILES})],
    )
    def put(self, request, slug: str):
        integration = access.get_integration_to_publish(request.user, slug)
        serializer = DraftSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        draft, created = save_draft(integration=integration, user=request.user, **serializer.validated_data)
        return Response(DraftSerializer(draft).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class DraftPackageView(_DraftWriteView):
    serializer_class = PackageUploadSerializer
    parser_classes = [parsers.MultiPartParser]

    @extend_schema(
        summary="Replace the draft from a package .zip",
        description="The package's manifest and Lua files become the draft (opened when there is none) and its "
                    "API documents are uploaded, replacing documents of the same name. A refused package "
                    "writes nothing: 400, or 413 past the size limits, with the refusal as a one-error `report`.",
        parameters=[SLUG], request={"multipart/form-data": PackageUploadSerializer},
        responses={200: DraftSerializer, 201: DraftSerializer, **error_responses(403),
                   400: _with_report(400, "A refused package carries `report`."),
                   413: _with_report(413, "`report` names the limit (package_too_large, package_file_too_large).")},
    )
    def put(self, request, slug: str):
        integration = access.get_integration_to_publish(request.user, slug)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        # Refused before the body is parsed (and spooled to disk); the multipart envelope is
        # allowed for, so the archive itself is held to the limit by load_package.
        check_upload_size(length - MULTIPART_ENVELOPE)
        serializer = PackageUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        package = load_package(serializer.validated_data["file"])
        created = not integration.versions.drafts().exists()
        draft = import_package(package=package, integration=integration, user=request.user)
        return Response(DraftSerializer(draft).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class DraftValidateView(generics.GenericAPIView):
    serializer_class = ReportSerializer

    @extend_schema(
        summary="Validate the draft",
        description="The report `manage.py validate_integration --json` prints: `valid`, and `errors` and "
                    "`warnings` whose items are `{code, message, file, line, path}`. Writes nothing.",
        parameters=[SLUG], request=None, responses={200: ReportSerializer, **error_responses(403)},
    )
    def post(self, request, slug: str):
        integration = access.get_integration_to_publish(request.user, slug)
        return Response(validate_version(_draft_of(integration)).as_dict())


class DraftPublishView(generics.GenericAPIView):
    serializer_class = PublishSerializer
    parser_classes = [JSONParser]

    @extend_schema(
        summary="Publish the draft as the next version",
        description="The draft becomes version N+1, available at once. A draft with validation errors is "
                    "refused with 409 (`not_publishable`) carrying the whole `report`; warnings do not block.",
        parameters=[SLUG], request=PublishSerializer,
        responses={201: VersionDetailSerializer, **error_responses(403),
                   409: _with_report(409, "`not_publishable` carries `report`; `conflict` when another publish won.")},
        examples=[OpenApiExample("publish", request_only=True, value={"notes": "Retry failed syncs"})],
    )
    def post(self, request, slug: str):
        integration = access.get_integration_to_publish(request.user, slug)
        serializer = PublishSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = publish_version(draft=_draft_of(integration), notes=serializer.validated_data["notes"],
                                  user=request.user)
        return Response(VersionDetailSerializer(version).data, status=status.HTTP_201_CREATED)
