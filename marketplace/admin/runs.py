"""What instances produce: handler runs and per-instance storage. Read-only; rows can be
deleted (a stale cache entry, an old run) by the instance's organization.

Runs are visible to the integration's publisher too, for support, but another
organization's runs only as ``access.RUN_SUPPORT_FIELDS`` (status, timing, error code):
input, result, logs and error texts are left out of the page, and searched only where they
are shown. Stored values (containers, cache) are the instance's own organization's alone."""
from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from .. import access
from ..exceptions import DomainError
from ..models import CacheEntry, ContainerEntry, HandlerRun, Instance
from .instances import shows_instance_data, withheld_note
from .mixins import CONSOLE_ROLES, ScopedAdmin, report
from .pagination import EstimatedCountPaginator


def json_block(value) -> str:
    return format_html('<pre class="junction-code">{}</pre>', json.dumps(value, indent=2, ensure_ascii=False))


class ReadOnlyRowsAdmin(ScopedAdmin):
    closed_to_everyone = ("add", "change")
    publisher_actions = ("delete",)


class InstanceOrganizationFilter(admin.RelatedOnlyFieldListFilter):
    """The organizations of the instances whose runs the user sees, read from the
    instances: listing those that have runs would scan the whole run history."""

    def field_choices(self, field, request, model_admin):
        organizations = Instance.objects.visible_to(request.user, roles=CONSOLE_ROLES).values("organization")
        ordering = self.field_admin_ordering(field, request, model_admin)
        return field.get_choices(include_blank=False, limit_choices_to={"pk__in": organizations}, ordering=ordering)


@admin.register(HandlerRun)
class HandlerRunAdmin(ReadOnlyRowsAdmin):
    list_display = ["__str__", "instance_name", "handler", "trigger", "status", "attempt", "created_at", "duration_ms"]
    # At millions of runs (docs/operations.md): no date hierarchy (it lists the distinct
    # days of every matching run), counts estimated past 10,000, and each run's instance
    # by name (its full label would load its version and integration for every row).
    list_filter = ["status", "trigger", ("created_at", admin.DateFieldListFilter),
                   ("instance__organization", InstanceOrganizationFilter)]
    # Error messages are searched in get_search_results, only where they are shown.
    search_fields = ["handler", "instance__name"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    detail_fields = ["error_message", "error_file", "error_line", "input_display", "result_display", "logs_display"]
    actions = ["replay"]

    def get_queryset(self, request):
        return super().get_queryset(request).for_listing()

    def get_fieldsets(self, request, obj=None):
        if obj is None or shows_instance_data(request, obj.instance):
            return [(None, {"fields": [*access.RUN_SUPPORT_FIELDS, *self.detail_fields]})]
        return [(None, {
            "fields": list(access.RUN_SUPPORT_FIELDS),
            "description": withheld_note(obj.instance, "Its input, result, logs and error message"),
        })]

    def get_readonly_fields(self, request, obj=None):
        return [*access.RUN_SUPPORT_FIELDS, *self.detail_fields]

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term:
            # Error messages may quote the customer's data: a match would tell as much as showing it.
            results |= access.runs_with_details_for(request.user, queryset).filter(error_message__icontains=term)
        return results, may_have_duplicates

    @admin.action(description="Replay the selected runs with their original input")
    def replay(self, request, queryset):
        from runtime.runs import replay_run

        queued = []
        for run in queryset.select_related("instance__organization"):
            try:
                queued.append(replay_run(run=run, user=request.user))
            except DomainError as exc:
                report(request, exc, prefix=f"run #{run.pk}: ")
        if queued:
            self.message_user(request, f"Queued replays {', '.join(f'#{r.pk}' for r in queued)}.")

    @admin.display(description="instance", ordering="instance__name")
    def instance_name(self, obj):
        return obj.instance.name

    @admin.display(description="input")
    def input_display(self, obj):
        return json_block(obj.input)

    @admin.display(description="result")
    def result_display(self, obj):
        return json_block(obj.result)

    @admin.display(description="logs")
    def logs_display(self, obj):
        return json_block(obj.logs)


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
