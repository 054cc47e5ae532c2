"""``/api/v1/integrations/{slug}/attachments/``: documents shared with an integration.
They are seen with their integration (anonymous callers: a public one's); files are
fetched from ``download_url``, the marketplace's download view, which checks access again
and always serves them as downloads. Adding and removing go through ``services.media``."""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAuthenticatedOrReadOnly
from rest_framework.response import Response
from rest_framework.reverse import reverse

from .. import access
from ..models import Attachment, Integration
from ..services import media
from .schema import error_responses


class AttachmentSerializer(serializers.ModelSerializer):
    filename = serializers.CharField(read_only=True)
    download_url = serializers.SerializerMethodField(help_text="Downloads the file (checked against your access).")

    class Meta:
        model = Attachment
        fields = ["id", "title", "filename", "content_type", "size", "uploaded_at", "download_url"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_download_url(self, attachment: Attachment) -> str:
        return reverse("marketplace:attachment-download", args=[attachment.pk], request=self.context.get("request"))


class NewAttachmentSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="Any document but executables and HTML.")
    title = serializers.CharField(max_length=200, allow_blank=True, required=False,
                                  help_text="The file's name when left out.")


INTEGRATION = OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="The integration's slug.")


@extend_schema(parameters=[INTEGRATION])
@extend_schema_view(
    list=extend_schema(summary="An integration's attachments"),
    retrieve=extend_schema(summary="An attachment"),
    create=extend_schema(summary="Attach a document (multipart `file`, `title`)", request=NewAttachmentSerializer,
                         responses={201: AttachmentSerializer, **error_responses(403)}),
    destroy=extend_schema(summary="Remove an attachment and its file", responses={204: None, **error_responses(403)}),
)
class AttachmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [IsAuthenticatedOrReadOnly]
    serializer_class = AttachmentSerializer
    parser_classes = [MultiPartParser]
    filter_backends: list = []
    queryset = Attachment.objects.none()  # for the schema; requests use get_queryset

    def integration(self) -> Integration:
        if not hasattr(self, "_integration"):
            self._integration = access.get_integration_for(self.request.user, self.kwargs["slug"])
        return self._integration

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Attachment.objects.none()
        # Attachments are seen with their integration, which ``integration()`` checked.
        return Attachment.objects.filter(integration=self.integration()).order_by("title", "pk")

    def create(self, request, slug=None):
        integration = self.integration()
        body = NewAttachmentSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        attachment = media.add_attachment(
            integration=integration, upload=body.validated_data["file"], title=body.validated_data.get("title", ""),
            user=request.user,
        )
        return Response(self.get_serializer(attachment).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, slug=None, pk=None):
        attachment = self.get_object()
        attachment.integration = self.integration()
        media.remove_attachment(attachment=attachment, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
