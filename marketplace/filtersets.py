"""Filters of the integration list, shared by the marketplace page (``q``, ``category``)
and the REST API (which adds ``search``, ``organization`` and ``ordering``), so both read
a query string the same way; and the API documents' filter."""
from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Count, Q

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


class CatalogFilterSet(IntegrationFilterSet):
    """The marketplace page: its search box also matches the publisher's name, the category
    choices carry how many of ``queryset`` (what the viewer is offered, searched by ``q``)
    fall in each, and ``sort`` orders with the id as tie-break so pages never overlap."""

    SORTS = {"name": ("name", "pk"), "newest": ("-created_at", "-pk"), "installed": ("-instance_count", "name", "pk")}

    q = django_filters.CharFilter(method="search_catalog", label="Search")
    sort = django_filters.ChoiceFilter(
        method="sort_by", label="Sort by", empty_label=None,
        choices=[("name", "Name"), ("newest", "Newest"), ("installed", "Most installed")],
    )

    class Meta:
        model = Integration
        fields = ["q", "category", "sort"]

    def __init__(self, data=None, queryset=None, **kwargs):
        super().__init__(data, queryset=queryset, **kwargs)
        # Counted over the search, not the chosen category: each choice says what picking it gives.
        searched = self.queryset.search((self.data or {}).get("q", ""), publisher=True).values("pk")
        self.filters["category"].queryset = Category.objects.annotate(
            listed=Count("integrations", filter=Q(integrations__in=searched)),
        ).order_by("ordering", "name", "pk")
        self.form.fields["category"].label_from_instance = lambda c: f"{c.name} ({c.listed})"

    @property
    def qs(self):
        qs = super().qs
        # An absent or unknown sort leaves the filter unapplied: name order still holds.
        return qs if getattr(self.form, "cleaned_data", {}).get("sort") else qs.order_by(*self.SORTS["name"])

    def search_catalog(self, queryset, name, value):
        return queryset.search(value, publisher=True)

    def sort_by(self, queryset, name, value):
        return queryset.order_by(*self.SORTS[value])


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
