"""The console's pages for what the runtime runs: handler runs (with "replay"), installed
timers (with "run now") and the ids polling timers remember. Actions call the runtime's
functions (``replay_run``, ``run_timer_now``), which check roles themselves.

Runs are visible to the integration's publisher too, for support, but another
organization's runs only as ``access.RUN_SUPPORT_FIELDS`` (status, timing, error code):
input, result, logs and error texts are left out of the page, and searched only where they
are shown."""
from __future__ import annotations

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.utils.functional import cached_property

from marketplace import access
from marketplace.admin.instances import shows_instance_data, withheld_note
from marketplace.admin.mixins import CONSOLE_ROLES, ScopedAdmin, report
from marketplace.admin.saving import ServiceSaveMixin, refusing
from marketplace.admin.storage import ReadOnlyRowsAdmin, json_block
from marketplace.exceptions import DomainError
from marketplace.models import HandlerRun, Instance

from . import postgres
from .models import SeenItem, TimerSchedule
from .runs import replay_run, run_timer_now
from .schedules import update_timer


class EstimatedCountPaginator(Paginator):
    """Counting every run on every page of the run list would read the whole history —
    about 1 s per million runs on PostgreSQL (docs/operations.md). Counts exactly up to
    ``exact_up_to`` rows (reading no more than that); beyond, on PostgreSQL, uses the
    planner's row estimate for the list's query (never less than the rows it counted).
    Other databases count exactly."""

    exact_up_to = 10_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list.order_by()
        counted = queryset[: self.exact_up_to + 1].count()
        if counted <= self.exact_up_to:
            return counted
        estimate = postgres.estimated_count(queryset)
        return queryset.count() if estimate is None else max(counted, estimate)


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


class ScheduleKindFilter(admin.SimpleListFilter):
    title = "kind"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return [("every", "Every (period)"), ("cron", "Cron")]

    def queryset(self, request, queryset):
        if self.value() == "every":
            return queryset.filter(every_seconds__isnull=False)
        if self.value() == "cron":
            return queryset.exclude(cron="")
        return queryset


@admin.register(TimerSchedule)
class TimerScheduleAdmin(ServiceSaveMixin, ScopedAdmin):
    """Publishers see, pause, reschedule and "run now" the timers of their own
    organizations' instances. The schedule itself comes from the manifest; rows follow the
    instance (runtime.schedules.sync_schedules), so they are never added or deleted here."""

    publisher_actions = ("change",)
    closed_to_everyone = ("add", "delete")
    list_display = ["handler", "instance", "organization", "schedule", "next_run_at", "last_run_at", "enabled", "paused"]
    list_filter = ["enabled", "paused", ScheduleKindFilter, "timezone", "instance__organization"]
    search_fields = ["handler", "instance__name", "instance__organization__name"]
    date_hierarchy = "next_run_at"
    actions = ["run_now"]
    fields = ["instance", "handler", "schedule", "paused", "next_run_at", "last_run_at", "enabled"]
    readonly_fields = ["instance", "handler", "schedule", "last_run_at", "enabled"]

    def get_queryset(self, request):
        return super().get_queryset(request).for_listing()

    def save_model(self, request, obj, form, change):
        with refusing():
            update_timer(
                schedule=obj, paused=form.cleaned_data["paused"],
                next_run_at=form.cleaned_data["next_run_at"] if "next_run_at" in form.changed_data else None,
                user=request.user,
            )

    @admin.display(description="organization", ordering="instance__organization__name")
    def organization(self, obj):
        return obj.instance.organization

    @admin.display(description="schedule")
    def schedule(self, obj):
        return obj.describe()

    @admin.action(description="Run now (queue one extra run of each selected timer)")
    def run_now(self, request, queryset):
        queued, refused = [], []
        for schedule in queryset.select_related("instance__organization", "instance__version"):
            try:
                queued.append(run_timer_now(schedule=schedule, user=request.user))
            except DomainError as exc:
                refused.append(f"{schedule.handler} of {schedule.instance.name}: {exc.message}")
        if queued:
            self.message_user(request, f"Queued runs {', '.join(f'#{r.pk}' for r in queued)}.", messages.SUCCESS)
        for line in refused:
            self.message_user(request, line, messages.ERROR)


@admin.register(SeenItem)
class SeenItemAdmin(ScopedAdmin):
    publisher_actions = ()
    closed_to_everyone = ("add", "change")
    list_display = ["item_id", "handler", "instance", "seen_at"]
    list_filter = ["handler"]
    search_fields = ["item_id", "instance__name"]

    def get_queryset(self, request):
        return super().get_queryset(request).for_listing()
