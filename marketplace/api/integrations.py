"""``/api/v1/integrations/``: the catalog the caller can see, and what publishers do to an
integration's entry in it: create, edit, delete, fork, set its icon. Reads are open to
anonymous callers (the public catalog); every write goes through ``services.catalog``,
``deletion``, ``forking`` or ``media``, which decide who may."""
from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAuthenticatedOrReadOnly
from rest_framework.response import Response

from .. import access
from ..choices import Visibility
from ..filtersets import IntegrationApiFilterSet
from ..models import Category, Integration, Organization
from ..querysets import PUBLISHING_ROLES
from ..services import catalog, deletion, forking, media
from .refusals import fields_renamed
from .schema import error_responses


def publishing_organization(user, slug: str | None) -> Organization:
    """The organization a create or fork names. Without a slug, the caller's only
    organization where they publish. With one, any organization of theirs: the service
    then refuses a plain member with 403, while another organization's slug is 404."""
    if slug:
        return access.get_organization_for(user, slug)
    return access.get_organization_for(user, None, PUBLISHING_ROLES)


class RequestUrls:
    """Absolute URLs for one request's serializer, each view's reversed once: on a page of
    50 integrations, ``reverse()`` and ``build_absolute_uri()`` per row took a third of
    the serializing time."""

    PLACEHOLDER = "__slug__"

    def __init__(self, context: dict) -> None:
        request = context.get("request")
        self.origin = request.build_absolute_uri("/")[:-1] if request is not None else ""
        self.templates: dict[str, str] = {}

    def absolute(self, url: str) -> str:
        return self.origin + url if url.startswith("/") and not url.startswith("//") else url

    def for_slug(self, view_name: str, slug: str) -> str:
        """``view_name``'s URL for ``slug`` (slugs are URL-safe: no quoting needed)."""
        template = self.templates.get(view_name)
        if template is None:
            template = self.templates[view_name] = self.absolute(reverse(view_name, kwargs={"slug": self.PLACEHOLDER}))
        return template.replace(self.PLACEHOLDER, slug)


def request_urls(field: serializers.Field) -> RequestUrls:
    # Kept on the root serializer (the list's), which lives for one request.
    root = field.root
    if not hasattr(root, "_request_urls"):
        root._request_urls = RequestUrls(field.context)
    return root._request_urls


@extend_schema_field(OpenApiTypes.URI)
class SlugUrlField(serializers.Field):
    """The absolute URL of ``view_name`` for the object's slug."""

    def __init__(self, view_name: str, **kwargs):
        super().__init__(source="slug", read_only=True, **kwargs)
        self.view_name = view_name

    def to_representation(self, slug):
        return request_urls(self).for_slug(self.view_name, slug)


@extend_schema_field(OpenApiTypes.URI)
class FileUrlField(serializers.Field):
    """The absolute URL of a stored file, or null when there is none."""

    def __init__(self, **kwargs):
        super().__init__(read_only=True, allow_null=True, **kwargs)

    def get_attribute(self, instance):
        return super().get_attribute(instance) or None

    def to_representation(self, value):
        return request_urls(self).absolute(value.url)


@extend_schema_field(OpenApiTypes.STR)
class RelatedSlugField(serializers.Field):
    """A related object's slug: from the column ``annotation`` where the list's query
    selected it, else through ``relation``."""

    def __init__(self, relation: str, annotation: str, **kwargs):
        super().__init__(source="*", read_only=True, **kwargs)
        self.relation, self.annotation = relation, annotation

    def to_representation(self, instance):
        if hasattr(instance, self.annotation):
            return getattr(instance, self.annotation)
        related = getattr(instance, self.relation)
        return related.slug if related is not None else None


class IntegrationSerializer(serializers.ModelSerializer):
    organization = RelatedSlugField("owner", "organization_slug", help_text="The owning organization's slug.")
    category = RelatedSlugField("category", "category_slug", allow_null=True, help_text="The category's slug, or null.")
    latest_version = serializers.SerializerMethodField(
        help_text="Number of the newest published version; null before the first.")
    icon_url = FileUrlField(source="icon", help_text="The icon (square PNG), or null.")
    icon_thumbnail_url = FileUrlField(source="icon_thumbnail", help_text="The listing's small icon, or null.")
    url = SlugUrlField("integration-detail", help_text="This integration in the API.")
    page_url = SlugUrlField("marketplace:integration-detail", help_text="The integration's marketplace page.")

    class Meta:
        model = Integration
        fields = [
            "slug", "name", "summary", "description", "category", "visibility", "organization", "latest_version",
            "icon_url", "icon_thumbnail_url", "created_at", "updated_at", "url", "page_url",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_latest_version(self, integration: Integration) -> int | None:
        # Lists annotate it (``with_latest_number``); a single integration asks.
        if hasattr(integration, "latest_number"):
            return integration.latest_number
        latest = integration.latest_published()
        return latest.number if latest else None


class IntegrationWriteSerializer(serializers.Serializer):
    """What a publisher sets; PATCH takes any of these (not the slug or organization)."""

    name = serializers.CharField(max_length=120)
    summary = serializers.CharField(max_length=240, allow_blank=True, required=False)
    description = serializers.CharField(allow_blank=True, required=False)
    category = serializers.SlugRelatedField(
        slug_field="slug", queryset=Category.objects.all(), allow_null=True, required=False,
        help_text="A category's slug, or null for none.")
    visibility = serializers.ChoiceField(choices=Visibility.choices, required=False)


class IntegrationCreateSerializer(IntegrationWriteSerializer):
    slug = serializers.SlugField(max_length=120, required=False, help_text="Chosen from the name when left out.")
    organization = serializers.SlugField(
        required=False, allow_null=True,
        help_text="The owning organization's slug; optional when you publish for one organization only.")


class ForkSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120, help_text="A new name: unique within the organization.")
    description = serializers.CharField(
        allow_blank=True, required=False, allow_null=True, help_text="The source's when left out.")
    organization = serializers.SlugField(
        required=False, allow_null=True,
        help_text="The organization that will own the fork; optional when you publish for one organization only.")


class IconSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A square PNG, 400 px or more on a side.")


@extend_schema_view(
    list=extend_schema(summary="The catalog: public integrations and your organizations' private ones"),
    retrieve=extend_schema(summary="An integration"),
    create=extend_schema(
        summary="Create an integration (owners and publishers)",
        request=IntegrationCreateSerializer, responses={201: IntegrationSerializer, **error_responses(403)},
        examples=[OpenApiExample("create", request_only=True, value={
            "name": "Printer sync", "summary": "Orders to label printers", "category": "printing",
            "visibility": "private", "organization": "acme"})],
    ),
    partial_update=extend_schema(
        summary="Change name, summary, description, category or visibility",
        request=IntegrationWriteSerializer(partial=True), responses={200: IntegrationSerializer, **error_responses(403)},
        examples=[OpenApiExample("publish to the marketplace", request_only=True, value={"visibility": "public"})],
    ),
    destroy=extend_schema(
        summary="Delete the integration with its versions, attachments and every installed instance",
        responses={204: None, **error_responses(403)},
    ),
)
class IntegrationViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    lookup_field = "slug"
    permission_classes = [IsAuthenticatedOrReadOnly]
    serializer_class = IntegrationSerializer
    filterset_class = IntegrationApiFilterSet

    def get_queryset(self):
        # Slugs as columns, not related objects: a page builds no Organization or Category.
        return (Integration.objects.visible_to(self.request.user).with_latest_number().with_related_slugs()
                .order_by("name", "pk"))

    def filter_queryset(self, queryset):
        # The filter form costs as much as serializing a few rows; with no filter in the
        # query string it would change nothing.
        if self.action == "list" and not self.request.query_params.keys() & self.filterset_class.base_filters.keys():
            return queryset
        return super().filter_queryset(queryset)

    def get_object(self) -> Integration:
        return access.get_integration_for(self.request.user, self.kwargs["slug"])

    def answer(self, integration: Integration, status_code: int = status.HTTP_200_OK) -> Response:
        return Response(self.get_serializer(integration).data, status=status_code)

    def retrieve(self, request, slug=None):
        return self.answer(self.get_object())

    def create(self, request):
        body = IntegrationCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        organization = publishing_organization(request.user, data.pop("organization", None))
        integration = catalog.create_integration(organization=organization, user=request.user, **data)
        return self.answer(integration, status.HTTP_201_CREATED)

    def partial_update(self, request, slug=None):
        integration = self.get_object()
        body = IntegrationWriteSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        integration = catalog.update_integration(integration=integration, user=request.user, **body.validated_data)
        return self.answer(integration)

    def destroy(self, request, slug=None):
        deletion.delete_integration(integration=self.get_object(), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Fork: a private copy under a new name, owned by your organization",
        request=ForkSerializer, responses={201: IntegrationSerializer, **error_responses(403)},
        examples=[OpenApiExample("fork", request_only=True, value={
            "name": "Printer sync (Globex)", "description": "Our variant", "organization": "globex"})],
    )
    @action(detail=True, methods=["post"])
    def fork(self, request, slug=None):
        source = self.get_object()
        body = ForkSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        organization = publishing_organization(request.user, data.get("organization"))
        fork = forking.fork_integration(
            source=source, organization=organization, name=data["name"], description=data.get("description"),
            user=request.user,
        )
        return self.answer(fork, status.HTTP_201_CREATED)

    @extend_schema(
        methods=["PUT"], summary="Replace the icon (multipart `file`: a square PNG of 400 px or more)",
        request=IconSerializer, responses={200: IntegrationSerializer, **error_responses(403)},
    )
    @extend_schema(methods=["DELETE"], summary="Remove the icon", request=None,
                   responses={204: None, **error_responses(403)})
    @action(detail=True, methods=["put", "delete"], parser_classes=[MultiPartParser])
    def icon(self, request, slug=None):
        integration = self.get_object()
        if request.method == "DELETE":
            media.clear_icon(integration=integration, user=request.user)
            return Response(status=status.HTTP_204_NO_CONTENT)
        body = IconSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with fields_renamed({"icon": "file"}):
            integration = media.set_icon(integration=integration, upload=body.validated_data["file"], user=request.user)
        return self.answer(integration)
