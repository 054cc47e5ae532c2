"""Versions: the draft is edited here (manifest and Lua files, through
``services.drafts.update_draft``) and published with notes; published versions are
read-only history whose availability is the only thing that changes."""
from __future__ import annotations

import json

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from ..exceptions import DomainError
from ..models import Instance, IntegrationVersion
from ..packaging.validation import validate_version
from ..services import drafts as draft_service
from ..services import publishing
from .forms import DraftForm, PublishForm
from .mixins import PublisherRowsAdmin, ScopedInline, report
from .packaging import version_tools, version_urls
from .pages import render_action_page
from .saving import ServiceDeleteMixin, ServiceSaveMixin, refusing


def publish_drafts(model_admin, request, drafts, *, action=None, selected=(), cancel_url=None):
    """Ask for the notes, then publish each draft with them. Returns None when done (the
    caller redirects) or the notes page. A refusal of one draft is reported and the
    others still publish; missing notes refuse them all before anything is written."""
    if not drafts:
        messages.warning(request, "Nothing to publish: no draft among the selection.")
        return None
    applying = "apply" in request.POST
    form = PublishForm(request.POST if applying else None)
    if applying and form.is_valid():
        for draft in drafts:
            try:
                version = publishing.publish_version(draft=draft, notes=form.cleaned_data["notes"], user=request.user)
            except DomainError as exc:
                if "notes" in exc.errors:
                    for text in exc.errors["notes"]:
                        form.add_error("notes", text)
                    break
                report(request, exc, prefix=f"{draft.integration}: ")
            else:
                messages.success(request, f"Published {version.integration} as version {version.number}.")
        if not form.errors:
            return None
    return render_action_page(
        model_admin, request, title="Publish drafts", form=form, objects=[d.integration for d in drafts],
        submit_label="Publish", action=action, selected=selected, cancel_url=cancel_url,
        intro="Each draft becomes the next numbered version of its integration, available for install at once.",
    )


def code_block(value) -> str:
    return format_html('<pre class="junction-code">{}</pre>', json.dumps(value, indent=2, ensure_ascii=False))


