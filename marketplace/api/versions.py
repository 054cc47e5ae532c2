"""``/api/v1/integrations/{slug}/versions/`` and ``…/diff/``: an integration's published
versions (read by whoever sees the integration, anonymous callers included for public ones),
their availability (publishers), their packages, and what changed between two versions or a
version and the draft."""
from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import IsAuthenticatedOrReadOnly
from rest_framework.response import Response

from .. import access
from ..exceptions import ImmutableVersion, InvalidInput, NotFound
from ..models import IntegrationVersion
from ..packaging.diffs import CHANGES, diff_versions
from ..services.packages import export_filename, export_version
from ..services.publishing import set_availability
from .schema import error_responses

SLUG = OpenApiParameter("slug", str, OpenApiParameter.PATH, description="The integration's slug.")
NUMBER = OpenApiParameter("number", int, OpenApiParameter.PATH, description="The version's number (1, 2, 3 …).")


class SourceField(serializers.CharField):
    """Lua source exactly as sent: text only (DRF's CharField would take 42 as "42"), never trimmed."""

    def __init__(self, **kwargs):
        super().__init__(allow_blank=True, trim_whitespace=False, **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class FilesField(serializers.DictField):
    """A bundle: relative path → Lua source."""

    child = SourceField()


class VersionSerializer(serializers.ModelSerializer):
    """A published version as lists show it: what it is, not its content."""

    file_names = serializers.SerializerMethodField(help_text="The bundle's file paths, sorted.")

    class Meta:
        model = IntegrationVersion
        fields = ["number", "state", "notes", "available", "published_at", "checksum", "file_names"]
        read_only_fields = fields

    def get_file_names(self, version) -> list[str]:
        return sorted(version.files) if isinstance(version.files, dict) else []


class VersionDetailSerializer(VersionSerializer):
    """A version with its content. Only ``available`` changes once published."""

    manifest = serializers.DictField(read_only=True, help_text="manifest.json as published.")
    files = FilesField(read_only=True, help_text="The bundle: path → Lua source.")

    class Meta(VersionSerializer.Meta):
        fields = [*VersionSerializer.Meta.fields, "manifest", "files"]
        read_only_fields = fields


class AvailabilitySerializer(serializers.Serializer):
    available = serializers.BooleanField(help_text="Whether new installs may choose this version.")


def _version_for(request, slug: str, number: int) -> IntegrationVersion:
    # Drafts have no number, so this finds published versions only: the draft is at …/draft/.
    return access.get_version_for(request.user, slug, number)


class VersionListView(generics.ListAPIView):
    permission_classes = [IsAuthenticatedOrReadOnly]
    serializer_class = VersionSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator, with no slug
            return IntegrationVersion.objects.none()
        integration = access.get_integration_for(self.request.user, self.kwargs["slug"])
        # visible_to is the one rule for who sees which version; ``integration`` answered 404 already.
        return (IntegrationVersion.objects.visible_to(self.request.user).published()
                .filter(integration=integration).order_by("-number"))

    @extend_schema(summary="An integration's published versions, newest first", parameters=[SLUG])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class VersionDetailView(generics.GenericAPIView):
    permission_classes = [IsAuthenticatedOrReadOnly]
    serializer_class = VersionDetailSerializer

    @extend_schema(summary="One published version with its manifest and bundle", parameters=[SLUG, NUMBER])
    def get(self, request, slug: str, number: int):
        return Response(VersionDetailSerializer(_version_for(request, slug, number)).data)

    @extend_schema(
        summary="Make a version available or unavailable for new installs (publishers)",
        description="Only `available` changes: a published version's content, number and notes never do, and "
                    "a request that would change any of them answers 409 (`immutable_version`). Instances "
                    "running the version keep running.",
        parameters=[SLUG, NUMBER], request=AvailabilitySerializer,
        responses={200: VersionDetailSerializer, **error_responses(403, 409)},
        examples=[OpenApiExample("withdraw", request_only=True, value={"available": False})],
    )
    def patch(self, request, slug: str, number: int):
        version = _version_for(request, slug, number)
        access.require_can_publish(request.user, version.integration)  # 403 before saying what may change
        self._refuse_other_changes(version, request.data)
        serializer = AvailabilitySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = set_availability(version=version, available=serializer.validated_data["available"],
                                   user=request.user)
        return Response(VersionDetailSerializer(version).data)

    @staticmethod
    def _refuse_other_changes(version: IntegrationVersion, data) -> None:
        """Sending back what GET gave, with ``available`` changed, is fine; changing anything
        else of a published version is the immutability conflict, not bad input."""
        if not isinstance(data, dict):
            return
        current = VersionDetailSerializer(version).data
        for name, value in data.items():
            if name != "available" and name in current and value != current[name]:
                raise ImmutableVersion(
                    f"version {version.number} is published and its {name} cannot change; "
                    "only available can (publish a new version instead)", field=name,
                )


class VersionPackageView(generics.GenericAPIView):
    permission_classes = [IsAuthenticatedOrReadOnly]

    def perform_content_negotiation(self, request, force=False):
        # The package goes out as it is, whatever Accept asks for (application/zip, say);
        # only an error is rendered, and always as JSON, rather than a 406.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        summary="The version's package (.zip): manifest.json, the bundle, API documents, README.md",
        parameters=[SLUG, NUMBER],
        responses={(200, "application/zip"): OpenApiResponse(
            OpenApiTypes.BINARY, description="The package; `Content-Disposition` names it `<slug>-v<number>.zip`.")},
    )
    def get(self, request, slug: str, number: int):
        version = _version_for(request, slug, number)
        response = HttpResponse(export_version(version=version, user=request.user), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{export_filename(version)}"'
        return response


# --- Diff -------------------------------------------------------------------------------------

class ManifestChangeSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="Dotted path in the manifest, e.g. handlers.sync.schedule.every.")
    change = serializers.ChoiceField(choices=CHANGES)
    old = serializers.JSONField(allow_null=True, help_text="The value before (null when added).")
    new = serializers.JSONField(allow_null=True, help_text="The value after (null when removed).")


