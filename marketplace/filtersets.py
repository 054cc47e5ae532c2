"""Filters of the marketplace's integration list, kept out of the view so the REST API
(not built yet, issue 11) can read a query string the same way."""
from __future__ import annotations

import django_filters

from .models import Category, Integration


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
