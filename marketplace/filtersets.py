"""Filters of the integration list, shared by the marketplace page (``q``, ``category``)
and the REST API (which adds ``search``, ``organization`` and ``ordering``), so both read
a query string the same way; and the API documents' filter."""
from __future__ import annotations

import django_filters
from django import forms

from .models import ApiSchema, Category, Integration


class IntegrationFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    category = django_filters.ModelChoiceFilter(
        queryset=Category.objects.all(), to_field_name="slug", empty_label="All categories"
    )

    class Meta:
        model = Integration
        fields = ["q", "category"]

    def search(self, queryset, name, value):
        return queryset.search(value)


class StableOrderingFilter(django_filters.OrderingFilter):
    """Orders by the fields asked for, then by primary key: pages never overlap or skip
    rows whose ordering fields tie."""

    def filter(self, qs, value):
        qs = super().filter(qs, value)
        return qs.order_by(*qs.query.order_by, "pk") if value else qs


class IntegrationApiFilterSet(IntegrationFilterSet):
    search = django_filters.CharFilter(method="search", label="Search name, summary and description")
    # By slug text, not a choice of organizations: an unknown slug and one with nothing
    # visible both give an empty list, so the filter tells no one which organizations exist.
    organization = django_filters.CharFilter(field_name="owner__slug", label="Organization slug")
    ordering = StableOrderingFilter(
        fields=("name", "slug", "created_at", "updated_at"),
        help_text="name, slug, created_at or updated_at; a leading '-' reverses.",
    )

    class Meta:
        model = Integration
        fields = ["search", "category", "organization", "ordering"]


class ApiSchemaFilterSet(django_filters.FilterSet):
    integration = django_filters.CharFilter(field_name="integration__slug", label="Integration slug")

    class Meta:
        model = ApiSchema
        fields = ["integration"]


class IdFilter(django_filters.NumberFilter):
    """An object's id: a whole number a database key can hold. Anything else (``1.5``,
    ``1e30``) is refused with 400 on the filter instead of reaching the database."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(*args, **kwargs)