class FileDiffSerializer(serializers.Serializer):
    file = serializers.CharField()
    change = serializers.ChoiceField(choices=CHANGES)
    diff = serializers.CharField(help_text="A unified diff (a/<file> → b/<file>, three lines of context).")
    added = serializers.IntegerField(help_text="Lines added.")
    removed = serializers.IntegerField(help_text="Lines removed.")


class DiffSerializer(serializers.Serializer):
    old = serializers.CharField(help_text="What `from` named: v<number> or draft.")
    new = serializers.CharField(help_text="What `to` named: v<number> or draft.")
    manifest = ManifestChangeSerializer(many=True, help_text="Manifest paths added, removed or changed, sorted.")
    files = FileDiffSerializer(many=True, help_text="Files of the bundle that differ, sorted.")
    unchanged_files = serializers.ListField(child=serializers.CharField())


def _side(request, slug: str, name: str, value: str | None) -> IntegrationVersion:
    """``from``/``to``: a version number, or ``draft`` (its publishers only)."""
    if not value:
        raise InvalidInput("give a version number or draft", field=name)
    if value == "draft":
        if not request.user.is_authenticated:  # no one anonymous publishes: say so, rather than 404
            raise NotAuthenticated()
        integration = access.get_integration_to_publish(request.user, slug)
        draft = integration.versions.drafts().first()
        if draft is None:
            raise NotFound(f"{slug} has no draft")
        return draft
    if not (value.isascii() and value.isdigit() and len(value) <= 20):  # "²" is a digit to isdigit()
        raise InvalidInput(f"{value[:40]!r} is neither a version number nor draft", field=name)
    return _version_for(request, slug, int(value))


class DiffView(generics.GenericAPIView):
    permission_classes = [IsAuthenticatedOrReadOnly]
    serializer_class = DiffSerializer

    @extend_schema(
        summary="What changed from one version to another (or to the draft)",
        description="Manifest changes by dotted path and a unified diff per Lua file. The draft is compared "
                    "only by its publishers.",
        parameters=[
            SLUG,
            OpenApiParameter("from", str, required=True, description="A version number, or `draft`."),
            OpenApiParameter("to", str, required=True, description="A version number, or `draft`."),
        ],
        responses={200: DiffSerializer, **error_responses(400, 403)},
    )
    def get(self, request, slug: str):
        old = _side(request, slug, "from", request.query_params.get("from"))
        new = _side(request, slug, "to", request.query_params.get("to"))
        return Response(diff_versions(old, new).as_dict())
