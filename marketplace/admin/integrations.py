"""The integration page: metadata and icon, its versions, attachments and the instances
running it, and the operations a publisher runs on it (publish, fork, create a draft,
delete with everything that goes with it). Every write is a service call: creating and
editing (``services.catalog``), icons and attachments (``services.media``) and each
operation."""
from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from .. import access
from ..exceptions import DomainError
from ..formerrors import add_refusal
from ..models import Attachment, Instance, Integration, IntegrationVersion
from ..services import catalog, deletion, drafts, forking, media
from .forms import AttachmentForm, ForkForm, IntegrationForm
from .mixins import ScopedAdmin, ScopedInline, report
from .pages import render_action_page
from .saving import ServiceSaveMixin, refusing
from .versions import publish_drafts


def icon_thumbnail(integration: Integration, size: int = 32) -> str:
    image = integration.icon_thumbnail or integration.icon
    if not image:
        return format_html('<span class="junction-icon junction-icon--none" style="width:{0}px;height:{0}px"></span>', size)
    return format_html('<img class="junction-icon" src="{}" width="{}" height="{}" alt="">', image.url, size, size)


class VersionInline(ScopedInline, admin.TabularInline):
    model = IntegrationVersion
    fields = ["label", "state", "available", "notes", "published_at", "instance_count"]
    readonly_fields = fields
    extra = 0
    show_change_link = True
    can_delete = False
    verbose_name_plural = "versions (newest first)"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_instances=Count("instances")).order_by("-state", "-number")

    @admin.display(description="version")
    def label(self, version):
        return version.label

    @admin.display(description="instances")
    def instance_count(self, version):
        return version.n_instances


class AttachmentInline(ScopedInline, admin.TabularInline):
    model = Attachment
    form = AttachmentForm
    fields = ["file", "title", "content_type", "size", "uploaded_at"]
    readonly_fields = ["content_type", "size", "uploaded_at"]
    extra = 0
    publisher_actions = ("add", "change", "delete")


class HasDraftFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("draft", "Has a draft"), ("published", "Has published versions"), ("new", "Nothing published yet")]

    def queryset(self, request, queryset):
        if self.value() == "draft":
            return queryset.filter(versions__state="draft").distinct()
        if self.value() == "published":
            return queryset.filter(versions__state="published").distinct()
        if self.value() == "new":
            return queryset.exclude(versions__state="published")
        return queryset


