"""``/api/v1/categories/``: the marketplace's shelves, each with how many integrations the
caller can see on it."""
from __future__ import annotations

from django.db.models import Count, Q
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.permissions import AllowAny

from ..models import Category, Integration


class CategorySerializer(serializers.ModelSerializer):
    integration_count = serializers.IntegerField(
        read_only=True, help_text="Integrations on this shelf that you can see (public ones when anonymous).")

    class Meta:
        model = Category
        fields = ["slug", "name", "description", "integration_count"]


@extend_schema_view(list=extend_schema(summary="Categories with the number of integrations you can see in each"))
class CategoryViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    permission_classes = [AllowAny]
    serializer_class = CategorySerializer
    filter_backends: list = []

    def get_queryset(self):
        visible = Integration.objects.visible_to(self.request.user).values("pk")
        return Category.objects.annotate(
            integration_count=Count("integrations", filter=Q(integrations__in=visible)),
        ).order_by("ordering", "name", "pk")
