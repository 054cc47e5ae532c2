"""What instances store: container and cache entries. Read-only; rows can be deleted (a
stale cache entry) by the instance's organization. Stored values are the instance's own
organization's alone. (Handler runs, which their integration's publisher sees too, are
listed by the runtime's console, ``runtime/admin.py``, built on ``ReadOnlyRowsAdmin``.)"""
from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from ..models import CacheEntry, ContainerEntry
from .mixins import ScopedAdmin


def json_block(value) -> str:
    return format_html('<pre class="junction-code">{}</pre>', json.dumps(value, indent=2, ensure_ascii=False))


class ReadOnlyRowsAdmin(ScopedAdmin):
    closed_to_everyone = ("add", "change")
    publisher_actions = ("delete",)


@admin.register(ContainerEntry)
class ContainerEntryAdmin(ReadOnlyRowsAdmin):
    list_display = ["container", "key", "instance", "updated_at"]
    list_filter = ["container", ("instance__organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["container", "key", "instance__name"]
    fields = ["instance", "container", "key", "value_display", "updated_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).for_listing()

    @admin.display(description="value")
    def value_display(self, obj):
        return json_block(obj.value)


@admin.register(CacheEntry)
class CacheEntryAdmin(ReadOnlyRowsAdmin):
    list_display = ["key", "organization", "instance", "expires_at"]
    list_filter = [("organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["key", "instance__name"]
    fields = ["organization", "instance", "key", "value_display", "expires_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).for_listing()

    @admin.display(description="value")
    def value_display(self, obj):
        return json_block(obj.value)