class InstanceInline(ScopedInline, admin.TabularInline):
    """The instances running this version, in every organization."""

    model = Instance
    fields = ["name", "organization", "enabled", "state", "last_run_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(IntegrationVersion)
class IntegrationVersionAdmin(ServiceSaveMixin, ServiceDeleteMixin, PublisherRowsAdmin):
    form = DraftForm
    # Drafts are opened from their integration ("Create draft"), never added blank.
    closed_to_everyone = ("add",)
    list_display = ["integration", "label", "state", "available", "published_at", "published_by", "instance_count"]
    list_filter = ["state", "available", "integration__category", ("integration__owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["integration__name", "integration__description", "notes"]
    list_select_related = ["integration", "published_by"]
    actions = ["publish_selected", "make_available", "make_unavailable"]
    inlines = [InstanceInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_instances=Count("instances"))

    def get_form(self, request, obj=None, change=False, **kwargs):
        return super().get_form(request, obj, change, form=DraftForm.for_draft(obj), **kwargs)

    def get_fieldsets(self, request, obj=None):
        if obj is not None and obj.is_draft and self.has_change_permission(request, obj):
            files = DraftForm.for_draft(obj).file_field_names()
            return [
                ("Validation", {"fields": ["validation_report"]}),
                (None, {"fields": ["integration", "label", "manifest"]}),
                *([("Lua files", {"fields": files})] if files else []),
                ("Add a file", {"fields": ["new_file_path", "new_file_source"], "classes": ["collapse"] if files else []}),
                ("Details", {"fields": ["checksum", "created_at", "updated_at"], "classes": ["collapse"]}),
            ]
        return [
            (None, {"fields": ["integration", "label", "state", "available", "notes", "published_at", "published_by"]}),
            ("Content", {"fields": ["manifest_code", "files_code", "checksum"]}),
        ]

    def get_readonly_fields(self, request, obj=None):
        return [
            "integration", "label", "state", "available", "notes", "published_at", "published_by",
            "manifest_code", "files_code", "checksum", "created_at", "updated_at", "validation_report",
        ]

    @admin.display(description="report")
    def validation_report(self, obj):
        # The same report as the Validate page and `manage.py validate_integration`.
        return render_to_string("admin/marketplace/_report_table.html", {"report": validate_version(obj)})

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None and obj.is_published else []

    def has_change_permission(self, request, obj=None):
        # A published version is history: viewable, never changed in a form.
        return super().has_change_permission(request, obj) and (obj is None or obj.is_draft)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (obj is None or obj.is_draft)

    @admin.display(description="version", ordering="number")
    def label(self, obj):
        return obj.label

    @admin.display(description="instances", ordering="n_instances")
    def instance_count(self, obj):
        return obj.n_instances

    @admin.display(description="manifest")
    def manifest_code(self, obj):
        return code_block(obj.manifest)

    @admin.display(description="files")
    def files_code(self, obj):
        if not obj.files:
            return "No files."
        return format_html_join(
            "", '<div class="junction-file"><strong>{}</strong><pre class="junction-code">{}</pre></div>',
            sorted(obj.files.items()),
        )

    # --- saving and deleting through services ---------------------------------------------
    def save_model(self, request, obj, form, change):
        with refusing():
            draft_service.update_draft(
                draft=obj, manifest=form.cleaned_data["manifest"], files=form.cleaned_data["files"], user=request.user
            )

    def delete_with_service(self, request, obj):
        draft_service.discard_draft(draft=obj, user=request.user)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        version = self.get_object(request, unquote(object_id))
        tools = []
        if version is not None and self.may(request, "change", version):
            if version.is_draft:
                tools.append({"label": "Publish…", "url": reverse("admin:marketplace_integrationversion_publish", args=[version.pk])})
            else:
                label = "Mark unavailable" if version.available else "Mark available"
                url = reverse("admin:marketplace_integrationversion_availability", args=[version.pk])
                tools.append({"label": label, "url": f"{url}?available={0 if version.available else 1}", "post": True})
        if version is not None:
            tools += version_tools(version)
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "junction_tools": tools})

    # --- operations -----------------------------------------------------------------------
    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/publish/", view(self.publish_view), name="marketplace_integrationversion_publish"),
            path(
                "<path:object_id>/availability/", view(self.availability_view),
                name="marketplace_integrationversion_availability",
            ),
            *version_urls(self),
        ] + super().get_urls()

    def _version_for_change(self, request, object_id) -> IntegrationVersion:
        version = self.get_object(request, unquote(object_id))
        if version is None:
            raise Http404("No such version.")
        if not self.may(request, "change", version):
            raise PermissionDenied
        return version

    def publish_view(self, request, object_id):
        draft = self._version_for_change(request, object_id)
        page = reverse("admin:marketplace_integrationversion_change", args=[draft.pk])
        if not draft.is_draft:
            messages.info(request, f"{draft} is already published.")
            return HttpResponseRedirect(page)
        return publish_drafts(self, request, [draft], cancel_url=page) or HttpResponseRedirect(page)

    def availability_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        version = self._version_for_change(request, object_id)
        self._set_availability(request, [version], request.GET.get("available") == "1")
        return HttpResponseRedirect(reverse("admin:marketplace_integrationversion_change", args=[version.pk]))

    @admin.action(description="Publish the selected drafts…")
    def publish_selected(self, request, queryset):
        selected = list(queryset.select_related("integration"))
        for version in selected:
            if version.is_published and "apply" not in request.POST:
                messages.info(request, f"{version} is already published.")
        drafts = [v for v in selected if v.is_draft]
        return publish_drafts(self, request, drafts, action="publish_selected", selected=selected)

    @admin.action(description="Mark the selected versions available")
    def make_available(self, request, queryset):
        self._set_availability(request, queryset.select_related("integration"), True)

    @admin.action(description="Mark the selected versions unavailable")
    def make_unavailable(self, request, queryset):
        self._set_availability(request, queryset.select_related("integration"), False)

    def _set_availability(self, request, versions, available: bool) -> None:
        word = "available" if available else "unavailable"
        done = []
        for version in versions:
            try:
                publishing.set_availability(version=version, available=available, user=request.user)
            except DomainError as exc:
                report(request, exc, prefix=f"{version}: ")
            else:
                done.append(str(version))
        if done:
            messages.success(request, f"Marked {word}: {', '.join(done)}.")
