"""Instances: an installed version with its config and bindings. The console shows
``masked_config()`` only, never secrets, and changes instances through
``services.installs`` (reconfigure, enable/disable, uninstall). It does not install or
upgrade: customers do that on their own pages (``marketplace/web/``) or over the API.

The publisher of an integration sees every instance of it (to support its installers)
but changes only the instances of its own organizations, and sees another organization's
instance as ``access.INSTANCE_SUPPORT_FIELDS`` only: no config, no bound devices, no errors.
Those fields are left out of the page, not hidden on it."""
from __future__ import annotations

import json

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from .. import access
from ..choices import RunStatus
from ..exceptions import DomainError
from ..models import Instance, ResourceBinding
from ..services import calls, installs
from .forms import InstanceForm
from .mixins import ScopedAdmin, ScopedInline, report
from .saving import ServiceDeleteMixin, ServiceSaveMixin, refusing


def shows_instance_data(request, instance: Instance) -> bool:
    """``access.sees_instance_data``, asked once per instance and request: a change page
    asks for its fieldsets, its form and each inline separately."""
    answers = request.__dict__.setdefault("_junction_instance_data", {})
    if instance.pk not in answers:
        answers[instance.pk] = access.sees_instance_data(request.user, instance)
    return answers[instance.pk]


def withheld_note(instance: Instance, what: str) -> str:
    return f"{what} belong to {instance.organization}: only its members see them."


