"""``/api/v1/runs/`` and ``/api/v1/timers/``: handler runs and timer schedules over HTTP.

Runs are seen by the instance's organization whole, and by the integration's publishers as
support fields only (``access.RUN_SUPPORT_FIELDS``): the other fields are left out of each
run whose details the caller does not see, decided for a whole page in one query
(``HandlerRun.objects.with_details_for``). Replaying and every timer change go through the
runtime's own entry points (``runs.replay_run``, ``schedules.update_timer``), as the
console's do.
"""
from __future__ import annotations

import django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from marketplace import access
from marketplace.api.run_errors import RunErrorField
from marketplace.api.schema import error_responses
from marketplace.choices import RunStatus, Trigger
from marketplace.filtersets import IdFilter
from marketplace.models import HandlerRun

from .models import TimerSchedule
from .runs import replay_run
from .schedules import update_timer

# --- Runs ---------------------------------------------------------------------------------

DETAIL_NOTE = "Absent when you see this run as its integration's publisher (status and timing only)."


class RunSerializer(serializers.ModelSerializer):
    """A run as a list shows it: API.md's run fields, ``logs`` included. ``result``, ``error``
    and ``logs`` are the run's details (with ``input`` in the detail view): left out for
    callers who see support fields only."""

    instance = serializers.IntegerField(source="instance_id", read_only=True)
    first_run = serializers.IntegerField(source="first_run_id", read_only=True, allow_null=True,
                                         help_text="The run this one retries or replays (null for a first run).")
    result = serializers.JSONField(required=False, allow_null=True, help_text=DETAIL_NOTE)
    error = RunErrorField(help_text=f"Null when the run did not fail. {DETAIL_NOTE}")
    logs = serializers.ListField(child=serializers.DictField(), required=False,
                                 help_text=f"[{{level, message, fields}}], capped. {DETAIL_NOTE}")

    # Fields a caller who sees support fields only gets; the rest are the run's details.
    SUPPORT_FIELDS = ("id", *access.RUN_SUPPORT_FIELDS)

    class Meta:
        model = HandlerRun
        fields = [
            "id", "instance", "handler", "trigger", "status", "result", "error", "error_code", "duration_ms",
            "created_at", "started_at", "finished_at", "attempt", "first_run", "starts", "logs",
        ]
        read_only_fields = fields

    def to_representation(self, run: HandlerRun) -> dict:
        data = super().to_representation(run)
        if run.pk not in self.context["details"]:
            data = {name: value for name, value in data.items() if name in self.SUPPORT_FIELDS}
        return data


class RunDetailSerializer(RunSerializer):
    """A run with its input too (``GET runs/{id}/``)."""

    input = serializers.JSONField(required=False, help_text=DETAIL_NOTE)

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "input"]
        read_only_fields = fields


class RunFilterSet(django_filters.FilterSet):
    instance = IdFilter(field_name="instance_id", help_text="An instance's id.")
    handler = django_filters.CharFilter(help_text="A handler's name.")
    status = django_filters.ChoiceFilter(choices=RunStatus.choices)
    trigger = django_filters.ChoiceFilter(choices=Trigger.choices)

    class Meta:
        model = HandlerRun
        fields = ["instance", "handler", "status", "trigger"]


def details_for(user, runs) -> set[int]:
    """The ids among ``runs`` whose details ``user`` sees: one query for a whole page."""
    ids = [run.pk for run in runs]
    if not ids:
        return set()
    return set(access.runs_with_details_for(user, HandlerRun.objects.filter(pk__in=ids)).values_list("pk", flat=True))


