"""Console pages of packaging: the OpenAPI index (endpoints, models and their fields,
searchable and read-only: uploads rebuild it), and per version the validation report, the
diff against another version and the .zip export. Everything calls the same functions as
the CLI and the services."""
from __future__ import annotations

from functools import partial

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse

from ..exceptions import DomainError
from ..models import ApiEndpoint, ApiField, ApiModel, IntegrationVersion
from ..packaging.diffs import diff_versions
from ..packaging.validation import validate_version
from ..services.packages import export_filename, export_version
from .mixins import PublisherRowsAdmin, ScopedInline, report

READ_ONLY = ("add", "change", "delete")


@admin.register(ApiEndpoint)
class ApiEndpointAdmin(PublisherRowsAdmin):
    """Every indexed operation of the uploaded API documents: find ``/orders/{id}`` or
    ``createOrder`` across an organization's integrations."""

    closed_to_everyone = READ_ONLY
    list_display = ["method", "path", "operation_id", "summary", "schema", "integration"]
    list_filter = ["method", ("schema__integration", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["path", "operation_id", "summary", "schema__name", "schema__title", "schema__integration__name"]
    list_select_related = ["schema__integration"]
    fields = ["schema", "method", "path", "operation_id", "summary", "parameters"]
    readonly_fields = fields

    @admin.display(ordering="schema__integration__name")
    def integration(self, obj):
        return obj.schema.integration


class ApiFieldInline(ScopedInline, admin.TabularInline):
    model = ApiField
    fields = ["name", "type", "required", "description"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(ApiModel)
class ApiModelAdmin(PublisherRowsAdmin):
    """The models (schemas) of the uploaded API documents, searchable by field too."""

    closed_to_everyone = READ_ONLY
    list_display = ["name", "schema", "integration", "field_names"]
    list_filter = [("schema__integration", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "description", "fields__name", "fields__description", "schema__name",
                     "schema__integration__name"]
    list_select_related = ["schema__integration"]
    fields = ["schema", "name", "description"]
    readonly_fields = fields
    inlines = [ApiFieldInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("fields")

    @admin.display(ordering="schema__integration__name")
    def integration(self, obj):
        return obj.schema.integration

    @admin.display(description="fields")
    def field_names(self, obj):
        return ", ".join(f"{f.name}*" if f.required else f.name for f in obj.fields.all())


# --- Per-version pages, mounted by IntegrationVersionAdmin -------------------------------------

def version_urls(model_admin) -> list:
    """URL patterns for the version admin: validate, diff and export."""
    view = model_admin.admin_site.admin_view
    return [
        path("<path:object_id>/validate/", view(partial(validate_view, model_admin)),
             name="marketplace_integrationversion_validate"),
        path("<path:object_id>/diff/", view(partial(diff_view, model_admin)), name="marketplace_integrationversion_diff"),
        path("<path:object_id>/export/", view(partial(export_view, model_admin)),
             name="marketplace_integrationversion_export"),
    ]


def version_tools(version: IntegrationVersion) -> list[dict]:
    """Object-tool links for a version's page."""
    return [
        {"label": "Validate", "url": reverse("admin:marketplace_integrationversion_validate", args=[version.pk])},
        {"label": "Diff", "url": reverse("admin:marketplace_integrationversion_diff", args=[version.pk])},
        {"label": "Export .zip", "url": reverse("admin:marketplace_integrationversion_export", args=[version.pk])},
    ]


def _viewable(model_admin, request, object_id) -> IntegrationVersion:
    version = model_admin.get_object(request, unquote(object_id))
    if version is None:
        raise Http404("No such version.")
    if not model_admin.has_view_permission(request, version):
        raise PermissionDenied
    return version


def _page(model_admin, request, version, *, title: str, template: str, **context) -> TemplateResponse:
    return TemplateResponse(request, template, {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts, "original": version, "title": title, "version": version,
        "version_url": reverse("admin:marketplace_integrationversion_change", args=[version.pk]),
        "media": model_admin.media, **context,
    })


def validate_view(model_admin, request, object_id):
    version = _viewable(model_admin, request, object_id)
    return _page(model_admin, request, version, title=f"Validation of {version}",
                 template="admin/marketplace/version_report.html", report=validate_version(version))


def default_base(version: IntegrationVersion) -> IntegrationVersion | None:
    """What a version is compared with by default: the draft with the latest published
    version, version N with version N-1."""
    published = version.integration.versions.published()
    if version.is_published:
        published = published.filter(number__lt=version.number)
    return published.order_by("-number").first()


def diff_view(model_admin, request, object_id):
    version = _viewable(model_admin, request, object_id)
    others = list(version.integration.versions.exclude(pk=version.pk).order_by("-number"))
    base = None
    if request.GET.get("against"):
        base = next((v for v in others if str(v.pk) == request.GET["against"]), None)
    base = base or default_base(version)
    diff = diff_versions(base, version) if base is not None else None
    return _page(model_admin, request, version, title=f"Changes in {version}",
                 template="admin/marketplace/version_diff_page.html", diff=diff, base=base, others=others)


def export_view(model_admin, request, object_id):
    version = _viewable(model_admin, request, object_id)
    try:
        data = export_version(version=version, user=request.user)
    except DomainError as exc:
        report(request, exc)
        raise PermissionDenied from None
    response = HttpResponse(data, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{export_filename(version)}"'
    return response