class ResourceBindingInline(ScopedInline, admin.TabularInline):
    """Bindings as they are; they are changed with the resource fields of the form above,
    so the service checks every alias together. Shown to the instance's organization only
    (see ``InstanceAdmin.get_inlines``)."""

    model = ResourceBinding
    fields = ["alias", "device", "device_target"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    @admin.display(description="target")
    def device_target(self, binding):
        return binding.device.target


@admin.register(Instance)
class InstanceAdmin(ServiceSaveMixin, ServiceDeleteMixin, ScopedAdmin):
    form = InstanceForm
    closed_to_everyone = ("add",)
    list_display = ["name", "organization", "integration", "version_label", "enabled", "state", "last_run_at"]
    list_filter = [
        "enabled", "state", "version__integration__category",
        ("organization", admin.RelatedOnlyFieldListFilter), ("version__integration", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["name", "version__integration__name", "version__integration__description"]
    inlines = [ResourceBindingInline]
    actions = ["enable", "disable", "ping"]
    delete_in_transaction = False  # uninstall handlers run outside any transaction

    def get_queryset(self, request):
        return super().get_queryset(request).for_listing()

    def get_form(self, request, obj=None, change=False, **kwargs):
        return super().get_form(request, obj, change, form=InstanceForm.for_instance(obj), **kwargs)

    def get_fieldsets(self, request, obj=None):
        if obj is not None and not shows_instance_data(request, obj):
            return [(None, {
                "fields": [*access.INSTANCE_SUPPORT_FIELDS, "bound_kinds"],
                "description": withheld_note(obj, "Its config, bound devices and errors"),
            })]
        about = ["organization", "version", "enabled", "state", "last_error", "installed_by", "installed_at", "last_run_at"]
        if obj is None or not self.has_change_permission(request, obj):
            return [(None, {"fields": ["name", *about]}), ("Config", {"fields": ["config_display"]})]
        aliases = [InstanceForm.binding_field(alias) for alias in obj.version.resources]
        return [
            (None, {"fields": ["name", *about]}),
            ("Config", {"fields": ["config_values"]}),
            ("Resources", {"fields": aliases, "description": "Every declared resource must be bound."}),
            ("Events", {"fields": ["webhook_urls"], "description": (
                "POST a JSON payload to an event's URL to run its handlers. The URLs hold this "
                "instance's secret token: share them only with the systems that send its events.")}),
        ]

    def get_readonly_fields(self, request, obj=None):
        return ["organization", "version", "enabled", "state", "last_error", "installed_by", "installed_at",
                "last_run_at", "config_display", "webhook_urls", "bound_kinds"]

    def get_inlines(self, request, obj):
        # Even a binding's name ("erp → Main ERP") is the customer's: the row's label shows it.
        return self.inlines if obj is not None and shows_instance_data(request, obj) else []

    @admin.display(description="resources")
    def bound_kinds(self, obj):
        """Which aliases are bound to what kind of device: enough to support, nothing to reach."""
        bindings = obj.bindings.select_related("device").order_by("alias")
        return format_html_join(", ", "<code>{}</code> ({})", ((b.alias, b.device.get_kind_display()) for b in bindings))

    @admin.display(description="webhook URLs")
    def webhook_urls(self, obj):
        events = sorted({spec.get("event") for spec in obj.version.handlers.values()
                         if isinstance(spec, dict) and spec.get("type") == "event" and spec.get("event")})
        if not events:
            return "This version handles no events."
        return format_html_join(
            "", '<div><code>{}</code> → <code>{}</code></div>',
            ((event, reverse("runtime:webhook", args=[obj.webhook_token, event])) for event in events),
        )

    @admin.display(description="integration", ordering="version__integration__name")
    def integration(self, obj):
        return obj.version.integration

    @admin.display(description="version", ordering="version__number")
    def version_label(self, obj):
        return obj.version.label

    @admin.display(description="config (secrets masked)")
    def config_display(self, obj):
        return format_html('<pre class="junction-code">{}</pre>', json.dumps(obj.masked_config(), indent=2))

    def save_model(self, request, obj, form, change):
        with refusing():
            installs.reconfigure_instance(
                instance=obj, name=form.cleaned_data["name"], config=form.cleaned_data.get("config_values") or {},
                bindings=form.bindings(), user=request.user,
            )

    def get_deleted_objects(self, objs, request):
        # Uninstalling takes the instance's runs, storage and schedules with it; the
        # service checks the role on the instance, so the cascaded rows need no model
        # permission of their own (other apps' admins may ask for Django permissions).
        deleted, counts, _perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected

    def delete_with_service(self, request, obj):
        installs.uninstall_instance(instance=obj, user=request.user)

    def refusal_label(self, obj) -> str:
        return obj.name

    def change_view(self, request, object_id, form_url="", extra_context=None):
        instance = self.get_object(request, unquote(object_id))
        tools = []
        if instance is not None and self.has_change_permission(request, instance):
            url = reverse("admin:marketplace_instance_enabled", args=[instance.pk])
            label = "Disable" if instance.enabled else "Enable"
            tools.append({"label": label, "url": f"{url}?enabled={0 if instance.enabled else 1}", "post": True})
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "junction_tools": tools})

    def get_urls(self):
        view = self.admin_site.admin_view(self.enabled_view)
        return [path("<path:object_id>/enabled/", view, name="marketplace_instance_enabled")] + super().get_urls()

    def enabled_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        instance = self.get_object(request, unquote(object_id))
        if instance is None:
            raise Http404("No such instance.")
        self._set_enabled(request, [instance], request.GET.get("enabled") == "1")
        return HttpResponseRedirect(reverse("admin:marketplace_instance_change", args=[instance.pk]))

    @admin.action(description="Enable the selected instances")
    def enable(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable the selected instances (config and data are kept)")
    def disable(self, request, queryset):
        self._set_enabled(request, queryset, False)

    @admin.action(description="Ping the selected instances (run their ping handler now)")
    def ping(self, request, queryset):
        for instance in queryset:
            try:
                runs = calls.ping(instance=instance, user=request.user)
            except DomainError as exc:
                report(request, exc, prefix=f"Ping of {instance.name}: ")
                continue
            if not runs:
                self.message_user(request, f"Ping of {instance.name}: its version has no ping handler.", level="warning")
            for run in runs:
                if run.status == RunStatus.SUCCEEDED:
                    self.message_user(request, f"Ping of {instance.name} succeeded (run #{run.pk}).")
                else:
                    self.message_user(
                        request, f"Ping of {instance.name} failed (run #{run.pk}): {run.error_code} {run.error_message}",
                        level="error",
                    )

    def _set_enabled(self, request, queryset, enabled: bool) -> None:
        changed = []
        for instance in queryset:
            if not self.has_change_permission(request, instance):
                self.message_user(request, f"{instance.name}: not an instance of your organizations.", level="error")
                continue
            try:
                installs.set_instance_enabled(instance=instance, enabled=enabled, user=request.user)
            except DomainError as exc:
                report(request, exc, prefix=f"{instance.name}: ")
            else:
                changed.append(instance.name)
        if changed:
            word = "Enabled" if enabled else "Disabled"
            self.message_user(request, f"{word}: {', '.join(changed)}.")
