"""Attachments and API schemas of an integration, scoped to its owner, written through
``services.media`` and ``services.apischemas``."""
from __future__ import annotations

from django.contrib import admin
from django.db.models import Count

from ..models import ApiEndpoint, ApiField, ApiModel, ApiSchema, Attachment
from ..services import apischemas, media
from .forms import ApiSchemaForm, AttachmentForm
from .mixins import PublisherRowsAdmin, ScopedInline
from .saving import ServiceDeleteMixin, ServiceSaveMixin, refusing


@admin.register(Attachment)
class AttachmentAdmin(ServiceSaveMixin, ServiceDeleteMixin, PublisherRowsAdmin):
    form = AttachmentForm
    list_display = ["title", "integration", "filename", "content_type", "size", "uploaded_by", "uploaded_at"]
    list_filter = ["content_type", "integration__category", ("integration__owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["title", "integration__name", "integration__description"]
    list_select_related = ["integration", "uploaded_by"]
    readonly_fields = ["content_type", "size", "uploaded_by", "uploaded_at"]

    def save_model(self, request, obj, form, change):
        with refusing():
            if change:
                media.rename_attachment(attachment=obj, title=form.cleaned_data.get("title", ""), user=request.user)
            else:
                created = media.add_attachment(
                    integration=form.cleaned_data["integration"], upload=form.cleaned_data["file"],
                    title=form.cleaned_data.get("title", ""), user=request.user,
                )
                obj.pk, obj.file, obj.title = created.pk, created.file, created.title
                obj._state.adding = False

    delete_select_related = ("integration",)

    def delete_with_service(self, request, obj):
        media.remove_attachment(attachment=obj, user=request.user)


class EndpointInline(ScopedInline, admin.TabularInline):
    model = ApiEndpoint
    fields = ["method", "path", "operation_id", "summary"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "indexed endpoints"


@admin.register(ApiSchema)
class ApiSchemaAdmin(ServiceSaveMixin, ServiceDeleteMixin, PublisherRowsAdmin):
    """Uploads go through ``services.apischemas.upload_api_schema``, which parses, checks
    and indexes the document; saving again under the same name replaces it."""

    form = ApiSchemaForm
    list_display = ["name", "integration", "title", "api_version", "endpoint_count", "uploaded_by", "uploaded_at"]
    list_filter = ["integration__category", ("integration__owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "title", "integration__name", "integration__description"]
    list_select_related = ["integration", "uploaded_by"]
    inlines = [EndpointInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_endpoints=Count("endpoints"))

    def get_fields(self, request, obj=None):
        about = ["title", "api_version", "uploaded_by", "uploaded_at"]
        return ["integration", "name", "upload", "source"] + (about if obj else [])

    def get_readonly_fields(self, request, obj=None):
        about = ["title", "api_version", "uploaded_by", "uploaded_at"]
        return ["integration", "name", *about] if obj else []

    @admin.display(description="endpoints", ordering="n_endpoints")
    def endpoint_count(self, obj):
        return obj.n_endpoints

    def save_model(self, request, obj, form, change):
        with refusing():
            saved = apischemas.upload_api_schema(
                integration=obj.integration, name=obj.name, source=form.cleaned_data["source"], user=request.user,
            )
        obj.pk, obj._state.adding = saved.pk, False

    delete_select_related = ("integration",)

    def get_deleted_objects(self, objs, request):
        # The index (endpoints, models, fields) is read-only in the console and goes with
        # its document: deleting the document needs no permission on the index rows.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        index = {model._meta.verbose_name for model in (ApiEndpoint, ApiModel, ApiField)}
        return deleted, counts, perms_needed - index, protected

    def delete_with_service(self, request, obj):
        apischemas.delete_api_schema(schema=obj, user=request.user)
