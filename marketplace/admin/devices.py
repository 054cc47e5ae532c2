"""Devices: the targets instances bind their resource aliases to. Their credentials and
headers are write-only here and their DSN is shown with its password masked (see
``forms.DeviceForm``)."""
from __future__ import annotations

from django.contrib import admin

from ..models import Device
from .forms import DeviceForm, masked_keys
from .mixins import ScopedAdmin


@admin.register(Device)
class DeviceAdmin(ScopedAdmin):
    form = DeviceForm
    list_display = ["name", "organization", "kind", "target", "secrets", "created_at"]
    list_filter = ["kind", ("organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "base_url"]
    fieldsets = [
        (None, {"fields": ["organization", "name", "kind", "base_url", "dsn"]}),
        ("Secrets (write-only)", {"fields": ["new_credentials", "clear_credentials", "new_headers", "clear_headers"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).for_listing()

    @admin.display(description="stored secrets")
    def secrets(self, obj):
        return f"credentials: {masked_keys(obj.credentials)}; headers: {masked_keys(obj.headers)}"
