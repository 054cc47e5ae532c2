"""Attachments and API schemas of an integration, scoped to its owner."""
from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html

from ..exceptions import DomainError
from ..models import ApiSchema, Attachment
from ..services import media
from .forms import AttachmentForm
from .mixins import ScopedAdmin, report
from .saving import ServiceSaveMixin, refusing


@admin.register(Attachment)
class AttachmentAdmin(ServiceSaveMixin, ScopedAdmin):
    form = AttachmentForm
    org_lookups = ("integration__owner",)
    list_display = ["title", "integration", "filename", "content_type", "size", "uploaded_by", "uploaded_at"]
    list_filter = ["content_type", "integration__category", ("integration__owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["title", "integration__name", "integration__description"]
    list_select_related = ["integration", "uploaded_by"]
    readonly_fields = ["content_type", "size", "uploaded_by", "uploaded_at"]

    def save_model(self, request, obj, form, change):
        with refusing():
            if change:
                obj.save(update_fields=["title"])
            else:
                created = media.add_attachment(
                    integration=form.cleaned_data["integration"], upload=form.cleaned_data["file"],
                    title=form.cleaned_data.get("title", ""), user=request.user,
                )
                obj.pk, obj.file, obj.title = created.pk, created.file, created.title
                obj._state.adding = False

    def delete_model(self, request, obj):
        media.remove_attachment(attachment=obj, user=request.user)

    def delete_queryset(self, request, queryset):
        for attachment in queryset.select_related("integration"):
            try:
                media.remove_attachment(attachment=attachment, user=request.user)
            except DomainError as exc:
                report(request, exc, prefix=f"{attachment}: ")


@admin.register(ApiSchema)
class ApiSchemaAdmin(ScopedAdmin):
    """Read-only: an upload must be parsed and indexed, which is the API-schema service's
    job, not a model form's."""

    org_lookups = ("integration__owner",)
    closed_to_everyone = ("add", "change")
    list_display = ["name", "integration", "title", "api_version", "uploaded_by", "uploaded_at"]
    list_filter = ["integration__category", ("integration__owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "title", "integration__name", "integration__description"]
    list_select_related = ["integration", "uploaded_by"]
    fields = ["integration", "name", "title", "api_version", "document_summary", "uploaded_by", "uploaded_at", "source"]
    readonly_fields = fields

    @admin.display(description="indexed document")
    def document_summary(self, obj):
        paths = (obj.document or {}).get("paths") or {}
        return format_html("{} paths", len(paths)) if obj.document else "Not indexed."
