"""``/api/v1/tokens/``: a user's personal API tokens."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response

from ..models import ApiToken
from ..services.tokens import create_api_token, revoke_api_token


class TokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at"]
        read_only_fields = ["id", "prefix", "created_at", "last_used_at"]


class NewTokenSerializer(TokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The secret: shown in this response only.")

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token"]


@extend_schema_view(
    list=extend_schema(summary="Your API tokens (never their secrets)"),
    create=extend_schema(
        summary="Create a token; its secret is in this response only",
        responses={201: NewTokenSerializer},
        examples=[OpenApiExample("ci", request_only=True, value={"name": "ci-pipeline"})],
    ),
    destroy=extend_schema(summary="Revoke a token"),
)
class TokenViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    serializer_class = TokenSerializer

    def get_queryset(self):
        return ApiToken.objects.of(self.request.user)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, secret = create_api_token(user=request.user, name=serializer.validated_data["name"])
        token.token = secret
        return Response(NewTokenSerializer(token).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, *args, **kwargs):
        revoke_api_token(user=request.user, token_id=kwargs["pk"])
        return Response(status=status.HTTP_204_NO_CONTENT)
