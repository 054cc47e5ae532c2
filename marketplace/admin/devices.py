"""Devices: the targets instances bind their resource aliases to, written through
``services.devices``. Their credentials and headers are write-only here and their DSN is
shown with its password masked (see ``forms.DeviceForm``)."""
from __future__ import annotations

from django.contrib import admin

from ..models import Device
from ..services import devices
from .forms import DeviceForm, masked_keys
from .mixins import ScopedAdmin
from .saving import ServiceDeleteMixin, ServiceSaveMixin, refusing


@admin.register(Device)
class DeviceAdmin(ServiceSaveMixin, ServiceDeleteMixin, ScopedAdmin):
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

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        fields = {name: data.get(name, "") for name in ("name", "kind", "base_url", "dsn")}
        # An empty box keeps the stored secrets; "remove all" clears them.
        secrets = {name: {} if data.get(f"clear_{name}") else data.get(f"new_{name}") or None
                   for name in ("credentials", "headers")}
        with refusing():
            if change:
                saved = devices.update_device(device=obj, organization=data["organization"], **fields, **secrets,
                                              user=request.user)
            else:
                saved = devices.create_device(organization=data["organization"], **fields, **secrets, user=request.user)
        # The admin keeps using ``obj`` (log entry, redirect): make it the saved row.
        for field in Device._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding, obj._state.db = False, saved._state.db

    def get_deleted_objects(self, objs, request):
        # A bound device's bindings are protected; the service refuses the delete and
        # names the instances, which Django's page (listing bindings) would not.
        deleted, counts, perms_needed, _protected = super().get_deleted_objects(objs, request)
        return deleted, counts, perms_needed, []

    delete_select_related = ("organization",)

    def delete_with_service(self, request, obj):
        devices.delete_device(device=obj, user=request.user)