class AvailabilityFilter(admin.SimpleListFilter):
    title = "availability"
    parameter_name = "installable"

    def lookups(self, request, model_admin):
        return [("yes", "Installable (an available version)"), ("no", "Not installable")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(pk__in=Integration.objects.installable().values("pk"))
        if self.value() == "no":
            return queryset.exclude(pk__in=Integration.objects.installable().values("pk"))
        return queryset


@admin.register(Integration)
class IntegrationAdmin(ServiceSaveMixin, ScopedAdmin):
    form = IntegrationForm
    list_display = ["thumbnail", "name", "owner", "category", "visibility", "latest_version", "draft_state", "instances"]
    list_display_links = ["thumbnail", "name"]
    list_filter = ["category", HasDraftFilter, AvailabilityFilter, "visibility", ("owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "summary", "description"]
    inlines = [VersionInline, AttachmentInline]
    actions = ["publish_drafts", "create_drafts", "fork", "delete_integrations"]
    delete_confirmation_template = "admin/marketplace/integration/delete_confirmation.html"

    def visible_rows(self, request, queryset):
        # The console lists what the user publishes, not what the marketplace shows them.
        return queryset.editable_by(request.user)

    changeable_rows = visible_rows

    def get_queryset(self, request):
        drafts_of = IntegrationVersion.objects.drafts().filter(integration=OuterRef("pk"))
        return super().get_queryset(request).for_listing().annotate(has_draft=Exists(drafts_of))

    def get_fieldsets(self, request, obj=None):
        main = ["owner", "name", "slug", "summary", "description", "category", "visibility"]
        icon = ["icon_preview", "upload_icon"] + (["remove_icon"] if obj and obj.icon else [])
        if obj is None:
            return [(None, {"fields": main}), ("Icon", {"fields": ["upload_icon"]})]
        return [
            (None, {"fields": main + ["forked_from"]}),
            ("Icon", {"fields": icon}),
            ("Installed instances", {"fields": ["installed_instances"]}),
        ]

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        organizations = access.organizations_of(request.user, access.PUBLISHING_ROLES)
        if "owner" not in initial and len(organizations[:2]) == 1:
            initial["owner"] = organizations[0].pk
        return initial

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        # Moving an integration between organizations, or renaming its URL, is no console job.
        return ["owner", "slug", "forked_from", "icon_preview", "installed_instances"]

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    # --- list columns -----------------------------------------------------------------
    @admin.display(description="")
    def thumbnail(self, obj):
        return icon_thumbnail(obj)

    @admin.display(description="latest", ordering="latest_number")
    def latest_version(self, obj):
        return f"v{obj.latest_number}" if obj.latest_number else "—"

    @admin.display(description="draft", boolean=True)
    def draft_state(self, obj):
        return obj.has_draft

    @admin.display(description="instances", ordering="instance_count")
    def instances(self, obj):
        return obj.instance_count

    # --- change form ----------------------------------------------------------------------
    @admin.display(description="current icon")
    def icon_preview(self, obj):
        return icon_thumbnail(obj, 96) if obj.icon else "No icon yet."

    @admin.display(description="instances by version")
    def installed_instances(self, obj):
        rows = Instance.objects.of_integration(obj).select_related("organization", "version").order_by(
            "-version__number", "organization__name", "name"
        )
        if not rows:
            return "Not installed anywhere."
        body = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((i.version.label, i.organization, i.name, "enabled" if i.enabled else "disabled") for i in rows),
        )
        return format_html(
            '<table class="junction-table"><thead><tr><th>Version</th><th>Organization</th><th>Instance</th>'
            "<th>State</th></tr></thead><tbody>{}</tbody></table>", body
        )

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        with refusing():
            if not change:
                created = catalog.create_integration(
                    organization=data["owner"], name=data["name"], slug=data.get("slug") or None,
                    summary=data.get("summary", ""), description=data.get("description", ""),
                    category=data.get("category"), visibility=data["visibility"], user=request.user,
                )
                # The admin keeps using ``obj`` (inlines, redirect): make it the saved row.
                for field in Integration._meta.concrete_fields:
                    setattr(obj, field.attname, getattr(created, field.attname))
                obj._state.adding, obj._state.db = False, created._state.db
            else:
                catalog.update_integration(
                    integration=obj, name=data["name"], summary=data.get("summary", ""),
                    description=data.get("description", ""), category=data.get("category"),
                    visibility=data["visibility"], user=request.user,
                )
            if data.get("remove_icon"):
                media.clear_icon(integration=obj, user=request.user)
            if data.get("upload_icon"):
                media.set_icon(integration=obj, upload=data["upload_icon"], user=request.user)

    def save_formset(self, request, form, formset, change):
        if formset.model is not Attachment:
            return super().save_formset(request, form, formset, change)
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        with refusing():
            for inline_form in formset.deleted_forms:
                if inline_form.instance.pk:
                    media.remove_attachment(attachment=inline_form.instance, user=request.user)
                    formset.deleted_objects.append(inline_form.instance)
            for inline_form in formset.forms:
                if inline_form in formset.deleted_forms or not inline_form.has_changed():
                    continue
                if inline_form.instance.pk:
                    media.rename_attachment(
                        attachment=inline_form.instance, title=inline_form.cleaned_data.get("title", ""),
                        user=request.user,
                    )
                    formset.changed_objects.append((inline_form.instance, inline_form.changed_data))
                else:
                    formset.new_objects.append(media.add_attachment(
                        integration=form.instance, upload=inline_form.cleaned_data["file"],
                        title=inline_form.cleaned_data.get("title", ""), user=request.user,
                    ))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        tools = []
        if obj is not None and self.has_change_permission(request, obj):
            draft = obj.draft
            if draft:
                tools.append({"label": "Edit draft", "url": reverse("admin:marketplace_integrationversion_change", args=[draft.pk])})
                tools.append({"label": "Publish draft…", "url": reverse("admin:marketplace_integrationversion_publish", args=[draft.pk])})
            else:
                tools.append({"label": "Create draft", "url": reverse("admin:marketplace_integration_create_draft", args=[obj.pk]), "post": True})
        if obj is not None:
            tools.append({"label": "Fork…", "url": reverse("admin:marketplace_integration_fork", args=[obj.pk])})
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "junction_tools": tools})

    # --- operations -----------------------------------------------------------------------
    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/fork/", view(self.fork_view), name="marketplace_integration_fork"),
            path("<path:object_id>/create-draft/", view(self.create_draft_view), name="marketplace_integration_create_draft"),
        ] + super().get_urls()

    @admin.action(description="Publish the drafts of the selected integrations…")
    def publish_drafts(self, request, queryset):
        found = IntegrationVersion.objects.drafts().filter(integration__in=queryset).select_related("integration")
        if "apply" not in request.POST:
            for integration in queryset.exclude(versions__state="draft"):
                messages.info(request, f"{integration} has no draft to publish.")
        return publish_drafts(self, request, list(found), action="publish_drafts", selected=list(queryset))

    @admin.action(description="Create a draft for the selected integrations")
    def create_drafts(self, request, queryset):
        for integration in queryset:
            self._create_draft(request, integration)

    def _create_draft(self, request, integration):
        try:
            draft = drafts.create_draft(integration=integration, user=request.user)
        except DomainError as exc:
            report(request, exc, prefix=f"{integration}: ")
            return None
        messages.success(request, f"Draft of {integration} created from its latest version.")
        return draft

    def create_draft_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        integration = self.get_object(request, unquote(object_id))
        if integration is None:
            raise Http404("No such integration.")
        if not self.has_change_permission(request, integration):
            raise PermissionDenied
        draft = self._create_draft(request, integration)
        if draft is None:
            return HttpResponseRedirect(reverse("admin:marketplace_integration_change", args=[integration.pk]))
        return HttpResponseRedirect(reverse("admin:marketplace_integrationversion_change", args=[draft.pk]))

    @admin.action(description="Fork the selected integration…")
    def fork(self, request, queryset):
        if queryset.count() != 1:
            messages.error(request, "Select exactly one integration to fork.")
            return None
        return HttpResponseRedirect(reverse("admin:marketplace_integration_fork", args=[queryset.get().pk]))

    def fork_view(self, request, object_id):
        source = self.get_object(request, unquote(object_id))
        if source is None:
            raise Http404("No such integration.")
        organizations = access.organizations_of(request.user, access.PUBLISHING_ROLES)
        form = ForkForm(request.POST or None, organizations=organizations, initial={
            "name": f"{source.name} (fork)", "description": source.description,
        })
        if request.method == "POST" and form.is_valid():
            try:
                fork = forking.fork_integration(
                    source=source, organization=form.cleaned_data["organization"], name=form.cleaned_data["name"],
                    description=form.cleaned_data["description"], user=request.user,
                )
            except DomainError as exc:
                add_refusal(form, exc)
            else:
                messages.success(request, f"Forked {source} into {fork.owner} as {fork}; its draft is ready to edit.")
                return HttpResponseRedirect(reverse("admin:marketplace_integration_change", args=[fork.pk]))
        return render_action_page(
            self, request, title=f"Fork {source}", form=form, objects=[source], submit_label="Fork",
            intro="The fork gets a draft copy of the latest version, the icon and the attachments. It starts private.",
        )

    # --- deletion -------------------------------------------------------------------------
    @admin.action(description="Delete the selected integrations and their instances…")
    def delete_integrations(self, request, queryset):
        integrations = [i for i in queryset if self.has_delete_permission(request, i)]
        return self.confirm_deletion(request, integrations, action="delete_integrations")

    def delete_view(self, request, object_id, extra_context=None):
        integration = self.get_object(request, unquote(object_id))
        if integration is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_delete_permission(request, integration):
            raise PermissionDenied
        return self.confirm_deletion(request, [integration])

    def confirm_deletion(self, request, integrations, action=None):
        """The confirmation page lists, per integration, the instances that go with it
        (every organization's), then the counts of everything else."""
        if request.method == "POST" and request.POST.get("post") == "yes":
            for integration in integrations:
                name = str(integration)
                try:
                    summary = deletion.delete_integration(integration=integration, user=request.user)
                except DomainError as exc:
                    report(request, exc, prefix=f"{name}: ")
                    continue
                self.log_deletions(request, [integration])
                gone = ", ".join(summary.lines) or "nothing else"
                messages.success(request, f"Deleted {name} with {gone}.")
            return HttpResponseRedirect(reverse("admin:marketplace_integration_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts, "title": "Delete integrations and everything they own",
            "summaries": [deletion.deletion_summary(i) for i in integrations],
            "action": action, "selected": integrations, "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "cancel_url": reverse("admin:marketplace_integration_changelist"), "media": self.media,
        }
        return TemplateResponse(request, self.delete_confirmation_template, context)
