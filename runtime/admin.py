"""Admin for the runtime's tables: installed timers (with "run now") and the ids polling
timers remember. Actions call the runtime's functions (``run_timer_now``), which check
roles themselves."""
from __future__ import annotations

from django.contrib import admin, messages

from marketplace.admin.mixins import ScopedAdmin
from marketplace.admin.saving import ServiceSaveMixin, refusing
from marketplace.exceptions import DomainError

from .models import SeenItem, TimerSchedule
from .runs import run_timer_now
from .schedules import update_timer


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