@extend_schema_view(
    list=extend_schema(
        summary="Runs of the instances you see, newest first",
        description="Your organizations' runs whole; your integrations' customers' runs as status, "
                    "handler, timing and error code only (no input, result, logs or error message).",
    ),
    retrieve=extend_schema(summary="One run, with its input, logs and error", responses={200: RunDetailSerializer}),
    replay=extend_schema(
        summary="Run a finished run's handler again with its input",
        description="Your own organization's runs only. 409 when the run has not finished or its "
                    "instance is disabled or not live.",
        request=None,
        responses={201: RunDetailSerializer, **error_responses(409)},
        examples=[OpenApiExample("replayed", response_only=True, status_codes=["201"], value={
            "id": 812, "instance": 7, "handler": "sync", "trigger": "replay", "status": "queued",
            "result": None, "error": None, "error_code": "", "duration_ms": None,
            "created_at": "2026-11-30T05:00:00Z", "started_at": None, "finished_at": None, "attempt": 2,
            "first_run": 790, "starts": 0, "input": {"lastRunAt": None}, "logs": [],
        })],
    ),
)
class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = RunSerializer
    filterset_class = RunFilterSet

    def get_queryset(self):
        runs = HandlerRun.objects.visible_to(self.request.user).order_by("-created_at", "-pk")
        return runs.defer("input") if self.action == "list" else runs

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "details": set()}

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        context = {**self.get_serializer_context(), "details": details_for(request.user, page)}
        return self.get_paginated_response(RunSerializer(page, many=True, context=context).data)

    def retrieve(self, request, *args, **kwargs):
        run = access.get_run_for(request.user, kwargs["pk"])
        return Response(self._detail(run))

    @action(detail=True, methods=["post"])
    def replay(self, request, *args, **kwargs):
        run = access.get_run_for(request.user, kwargs["pk"], write=True)
        return Response(self._detail(replay_run(run=run, user=request.user)), status=status.HTTP_201_CREATED)

    def _detail(self, run: HandlerRun) -> dict:
        context = {**self.get_serializer_context(), "details": details_for(self.request.user, [run])}
        return RunDetailSerializer(run, context=context).data


# --- Timers ---------------------------------------------------------------------------------

class TimerSerializer(serializers.ModelSerializer):
    instance = serializers.IntegerField(source="instance_id", read_only=True)
    schedule = serializers.SerializerMethodField(help_text='As the manifest writes it: {"every": "5m"} or '
                                                           '{"cron": "0 2 * * *", "timezone": "UTC"}.')
    enabled = serializers.BooleanField(read_only=True, help_text="Whether it fires: the instance is enabled "
                                                                 "and live, and the timer is not paused.")

    class Meta:
        model = TimerSchedule
        fields = ["id", "instance", "handler", "schedule", "next_run_at", "last_run_at", "paused", "enabled",
                  "updated_at"]
        read_only_fields = ["id", "instance", "handler", "last_run_at", "updated_at"]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_schedule(self, timer: TimerSchedule) -> dict:
        return timer.spec


class TimerChangeSerializer(serializers.Serializer):
    paused = serializers.BooleanField(required=False, help_text="Pause or resume this timer; a resumed timer "
                                                                "runs at its next slot (no catching up).")
    next_run_at = serializers.DateTimeField(required=False, help_text="When it runs next (not in the past); "
                                                                      "later slots follow the schedule.")


@extend_schema_view(
    list=extend_schema(summary="Your organizations' instances' timers, soonest first"),
    retrieve=extend_schema(summary="One timer"),
    partial_update=extend_schema(
        summary="Pause, resume or move a timer's next run",
        request=TimerChangeSerializer, responses={200: TimerSerializer},
        examples=[OpenApiExample("pause", request_only=True, value={"paused": True}),
                  OpenApiExample("move", request_only=True, value={"next_run_at": "2026-12-01T02:00:00Z"})],
    ),
)
class TimerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = TimerSerializer

    def get_queryset(self):
        # Timers are the instance's organization's alone: visible and changeable alike.
        return TimerSchedule.objects.visible_to(self.request.user).order_by("next_run_at", "pk")

    def partial_update(self, request, *args, **kwargs):
        timer = self.get_object()
        change = TimerChangeSerializer(data=request.data)
        change.is_valid(raise_exception=True)
        timer = update_timer(schedule=timer, user=request.user, **change.validated_data)
        return Response(TimerSerializer(timer).data)
