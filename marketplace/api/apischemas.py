"""``/api/v1/api-schemas/``: OpenAPI / Swagger documents uploaded for integrations, with
the endpoints and models indexed from them (what a manifest's ``apiSchema`` names and
validation checks ``ctx.device.http`` calls against). Listed for the caller's own
organizations' integrations, or for any integration they see with ``?integration=``;
uploads and deletes go through ``services.apischemas``."""
from __future__ import annotations

from django.conf import settings
from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from .. import access
from ..filtersets import ApiSchemaFilterSet
from ..models import ApiEndpoint, ApiField, ApiModel, ApiSchema
from ..services import apischemas
from .refusals import fields_renamed
from .schema import error_responses


class ApiEndpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiEndpoint
        fields = ["method", "path", "operation_id", "summary", "parameters"]


class ApiFieldSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiField
        fields = ["name", "type", "required", "description"]


class ApiModelSerializer(serializers.ModelSerializer):
    fields = ApiFieldSerializer(many=True, read_only=True)

    class Meta:
        model = ApiModel
        fields = ["name", "description", "fields"]


class ApiSchemaSerializer(serializers.ModelSerializer):
    integration = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    endpoints = ApiEndpointSerializer(many=True, read_only=True)
    models = ApiModelSerializer(many=True, read_only=True)

    class Meta:
        model = ApiSchema
        fields = ["id", "integration", "name", "title", "api_version", "uploaded_at", "endpoints", "models"]
        read_only_fields = fields


class ApiSchemaUploadSerializer(serializers.Serializer):
    integration = serializers.SlugField(help_text="The integration's slug.")
    file = serializers.FileField(required=False, help_text="The document (JSON or YAML).")
    source = serializers.CharField(required=False, trim_whitespace=False,
                                   help_text="The document as text, instead of a file.")
    name = serializers.CharField(required=False, max_length=200, help_text=(
        "The file name the manifest's apiSchema refers to (e.g. openapi.json); the uploaded file's name when "
        "left out. A document of the same name is replaced."))

    def validate(self, data):
        if not data.get("file") and not data.get("source"):
            raise serializers.ValidationError({"file": ["send the document as 'file' (or its text as 'source')"]})
        if not data.get("name") and not data.get("file"):
            raise serializers.ValidationError({"name": ["name the document, e.g. openapi.json"]})
        return data


@extend_schema_view(
    list=extend_schema(summary="API documents of your organizations' integrations (or ?integration=<slug>)"),
    retrieve=extend_schema(summary="An API document with its indexed endpoints and models"),
    create=extend_schema(
        summary="Upload an OpenAPI 3 / Swagger 2 document for an integration (multipart); replaces one of the same name",
        request=ApiSchemaUploadSerializer, responses={201: ApiSchemaSerializer, **error_responses(403, 404, 409)},
    ),
    destroy=extend_schema(summary="Delete a document no version names",
                          responses={204: None, **error_responses(403, 409)}),
)
class ApiSchemaViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = ApiSchemaSerializer
    filterset_class = ApiSchemaFilterSet
    parser_classes = [MultiPartParser]

    def get_queryset(self):
        user = self.request.user
        documents = ApiSchema.objects.visible_to(user)
        if self.action == "list" and not self.request.query_params.get("integration"):
            # Unfiltered, the list is the caller's own work, not every public integration's documents.
            documents = documents.filter(integration__owner__in=access.organizations_of(user).values("pk"))
        return documents.select_related("integration").prefetch_related(
            Prefetch("endpoints", ApiEndpoint.objects.order_by("path", "method", "pk")),
            Prefetch("models", ApiModel.objects.order_by("name", "pk").prefetch_related("fields")),
        ).order_by("integration__slug", "name", "pk")

    def create(self, request):
        body = ApiSchemaUploadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        integration = access.get_integration_for(request.user, data["integration"])
        upload = data.get("file")
        if upload is not None:
            # One byte over the limit is enough for the service to refuse it as too large.
            source = upload.read(settings.JUNCTION_APISCHEMA_MAX_BYTES + 1)
            name = data.get("name") or upload.name
        else:
            source, name = data["source"], data["name"]
        with fields_renamed({"source": "file"} if upload is not None else {}):
            schema = apischemas.upload_api_schema(integration=integration, name=name, source=source, user=request.user)
        return Response(self.get_serializer(self.get_queryset().get(pk=schema.pk)).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, pk=None):
        apischemas.delete_api_schema(schema=self.get_object(), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

